"""The calibration batch of a proxy benchmark: which images, at what size, normalised how.

``--data`` takes every spec of :mod:`studentnas.data.images` (``fashion-mnist`` is the default) plus
``foolbox-cifar10[:WHEEL]`` and ``foolbox-cifar100[:WHEEL]`` (:mod:`studentnas.bench.foolbox_data`).
Images are resized to the NB201 input of the dataset (32x32, or 16x16 for ImageNet16-120), expanded
to 3 channels and normalised with the statistics of the data they come from (:data:`NORMALISATION`).

A set smaller than the requested batch (the foolbox sets hold 20 images) is used whole, and the
config says so: ``batch_size`` is what was used, ``batch_size_requested`` what was asked.

Example:
    >>> batch = load_bench_batch(None, 8, (3, 32, 32), seed=0)
    >>> tuple(batch.images.shape), batch.info["batch_size"], batch.info["normalisation"]
    ((8, 3, 32, 32), 8, 'fashion-mnist')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from studentnas.bench.foolbox_data import load_foolbox
from studentnas.core.errors import BadInputError
from studentnas.data import images as data_mod

DEFAULT_DATA = "fashion-mnist"
# (mean, std) per source; single values are used for every channel.
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class BenchBatch:
    """The calibration batch (float N x C x H x W, channels-last) with its labels and a JSON description."""

    images: torch.Tensor
    labels: torch.Tensor
    info: dict[str, Any]


def _kind(spec: str | None) -> str:
    """The normalisation key of a data spec."""
    if spec is None:
        return "fashion-mnist"
    head = spec.strip().partition(":")[0].lower().removeprefix("foolbox-")
    return head if head in NORMALISATION else "imagenet"


def load_bench_batch(spec: str | None, batch_size: int, input_size: tuple[int, int, int], seed: int,
                     num_classes: int | None = None) -> BenchBatch:
    """The calibration batch for ``--data spec``, stratified by class and deterministic for ``seed``.

    ``num_classes`` (of the benchmark's networks), when given, must exceed every label of the batch,
    since proxies with a loss use the labels as classifier targets.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise BadInputError(f"--batch-size must be an integer >= 2 (proxies compare samples), got {batch_size!r}")
    is_foolbox = isinstance(spec, str) and spec.strip().lower().startswith("foolbox-")
    if is_foolbox:
        images = load_foolbox(spec)
    else:
        data_mod.check_data_spec(spec)
        images = data_mod.load_images(spec, split="train", limit=batch_size, seed=seed)
    used = min(batch_size, len(images))
    kind = _kind(spec)
    mean, std = NORMALISATION[kind]
    x, y = data_mod.calibration_batch(images, used, input_size, mean, std, seed)
    if num_classes is not None and len(y) and int(y.max()) >= num_classes:
        raise BadInputError(f"data {spec!r} has labels up to {int(y.max())}, but the NB201 networks of this "
                            f"dataset have {num_classes} classes; use data with at most {num_classes} classes "
                            "(e.g. fashion-mnist or foolbox-cifar10) or --dataset cifar100")
    note = "" if used == batch_size else (f"the data holds only {len(images)} images, so all {used} are used "
                                          f"instead of the requested {batch_size}")
    info = {
        "spec": spec if spec is not None else "shipped sample",
        "source": images.source,
        "batch_size": used,
        "batch_size_requested": batch_size,
        "batch_note": note,
        "input_size": list(input_size),
        "normalisation": kind,
        "mean": list(mean),
        "std": list(std),
        "labels": sorted(set(y.tolist())),
    }
    return BenchBatch(x.contiguous(memory_format=torch.channels_last), y, info)
