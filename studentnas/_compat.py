"""Make ``import torchvision`` / ``import timm`` work next to a CPU-only torch.

PyPI's torchvision wheel is a CUDA build; next to the CPU torch wheel its C extension
(``torchvision/_C.so``) fails to load, and torchvision's own import then dies registering fake
kernels for ``torchvision::nms``, which takes ``import timm`` down with it.

:func:`install` runs before torchvision is imported (``studentnas/__init__.py`` calls it, and Ray
workers call it through their setup hook). It tries to load ``_C.so`` exactly as torchvision would.
If that works, it does nothing more. If not, it defines the ``torchvision::nms`` and
``torchvision::qnms`` operator schemas with a pure-torch CPU kernel, so torchvision imports and
``torchvision.ops.nms`` gives the same answers as the C++ kernel (greedy NMS, ties broken by
index).

Example:
    >>> import studentnas._compat
    >>> studentnas._compat.install() in (True, False)   # True where the shim was needed
    True
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch

_LIBRARY: torch.library.Library | None = None  # keeps the op definitions alive


def nms_reference(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression in pure torch: indices of kept boxes, by decreasing score.

    Boxes are (x1, y1, x2, y2); a box is dropped when its IoU with a kept, higher-scoring box is
    greater than ``iou_threshold`` (the C++ kernel's rule).
    """
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    dets = dets.float()
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = torch.sort(scores.float(), descending=True, stable=True).indices
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool)
    keep = []
    for pos in range(order.numel()):
        i = int(order[pos])
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1 :]
        xx1 = torch.maximum(x1[i], x1[rest])
        yy1 = torch.maximum(y1[i], y1[rest])
        xx2 = torch.minimum(x2[i], x2[rest])
        yy2 = torch.minimum(y2[i], y2[rest])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou > iou_threshold]] = True
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def _qnms_reference(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return nms_reference(dets.dequantize(), scores.dequantize(), iou_threshold)


def _extension_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return next(iter(sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))), None)


def _op_exists(name: str) -> bool:
    try:
        torch._C._dispatch_has_kernel_for_dispatch_key(f"torchvision::{name}", "CPU")
    except RuntimeError:
        return False
    return True


def needs_shim(load: Callable[[str], object] = torch.ops.load_library) -> bool:
    """True when torchvision's C ops are missing and cannot be loaded with ``load``."""
    if _op_exists("nms"):
        return False
    path = _extension_path()
    if path is None:  # torchvision is not installed: nothing to fix
        return False
    try:
        load(str(path))
    except (OSError, ImportError, RuntimeError):
        return True
    return not _op_exists("nms")


def install() -> bool:
    """Define the CPU ``torchvision::nms``/``qnms`` ops if torchvision's own cannot load.

    Returns True when the shim is in place (now or from an earlier call), False where torchvision's
    C extension loads normally (then nothing was changed). Safe to call any number of times.
    """
    global _LIBRARY
    if _LIBRARY is not None:
        return True
    if "torchvision" in sys.modules or not needs_shim():
        return False
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", nms_reference, "CPU")
    lib.impl("qnms", _qnms_reference, "QuantizedCPU")
    _LIBRARY = lib
    return True


install()
