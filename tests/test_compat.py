"""The torchvision shim: nms is correct where the C ops cannot load, and nothing changes where they can."""

from __future__ import annotations

import subprocess
import sys

import torch

from studentnas import _compat


def test_nms_matches_hand_computed_suppression() -> None:
    import timm  # noqa: F401  (importing timm is what the shim is for)

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box3 (0.95) keeps; box0 is identical to it (IoU 1) -> dropped; box1 has IoU 81/119 = 0.68 with box3
    # -> dropped at 0.5 but kept at 0.7; box2 does not overlap.
    assert torch.ops.torchvision.nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert torch.ops.torchvision.nms(boxes, scores, 0.7).tolist() == [3, 1, 2]
    assert _compat.nms_reference(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_shim_is_active_here_because_the_cuda_extension_cannot_load() -> None:
    # This machine has CPU torch next to PyPI's CUDA torchvision: the shim must be in place.
    assert _compat.install() is True
    assert _compat._op_exists("nms") and _compat._op_exists("qnms")


NORMAL_TORCHVISION = """
import torch
lib = torch.library.Library("torchvision", "DEF")   # what a loadable torchvision/_C.so registers
lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
lib.impl("nms", lambda d, s, t: torch.arange(d.shape[0]), "CPU")
import studentnas._compat as c
assert c._LIBRARY is None, "the shim must do nothing where torchvision's ops exist"
assert c.install() is False
print(torch.ops.torchvision.nms(torch.zeros(3, 4), torch.zeros(3), 0.5).tolist())
"""


def test_shim_is_a_no_op_where_torchvision_loads_normally() -> None:
    proc = subprocess.run([sys.executable, "-c", NORMAL_TORCHVISION], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1, 2]"  # the pre-existing kernel, untouched


LOADABLE_EXTENSION = """
import torch
def load_ok(path):   # what loading a working torchvision/_C.so does: it registers the ops
    global lib
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
torch.ops.load_library = load_ok
import studentnas._compat as c
print(c._LIBRARY is None, c.needs_shim())
"""


def test_no_shim_when_the_extension_loads_and_registers_the_ops() -> None:
    proc = subprocess.run([sys.executable, "-c", LOADABLE_EXTENSION], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"], "nothing installed, and no shim needed"
