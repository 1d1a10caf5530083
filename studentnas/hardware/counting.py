"""Counting a real module: its parameters and its MACs (``torch.utils.flop_counter``), as a :class:`Cost`.

``FlopCounterMode`` counts 2 FLOPs per MAC, so ``macs == flop_counter_flops / 2`` (docs/architecture.md).

Example:
    >>> from torch import nn
    >>> conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    >>> count_params(conv), counted_macs(conv, (3, 4, 4))
    (216, 3456.0)
"""

from __future__ import annotations

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
