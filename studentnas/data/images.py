"""Images for calibration and distillation: a spec string in, an :class:`ImageSet` out.

Specs (the ``--data`` option):

=====================  ==============================================================================
``None``               the calibration sample shipped in the package (320 Fashion-MNIST test images)
``fashion-mnist``      Debian's ``dataset-fashion-mnist`` files in ``/usr/share/datasets/fashion-mnist``
``fashion-mnist:DIR``  the same four IDX files read from ``DIR``
``cifar10:PATH``       CIFAR-10 python batches; ``PATH`` is ``cifar-10-batches-py`` or its parent
``cifar100:PATH``      CIFAR-100 python pickles; ``PATH`` is ``cifar-100-python`` or its parent
``DIR``                an ImageFolder: ``DIR/<class>/<image>.png``; ``DIR/train`` + ``DIR/val|test`` give splits
=====================  ==============================================================================

:func:`calibration_batch` and :func:`to_tensor` turn uint8 images into the teacher's input: channels
converted (1 -> 3 by repetition, 3 -> 1 by ITU-R 601 luma), bilinear resize, scaled to [0, 1] and
normalised with the teacher's mean and std.

Example:
    >>> data = load_images(None)
    >>> len(data), data.images.shape[1:], data.classes[0]
    (320, (28, 28, 1), 'T-shirt/top')
    >>> x, y = calibration_batch(data, 20, (3, 32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), seed=0)
    >>> tuple(x.shape), torch.bincount(y).tolist()
    ((20, 3, 32, 32), [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studentnas.core.errors import BadInputError
from studentnas.data import readers as io

SPLITS = ("train", "test")
SPEC_FORMS = (
    "accepted forms: fashion-mnist (Debian's dataset-fashion-mnist), fashion-mnist:DIR, cifar10:PATH, "
    "cifar100:PATH, an ImageFolder directory (DIR/<class>/<image>.png), or nothing for the shipped calibration sample"
)
_PREFIXED = {"fashion-mnist": "DIR", "cifar10": "PATH", "cifar100": "PATH"}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Labelled images in memory.

    Attributes:
        images: uint8, N x H x W x C with C = 1 or 3.
        labels: int64, N, each in ``range(len(classes))``.
        classes: class names, indexed by label.
        source: what was read, from where (for logs and reports).

    Example:
        >>> s = ImageSet(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1]), ("a", "b"), "two blank images")
        >>> len(s), s.labels.dtype
        (2, dtype('int64'))
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        images, labels = np.asarray(self.images), np.asarray(self.labels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise BadInputError(
                f"ImageSet images {images.dtype} {images.shape}: expected uint8 N x H x W x C with C = 1 or 3; "
                "convert with np.asarray(x, np.uint8) and add a channel axis"
            )
        if labels.shape != images.shape[:1] or labels.size and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise BadInputError(
                f"ImageSet labels of shape {labels.shape}: expected {len(images)} labels in "
                f"0..{len(self.classes) - 1}; give one label per image and a name for every class"
            )
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"ImageSet(images={self.images.shape}, classes={len(self.classes)}, source={self.source!r})"


# ------------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class _Spec:
    kind: str  # "sample" | "fashion-mnist" | "cifar10" | "cifar100" | "folder"
    path: Path | None


def _parse_spec(spec: str | None) -> _Spec:
    if spec is None:
        return _Spec("sample", None)
    if not isinstance(spec, str):
        raise BadInputError(f"data spec {spec!r}: must be a string or None; {SPEC_FORMS}")
    text = spec.strip()
    head, colon, rest = text.partition(":")
    name = head.lower()
    if name == "fashion-mnist" and not colon:
        return _Spec(name, io.FASHION_MNIST_DIR)
    if colon and name in _PREFIXED:
        if not rest.strip():
            raise BadInputError(f"data spec {spec!r}: nothing after '{head}:'; write {name}:{_PREFIXED[name]}")
        return _Spec(name, Path(rest.strip()).expanduser())
    path = Path(text).expanduser()
    if text and path.is_dir():
        return _Spec("folder", path)
    raise BadInputError(_unknown_spec(spec, path))


def _unknown_spec(spec: str, path: Path) -> str:
    if spec.strip() and path.is_file():
        return f"data spec {spec!r}: is a file, and an ImageFolder must be a directory; {SPEC_FORMS}"
    close = difflib.get_close_matches(spec.partition(":")[0].lower(), list(_PREFIXED), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"data spec {spec!r}: not a known dataset name nor an existing directory; {hint}{SPEC_FORMS}"


def describe_spec(spec: str | None) -> str:
    """Short text for logs; never raises and never reads the data.

    Example:
        >>> describe_spec(None)
        'shipped calibration sample (320 Fashion-MNIST test images)'
        >>> describe_spec("cifar10:/data")
        'CIFAR-10 python batches at /data'
    """
    try:
        parsed = _parse_spec(spec)
    except BadInputError:
        return f"unrecognised data spec {spec!r}"
    return {
        "sample": "shipped calibration sample (320 Fashion-MNIST test images)",
        "fashion-mnist": f"Fashion-MNIST IDX files in {parsed.path}",
        "cifar10": f"CIFAR-10 python batches at {parsed.path}",
        "cifar100": f"CIFAR-100 python pickles at {parsed.path}",
        "folder": f"ImageFolder {parsed.path}",
    }[parsed.kind]


def check_data_spec(spec: str | None) -> None:
    """Validate ``spec`` quickly (paths, headers, one image) without loading the data.

    Raises BadInputError naming the problem and the fix.

    Example:
        >>> check_data_spec(None)
        >>> check_data_spec("imagenet")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        studentnas.core.errors.BadInputError: data spec 'imagenet': not a known dataset name nor ...
    """
    parsed = _parse_spec(spec)
    checks: dict[str, Callable[[], None]] = {
        "sample": io.check_shipped_sample,
        "fashion-mnist": lambda: io.check_fashion_mnist(parsed.path),
        "cifar10": lambda: io.check_cifar(parsed.path, io.CIFAR10),
        "cifar100": lambda: io.check_cifar(parsed.path, io.CIFAR100),
        "folder": lambda: io.check_image_folder(parsed.path),
    }
    checks[parsed.kind]()


# ------------------------------------------------------------------------------------------------ loading


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices into ``labels``, round-robin over the classes in a seeded random order.

    Each class contributes its images in a seeded random order; exhausted classes are skipped, so
    ``n = 20`` over 10 balanced classes gives 2 per class. Deterministic for a seed.

    Example:
        >>> np.bincount(np.array([0, 0, 0, 1, 1, 2])[stratified_indices(np.array([0, 0, 0, 1, 1, 2]), 5, 0)])
        array([2, 2, 1])
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    _, counts = np.unique(labels, return_counts=True)
    groups = np.split(np.argsort(labels, kind="stable"), np.cumsum(counts)[:-1])
    per_class = [rng.permutation(groups[c]) for c in rng.permutation(len(groups))]
    index = np.concatenate(per_class) if per_class else np.zeros(0, np.int64)
    rank = np.concatenate([np.arange(len(g)) for g in per_class]) if per_class else index
    position = np.concatenate([np.full(len(g), i) for i, g in enumerate(per_class)]) if per_class else index
    return index[np.lexsort((position, rank))][:n]


def _positive_int(value: object, what: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BadInputError(f"{what} {value!r}: must be a positive integer; {fix}")
    return int(value)


def _pick(labels: np.ndarray, limit: int | None, seed: int) -> tuple[np.ndarray | slice, str]:
    """What to keep of ``labels`` under ``limit``, and a note on it for ``ImageSet.source``."""
    if limit is None or limit >= len(labels):
        return slice(None), f"{len(labels)} images"
    keep = np.sort(stratified_indices(labels, limit, seed))
    return keep, f"{limit} of {len(labels)} images (stratified, seed {seed})"


def _read_arrays(parsed: _Spec, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """A whole split of an in-memory format: images, labels, classes, where they came from."""
    if parsed.kind == "sample":
        return (*io.read_shipped_sample(), "shipped calibration sample (Fashion-MNIST test split)")
    if parsed.kind == "fashion-mnist":
        images, labels = io.read_fashion_mnist(parsed.path, split)
        return images, labels, io.FASHION_MNIST_CLASSES, f"Fashion-MNIST {split} split from {parsed.path}"
    layout = io.CIFAR10 if parsed.kind == "cifar10" else io.CIFAR100
    return (*io.read_cifar(parsed.path, layout, split), f"{layout.name} {split} split from {parsed.path}")


def _load_folder(path: Path, split: str, limit: int | None, seed: int) -> ImageSet:
    """An ImageFolder: list the files, pick under ``limit``, then decode only the picked ones."""
    folder, roots = io.image_folder_roots(path, split)
    paths, labels, classes = io.list_image_folder(path, split)
    keep, count = _pick(labels, limit, seed)
    images = io.read_images([paths[i] for i in np.arange(len(paths))[keep]])
    split_note = f"{split} split" if len(roots) > 1 else "no split folders, split ignored"
    return ImageSet(images, labels[keep], classes, f"ImageFolder {folder} ({split_note}): {count}")


def load_images(spec: str | None = None, split: str = "train", limit: int | None = None, seed: int = 0) -> ImageSet:
    """Load the images ``spec`` names (see the module docstring for the forms).

    Args:
        spec: dataset spec; ``None`` for the shipped calibration sample (which ignores ``split``).
        split: ``"train"`` or ``"test"``.
        limit: load at most this many images, stratified by class and deterministic for ``seed``.
        seed: seed of the ``limit`` pick.

    Example:
        >>> data = load_images(None, limit=20)
        >>> len(data), np.bincount(data.labels).tolist()
        (20, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    parsed = _parse_spec(spec)
    if split not in SPLITS:
        raise BadInputError(f"split {split!r}: must be one of {', '.join(SPLITS)}; use split='test' for held-out data")
    if limit is not None:
        limit = _positive_int(limit, "limit", "pass a positive number of images, or None for all")
    if parsed.kind == "folder":
        return _load_folder(parsed.path, split, limit, seed)
    images, labels, classes, origin = _read_arrays(parsed, split)
    keep, count = _pick(labels, limit, seed)
    return ImageSet(images[keep], labels[keep], classes, f"{origin}: {count}")


# ----------------------------------------------------------------------------------------------- tensors


def _input_size(input_size: Sequence[int]) -> tuple[int, int, int]:
    size = tuple(input_size) if isinstance(input_size, Sequence) else ()
    integral = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
    if len(size) != 3 or not integral or size[0] not in (1, 3):
        raise BadInputError(f"input size {input_size!r}: expected (C, H, W) with C = 1 or 3, e.g. (3, 224, 224)")
    return int(size[0]), int(size[1]), int(size[2])


def _stats(values: Sequence[float], channels: int, what: str) -> torch.Tensor:
    """Per-channel ``values`` as a 1 x C x 1 x 1 tensor; a length mismatch uses their mean for every channel."""
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise BadInputError(f"{what} {values!r}: expected a sequence of numbers, e.g. (0.5, 0.5, 0.5)") from err
    if not floats or not all(math.isfinite(v) for v in floats) or (what == "std" and min(floats) <= 0):
        raise BadInputError(f"{what} {values!r}: expected finite numbers (std > 0), e.g. (0.5, 0.5, 0.5)")
    if len(floats) != channels:
        floats = [sum(floats) / len(floats)] * channels
    return torch.tensor(floats, dtype=torch.float32).view(1, channels, 1, 1)


def _convert(images: np.ndarray, size: tuple[int, int, int], mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    channels, height, width = size
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] == 3 and channels == 1:
        x = sum(w * x[:, i : i + 1] for i, w in enumerate(_LUMA))
    if tuple(x.shape[-2:]) != (height, width):
        shrink = height < x.shape[-2] or width < x.shape[-1]
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
    if x.shape[1] == 1 and channels == 3:
        x = x.repeat(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def to_tensor(
    images: np.ndarray, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 N x H x W x C (or N x H x W) images -> float32 N x C x H x W in the teacher's input format.

    Example:
        >>> img = np.full((1, 2, 2, 1), 51, np.uint8)
        >>> to_tensor(img, (3, 4, 4), (0.5,), (0.25,))[0, :, 0, 0].tolist()   # (51/255 - 0.5) / 0.25
        [-1.2000000476837158, -1.2000000476837158, -1.2000000476837158]
    """
    size = _input_size(input_size)
    array = np.asarray(images)
    array = array[..., None] if array.ndim == 3 else array
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise BadInputError(
            f"images {array.dtype} {array.shape}: expected uint8 N x H x W x C with C = 1 or 3; "
            "convert float images with (x * 255).round().astype(np.uint8)"
        )
    return _convert(array, size, _stats(mean, size[0], "mean"), _stats(std, size[0], "std"))


def calibration_batch(
    data: ImageSet, n: int, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images stratified by class, as (float32 n x C x H x W, int64 labels). Deterministic for ``seed``.

    Example:
        >>> x, y = calibration_batch(load_images(None), 4, (1, 16, 16), (0.5,), (0.5,), seed=1)
        >>> tuple(x.shape), y.dtype, len(set(y.tolist()))
        ((4, 1, 16, 16), torch.int64, 4)
    """
    n = _positive_int(n, "calibration batch size", "pass --batch-size 1 or more")
    if n > len(data):
        raise BadInputError(
            f"calibration batch size {n}: the data has only {len(data)} images ({data.source}); "
            f"use --batch-size {len(data)} or smaller, or more data"
        )
    index = stratified_indices(data.labels, n, seed)
    return to_tensor(data.images[index], input_size, mean, std), torch.from_numpy(data.labels[index].copy())


class TensorImageDataset(torch.utils.data.Dataset):
    """An :class:`ImageSet` as a torch Dataset of (normalised C x H x W float tensor, int label).

    With ``augment=True`` each item is randomly cropped from a copy padded by H/8 on every side (the
    padding is 0 after normalisation, i.e. the mean colour) and flipped left-right with probability 1/2.
    Randomness comes from ``generator`` (torch's global RNG when None, which DataLoader seeds per worker).

    Example:
        >>> ds = TensorImageDataset(load_images(None), (3, 32, 32), (0.5,), (0.5,), augment=True)
        >>> x, y = ds[0]
        >>> tuple(x.shape), isinstance(y, int), len(ds)
        ((3, 32, 32), True, 320)
    """

    def __init__(
        self,
        data: ImageSet,
        input_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.data = data
        self.input_size = _input_size(input_size)
        self.mean, self.std = _stats(mean, self.input_size[0], "mean"), _stats(std, self.input_size[0], "std")
        self.augment = augment
        self.generator = generator

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = _convert(self.data.images[[index]], self.input_size, self.mean, self.std)[0]
        if self.augment:
            x = _random_crop_flip(x, self.generator)
        return x, int(self.data.labels[index])


def _random_crop_flip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    height, width = x.shape[-2:]
    pad = max(1, height // 8)
    top, left = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    x = F.pad(x, (pad, pad, pad, pad))[:, top : top + height, left : left + width]
    return x.flip(-1) if torch.rand((), generator=generator).item() < 0.5 else x
