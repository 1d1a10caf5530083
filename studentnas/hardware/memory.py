"""Peak batch-1 inference memory of a real module: weights, buffers and the largest activation pair.

Example:
    >>> from torch import nn
    >>> peak_activation_bytes(nn.Sequential(nn.Flatten()), torch.zeros(1, 2, 5))  # 10 floats in, 10 out
    80
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def estimate_peak_memory_mb(model: nn.Module, input_size: tuple[int, int, int]) -> float:
    """Peak batch-1 inference memory in MB (1e6 bytes): weights and buffers plus the largest
    input+output activation pair of any leaf module, recorded with forward hooks."""
    weight_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    was_training = model.training
    model.eval()
    try:
        peak = peak_activation_bytes(model, torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
    return (weight_bytes + peak) / 1e6


def peak_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """The largest input+output activation pair of any leaf module during ``model(x)`` (no grad, as is)."""
    peak = 0

    def hook(_mod: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal peak
        size = sum(t.numel() * t.element_size() for t in inputs if torch.is_tensor(t))
        if torch.is_tensor(output):
            size += output.numel() * output.element_size()
        peak = max(peak, size)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return peak
