"""Counting a real module: its parameters and its MACs (``torch.utils.flop_counter``), as a :class:`Cost`.

``FlopCounterMode`` counts 2 FLOPs per MAC, so ``macs == flop_counter_flops / 2`` (docs/architecture.md).

Example:
    >>> from torch import nn
    >>> conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    >>> count_params(conv), counted_macs(conv, (3, 4, 4))
    (216, 3456.0)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from studentnas.core.cost import Cost


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def counted_macs(model: nn.Module, input_size: tuple[int, int, int]) -> float:
    """MACs of one image measured by ``torch.utils.flop_counter.FlopCounterMode`` (its FLOPs / 2)."""
    return macs_on(model, torch.zeros(1, *input_size))


def macs_on(model: nn.Module, x: torch.Tensor) -> float:
    """MACs of ``model(x)`` (``FlopCounterMode`` FLOPs / 2) in eval mode without grad; ``x`` is any input the
    model takes (token ids for a language model). The model's train/eval mode is restored."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2


def measured_cost(model: nn.Module, input_size: tuple[int, int, int]) -> Cost:
    """A ``Cost`` counted on a real module (slow; used for teachers and for validation)."""
    return Cost(macs=counted_macs(model, input_size), params=float(count_params(model)))


class ConvTally:
    """Analytic (MACs, params) of a timm-style CNN, added up layer by layer without building it.

    Each :meth:`conv` is a bias-free conv followed by BatchNorm (2 params per channel); :meth:`stages`
    adds timm ``ResNet`` stages of ``BasicBlock``/``Bottleneck`` (stride 2 from the second stage, a 1x1
    downsample where the shape changes), and :meth:`head` the global pool and linear classifier. The
    ResNet search spaces describe their stems with :meth:`conv` and share the rest.

    Example:
        >>> t = ConvTally()
        >>> t.conv(3, 16, 3, 32, 32)  # 432 weights at 32x32, plus BN
        >>> t.head(16, 10)
        >>> t.macs, t.params
        (442528, 634)
    """

    def __init__(self) -> None:
        self.macs = 0
        self.params = 0

    def conv(self, cin: int, cout: int, k: int, h: int, w: int, groups: int = 1) -> None:
        weights = cout * (cin // groups) * k * k
        self.params += weights + 2 * cout  # conv weight + BatchNorm weight and bias
        self.macs += weights * h * w

    def stages(self, block: str, planes: tuple[int, ...], depths: tuple[int, ...], inplanes: int, h: int, w: int,
               ratio: float = 1.0, cardinality: int = 1) -> int:
        """Add the residual stages at input size ``h`` x ``w``; returns the channels they end with."""
        expansion = 4 if block == "bottleneck" else 1
        for stage, (p, depth) in enumerate(zip(planes, depths)):
            out = p * expansion
            for i in range(depth):
                s = 2 if stage and i == 0 else 1
                ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
                if i == 0 and (s != 1 or inplanes != out):
                    self.conv(inplanes, out, 1, ho, wo)
                if block == "bottleneck":
                    mid = int(math.floor(p * ratio) * cardinality)
                    self.conv(inplanes, mid, 1, h, w)
                    self.conv(mid, mid, 3, ho, wo, groups=cardinality)
                    self.conv(mid, out, 1, ho, wo)
                else:
                    self.conv(inplanes, p, 3, ho, wo)
                    self.conv(p, out, 3, ho, wo)
                inplanes, h, w = out, ho, wo
        return inplanes

    def head(self, channels: int, num_classes: int) -> None:
        """Global average pool (free) and the linear classifier with its bias."""
        self.params += channels * num_classes + num_classes
        self.macs += channels * num_classes
