"""The data side of training: an :class:`~studentnas.data.images.ImageSet` served as seeded, normalised (and
optionally augmented) :class:`Batches`, and the stratified :func:`holdout_split` that ranks trials.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from studentnas.core.errors import BadInputError
from studentnas.data.images import ImageSet, stratified_indices, to_tensor


def seed_of(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and platforms)."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


class Batches:
    """An :class:`ImageSet` served as normalised batches in the model's input format.

    Each batch is converted on the fly (:func:`studentnas.data.images.to_tensor`: channels, resize, mean/std).
    With ``shuffle`` the order of epoch ``e`` is a permutation drawn from (seed, e); with ``augment``
    each image is randomly cropped from a copy padded by H/8 (zeros after normalisation, the mean
    colour) and flipped left-right with probability 1/2, drawn from the same generator. With
    ``drop_last`` an incomplete last batch is dropped when there is at least one full batch.

    Example:
        >>> from studentnas.data.images import load_images
        >>> b = Batches(load_images(None, limit=30), (1, 8, 8), (0.5,), (0.5,), batch_size=16, shuffle=True)
        >>> [(tuple(x.shape), len(i)) for i, x, y in b.epoch(0)]
        [((16, 1, 8, 8), 16), ((14, 1, 8, 8), 14)]
        >>> len(b), len(Batches(b.data, (1, 8, 8), (0.5,), (0.5,), 16, drop_last=True))
        (2, 1)
    """

    def __init__(self, data: ImageSet, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 batch_size: int, *, shuffle: bool = False, augment: bool = False, seed: int = 0,
                 drop_last: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise BadInputError(f"batch size {batch_size!r}: must be a whole number >= 1, e.g. --batch-size 64")
        if len(data) == 0:
            raise BadInputError(f"no images in {data.source}; give more data")
        self.data = data
        self.input_size = tuple(int(v) for v in input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.drop_last = drop_last and len(data) >= batch_size

    def __len__(self) -> int:
        full, rest = divmod(len(self.data), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    @property
    def num_images(self) -> int:
        """Images served per epoch (all of them, less a dropped last batch)."""
        return len(self.data) - (len(self.data) % self.batch_size if self.drop_last else 0)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(indices into the data, images N x C x H x W, labels) for each batch of ``epoch``."""
        gen = torch.Generator().manual_seed(seed_of("batches", self.seed, epoch))
        order = torch.randperm(len(self.data), generator=gen) if self.shuffle else torch.arange(len(self.data))
        for start in range(0, self.num_images, self.batch_size):
            index = order[start : start + self.batch_size]
            numpy_index = index.numpy()
            x = to_tensor(self.data.images[numpy_index], self.input_size, self.mean, self.std)
            if self.augment:
                x = _crop_flip(x, gen)
            yield index, x, torch.from_numpy(self.data.labels[numpy_index].copy())


def holdout_split(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """(train, validation) parts of ``data``: ``round(fraction * N)`` images, stratified by class and
    seeded, are held out (at least one when ``fraction > 0``); ``fraction = 0`` holds out nothing.

    Example:
        >>> from studentnas.data.images import load_images
        >>> train_part, val_part = holdout_split(load_images(None, limit=100), 0.2, seed=0)
        >>> len(train_part), len(val_part), np.bincount(val_part.labels).tolist()
        (80, 20, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    if not 0 <= fraction < 1:
        raise BadInputError(f"validation fraction {fraction!r}: must be in [0, 1), e.g. --val-fraction 0.1")
    if fraction == 0:
        return data, None
    n_val = max(1, round(fraction * len(data)))
    if n_val >= len(data):
        raise BadInputError(f"validation fraction {fraction} of {len(data)} images leaves none to train on; "
                            "use more images or a smaller --val-fraction")
    val = np.sort(stratified_indices(data.labels, n_val, seed_of("holdout", seed) % 2**32))
    keep = np.setdiff1d(np.arange(len(data)), val)

    def part(index: np.ndarray, what: str) -> ImageSet:
        return ImageSet(data.images[index], data.labels[index], data.classes, f"{data.source}; {what} {len(index)}")

    return part(keep, "training part"), part(val, "held-out validation part")


def _crop_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, height, width = x.shape
    pad = max(1, height // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).tolist()
    flips = (torch.rand(n, generator=gen) < 0.5).tolist()
    out = [padded[i, :, top : top + height, left : left + width] for i, (top, left) in enumerate(offsets)]
    return torch.stack([img.flip(-1) if flip else img for img, flip in zip(out, flips)])
