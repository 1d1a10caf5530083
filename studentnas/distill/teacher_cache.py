"""The on-disk cache of teacher logits (:func:`cached_teacher_logits`): computed once per teacher, data
and transforms, then read back by every trial and every resumed run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.distill.batches import Batches
from studentnas.runfiles.atomic import write_atomic

CACHE_FORMAT = 1


def module_digest(model: nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and values): a teacher's identity.

    Example:
        >>> module_digest(nn.Linear(2, 2)) == module_digest(nn.Linear(2, 2))   # two random inits
        False
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def cache_key(teacher_id: str, batches: Batches, data_spec: str | None) -> dict[str, Any]:
    """What the cached logits depend on: the teacher, the data (spec, source, a digest of the images
    and labels) and the transforms (input size, mean, std). Augmented batches cannot be cached."""
    if batches.augment:
        raise BadInputError("teacher logits can be cached only for fixed inputs, and these batches are augmented; "
                            "turn augmentation off or the teacher cache off")
    images = hashlib.sha256(np.ascontiguousarray(batches.data.images).tobytes())
    images.update(np.ascontiguousarray(batches.data.labels).tobytes())
    return {"format": CACHE_FORMAT, "teacher": teacher_id, "data": data_spec, "source": batches.data.source,
            "images_sha256": images.hexdigest(), "n": len(batches.data), "input_size": list(batches.input_size),
            "mean": list(batches.mean), "std": list(batches.std)}


def cached_teacher_logits(teacher: nn.Module, batches: Batches, cache_dir: str | Path, teacher_id: str | None = None,
                          data_spec: str | None = None) -> tuple[torch.Tensor, bool]:
    """The teacher's logits for every image of ``batches`` (in data order), and whether they came from disk.

    They are stored as ``cache_dir/<key digest>.safetensors`` with the key in the metadata, keyed by
    :func:`cache_key` (``teacher_id`` defaults to :func:`module_digest` of the teacher). Written
    atomically, so concurrent trials at worst compute the same file twice.

    Example:
        >>> import tempfile
        >>> from studentnas.data.images import load_images
        >>> d = tempfile.mkdtemp()
        >>> b = Batches(load_images(None, limit=8), (3, 8, 8), (0.5,), (0.5,), 4)
        >>> t = nn.Sequential(nn.Flatten(), nn.Linear(192, 10))
        >>> first, hit = cached_teacher_logits(t, b, d); again, hit2 = cached_teacher_logits(t, b, d)
        >>> tuple(first.shape), hit, hit2, torch.equal(first, again)
        ((8, 10), False, True, True)
    """
    from safetensors.torch import load_file, save_file

    key = cache_key(teacher_id or module_digest(teacher), batches, data_spec)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"{name}.safetensors"
    if path.is_file():
        try:
            logits = load_file(str(path))["logits"]
            if logits.shape[0] == len(batches.data):
                return logits, True
        except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed, never trusted
            pass
    was_training = teacher.training
    teacher.eval()
    out = torch.empty(0)
    with torch.no_grad():
        for index, x, _ in Batches(batches.data, batches.input_size, batches.mean, batches.std,
                                   batches.batch_size).epoch(0):
            logits = teacher(x.contiguous(memory_format=torch.channels_last)).float()
            if out.numel() == 0:
                out = torch.empty(len(batches.data), logits.shape[1])
            out[index] = logits
    teacher.train(was_training)
    write_atomic(path, lambda tmp: save_file({"logits": out.contiguous()}, tmp,
                                             metadata={"studentnas_cache_key": json.dumps(key, sort_keys=True)}))
    return out, False
