"""The teacher and the three disjoint sample sets a Puzzle run uses.

* ``bld``: what BLD trains replacements on (the teacher's activations on these samples);
* ``score``: held out from BLD; replace-one-block scoring and the MIP's quality come from it;
* ``test``: the dataset's test split; only final reports use it, so selection never sees it.

Images come from :mod:`studentnas.data.images` (the train split gives ``bld`` and ``score``, stratified and
disjoint). Text comes from :mod:`studentnas.lm.corpus` as non-overlapping windows of the LM's context
length (train, val and test parts of the corpus). A teacher is either a timm image model or one of
the project's language models (``studentnas list teachers`` / ``studentnas lm``).

Example:
    >>> spec = TeacherSpec("resnet18", None, "image", (3, 32, 32), num_classes=10)
    >>> spec.is_lm, spec.input_dtype
    (False, torch.float32)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from studentnas.core.errors import BadInputError

DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TeacherSpec:
    """Everything needed to rebuild the teacher in any process (Ray workers included)."""

    name: str
    checkpoint: str | None
    kind: str  # image | lm
    input_shape: tuple[int, ...]  # (C, H, W) or (T,)
    num_classes: int | None = None
    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD
    seed: int = 0

    @property
    def is_lm(self) -> bool:
        return self.kind == "lm"

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.long if self.is_lm else torch.float32

    @property
    def context(self) -> int | None:
        return int(self.input_shape[0]) if self.is_lm else None

    def load(self) -> nn.Module:
        """The teacher in eval mode with frozen weights (random init seeded by ``seed`` without a checkpoint)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.is_lm:
                from studentnas.lm import create_lm, load_lm

                model = (load_lm(self.name, self.checkpoint) if self.checkpoint is not None
                         else create_lm(self.name, context=int(self.input_shape[0])).eval())
            else:
                from studentnas.data.teachers import load_teacher

                model = load_teacher(self.name, self.checkpoint, num_classes=self.num_classes).model
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeacherSpec:
        data = dict(data)
        for key in ("input_shape", "mean", "std"):
            data[key] = tuple(data[key])
        return cls(**data)


def _is_lm(name: str) -> bool:
    try:
        from studentnas.lm import is_lm
    except ImportError:  # pragma: no cover - the lm package ships with studentnas
        return False
    return bool(is_lm(name))


def teacher_spec(name: str, checkpoint: str | Path | None, *, image_size: int | None, num_classes: int | None,
                 seed: int = 0) -> TeacherSpec:
    """Resolve ``--teacher``/``--teacher-checkpoint``/``--image-size`` into a :class:`TeacherSpec`.

    For an image teacher saved by ``studentnas teacher train`` the checkpoint's sidecar gives the image
    size, classes, mean and std (``--image-size`` overrides the size).
    """
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise BadInputError(f"--teacher-checkpoint {checkpoint}: no such file; train one with `studentnas teacher "
                            "train` (images) or `studentnas lm train` (text), or fix the path")
    if _is_lm(name):
        from studentnas.lm.model import lm_config, read_lm_meta

        meta_lm = read_lm_meta(checkpoint) if checkpoint is not None else None
        context = int((meta_lm["config"] if meta_lm else lm_config(name)).context)
        return TeacherSpec(name, None if checkpoint is None else str(checkpoint), "lm", (context,), seed=seed)
    from studentnas.data.teachers import check_teacher_name

    check_teacher_name(name)
    meta: dict[str, Any] = {}
    if checkpoint is not None:
        from studentnas.runfiles.models import read_model_meta

        try:
            meta = read_model_meta(checkpoint)
        except (BadInputError, OSError, ValueError, KeyError):
            meta = {}
    size = image_size or (meta.get("image_size") or [None])[0] or 224
    chans = int(meta.get("in_chans", 3))
    classes = num_classes if num_classes is not None else meta.get("num_classes")
    return TeacherSpec(name, None if checkpoint is None else str(checkpoint), "image", (chans, int(size), int(size)),
                       num_classes=None if classes is None else int(classes),
                       mean=tuple(meta.get("mean", DEFAULT_MEAN)), std=tuple(meta.get("std", DEFAULT_STD)), seed=seed)


