"""Teachers: timm models, randomly initialised, from a user checkpoint, or pretrained from the hub.

Example:
    >>> t = load_teacher("resnet18")
    >>> t.input_size, t.num_classes, t.trained
    ((3, 224, 224), 1000, False)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES, suggest


@dataclass
class Teacher:
    """A teacher module plus what the pipeline needs to know about it."""

    name: str
    model: nn.Module
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    trained: bool
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None


def check_teacher_name(name: str) -> None:
    """Raise ``BadInputError`` with close timm names when ``name`` is not a timm model.

    The search-space plugins are loaded first: some register timm models (``cifar_resnet56``)."""
    SPACES.load()
    if not timm.is_model(name):
        raise BadInputError(f"unknown teacher '{name}': not a timm model.{suggest(name, timm.list_models(), n=4)} "
                            "See `studentnas list teachers` or timm.list_models()")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth``/``.pt`` state dict (also ``{'state_dict'|'model': ...}`` wrappers)."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".pt"))
        raise BadInputError(f"checkpoint '{path}' is a directory, not a weights file; pass the .pth or .safetensors "
                            f"file itself, e.g. {path / (inside[0] if inside else 'teacher.safetensors')}")
    if not path.is_file():
        raise BadInputError(f"checkpoint '{path}' does not exist; pass the path of a .pth or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure means the file is unusable; report it
        detail = (str(err).splitlines() or [""])[0].split(". ")[0][:100]
        raise BadInputError(f"checkpoint '{path}' is corrupt or not a state dict ({type(err).__name__}: {detail}); "
                            "re-export it with torch.save(model.state_dict(), path) or safetensors") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise BadInputError(f"checkpoint '{path}' holds no tensor state dict; save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _trained_as(checkpoint: Path) -> str:
    """`` (its sidecar says it is a MODEL)`` when the checkpoint's sidecar JSON names its model, else ``""``."""
    try:
        model = json.loads(checkpoint.with_suffix(".json").read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return ""
    return f" (its sidecar says it is a {model})" if isinstance(model, str) else ""


def _check_fits(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str, checkpoint: Path) -> None:
    """Refuse, in one line, a checkpoint whose keys or tensor shapes are not those of timm's ``name``: a
    teacher of another family or size (say, a cifar_resnet20 checkpoint given as ``--teacher resnet18``)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or shapes):
        return
    if shapes:
        k = shapes[0]
        what = (f"{len(shapes)} tensors of another shape (e.g. {k}: {list(state[k].shape)} in the file, "
                f"{list(own[k].shape)} in {name})")
    else:
        what = f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
    raise BadInputError(f"checkpoint '{checkpoint}'{_trained_as(checkpoint)} is not a timm '{name}': {what}; "
                        "pass the --teacher it was trained as")


def load_teacher(name: str, checkpoint: str | Path | None = None, pretrained: bool = False,
                 num_classes: int | None = None) -> Teacher:
    """A timm teacher: random init by default, weights from ``checkpoint``, or ``pretrained`` from the hub.

    The number of classes and input channels follow the checkpoint's classifier and first conv;
    ``num_classes`` sets the head of a random-init teacher, and must match a checkpoint's head.
    """
    check_teacher_name(name)
    if checkpoint is not None and pretrained:
        raise BadInputError("--pretrained and --teacher-checkpoint exclude each other; pass only one")
    kwargs: dict = {} if num_classes is None else {"num_classes": int(num_classes)}
    state = None
    if checkpoint is not None:
        state = read_state_dict(checkpoint)
        cfg = timm.get_pretrained_cfg(name)
        classifier = getattr(cfg, "classifier", None) if cfg is not None else None
        if isinstance(classifier, str) and f"{classifier}.weight" in state:
            found = int(state[f"{classifier}.weight"].shape[0])
            if num_classes is not None and found != num_classes:
                raise BadInputError(f"checkpoint '{checkpoint}' has a {found}-class head, but {num_classes} classes "
                                    "are needed here; pass a checkpoint trained on this dataset's classes")
            kwargs["num_classes"] = found
        first_conv = getattr(cfg, "first_conv", None) if cfg is not None else None
        if isinstance(first_conv, str) and f"{first_conv}.weight" in state:
            kwargs["in_chans"] = int(state[f"{first_conv}.weight"].shape[1])
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as err:  # noqa: BLE001 - hub/network failures come in many types
        if not pretrained or isinstance(err, BadInputError):  # e.g. a model with no published weights
            raise
        raise BadInputError(f"could not fetch pretrained weights for '{name}' ({type(err).__name__}); the model hub "
                            "is unreachable from here: pass --teacher-checkpoint PATH instead") from None
    if state is not None:
        _check_fits(model, state, name, Path(checkpoint))
        model.load_state_dict(state)
    model.eval()
    data_cfg = timm.data.resolve_data_config({}, model=model)
    in_chans = kwargs.get("in_chans", 3)
    size = tuple(data_cfg["input_size"])
    return Teacher(
        name=name,
        model=model,
        input_size=(in_chans, size[1], size[2]),
        mean=tuple(float(v) for v in data_cfg["mean"]),
        std=tuple(float(v) for v in data_cfg["std"]),
        num_classes=int(getattr(model, "num_classes", kwargs.get("num_classes", 1000))),
        trained=bool(pretrained or checkpoint is not None),
        # absolute: run files record it, and Ray workers (distill, Puzzle's global KD) run in other folders
        checkpoint=str(Path(checkpoint).resolve()) if checkpoint is not None else None,
        checkpoint_sha256=_sha256(Path(checkpoint)) if checkpoint is not None else None,
    )