@dataclass
class PuzzleSamples:
    """Inputs (and labels, for images) of the three sets; ``source`` says what was read."""

    bld: torch.Tensor
    score: torch.Tensor
    test: torch.Tensor
    score_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    source: str
    classes: int | None = None

    def counts(self) -> dict[str, int]:
        return {"bld": len(self.bld), "score": len(self.score), "test": len(self.test)}


def image_samples(spec: TeacherSpec, data: str | None, bld: int, score: int, test: int, seed: int) -> PuzzleSamples:
    """``bld`` + ``score`` disjoint images of the train split and ``test`` images of the test split."""
    from studentnas.data import images as data_mod

    if data is None:
        raise BadInputError("--data is required for Puzzle (BLD needs training images): e.g. --data fashion-mnist, "
                            "cifar10:PATH or an ImageFolder with train/ and test/")
    data_mod.check_data_spec(data)
    train = data_mod.load_images(data, "train", seed=seed)
    need = bld + score
    if len(train) < need:
        raise BadInputError(f"{data} has {len(train)} training images, but --bld-samples {bld} + --score-samples "
                            f"{score} = {need} disjoint images are needed; lower them or give more data")
    order = _order(len(train), seed)
    test_set = data_mod.load_images(data, "test", limit=min(test, 10**9), seed=seed)
    if spec.num_classes is not None and len(train.classes) != spec.num_classes:
        raise BadInputError(f"{data} has {len(train.classes)} classes but the teacher's head has {spec.num_classes}; "
                            "pass a teacher checkpoint trained on this data")

    def convert(images: np.ndarray) -> torch.Tensor:
        return data_mod.to_tensor(images, spec.input_shape, spec.mean, spec.std)

    bld_idx, score_idx = order[:bld], order[bld:need]
    return PuzzleSamples(
        bld=convert(train.images[bld_idx]), score=convert(train.images[score_idx]), test=convert(test_set.images),
        score_labels=torch.from_numpy(train.labels[score_idx].copy()),
        test_labels=torch.from_numpy(test_set.labels.copy()),
        source=f"{train.source} (BLD {bld}, score {score}); test: {test_set.source}", classes=len(train.classes))


def _order(n: int, seed: int) -> np.ndarray:
    """The seeded order of the train split: the first ``bld`` images feed BLD, the next ``score`` scoring."""
    return np.random.default_rng(seed).permutation(n)


def bld_image_set(data: str, bld: int, seed: int) -> Any:
    """The BLD images as an :class:`~studentnas.data.images.ImageSet` (for the trainer's batches in global KD)."""
    from studentnas.data import images as data_mod

    train = data_mod.load_images(data, "train", seed=seed)
    index = _order(len(train), seed)[:bld]
    return data_mod.ImageSet(train.images[index], train.labels[index], train.classes,
                             f"{train.source}: {len(index)} BLD images")


def _windows(tokens: torch.Tensor, context: int, count: int, what: str, flag: str) -> torch.Tensor:
    available = (len(tokens) - 1) // context
    if available < count:
        raise BadInputError(f"the corpus' {what} part has {len(tokens)} tokens: {available} windows of {context}, but "
                            f"{flag} asks for {count} ({count * context + 1} tokens needed); lower {flag} or give "
                            "a larger corpus")
    return tokens[: count * context].long().view(count, context)


def text_samples(spec: TeacherSpec, data: str | None, bld: int, score: int, test: int) -> PuzzleSamples:
    """Non-overlapping windows of the LM's context: ``bld`` from the corpus' train part, ``score`` from
    its validation part and ``test`` from its test part (counts are windows, i.e. sequences)."""
    from studentnas.lm.corpus import load_corpus

    corpus = load_corpus(data or "fortunes")
    context = int(spec.input_shape[0])
    return PuzzleSamples(
        bld=_windows(corpus.train, context, bld, "train", "--bld-samples"),
        score=_windows(corpus.val, context, score, "validation", "--score-samples"),
        test=_windows(corpus.test, context, test, "test", "--test-samples"),
        score_labels=None, test_labels=None, source=f"{corpus.source}: windows of {context} bytes")
