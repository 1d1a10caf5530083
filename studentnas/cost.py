"""``Cost``: what an architecture costs to run, plus the measurements that need a real model.

Conventions (DESIGN.md §4): ``macs`` are multiply-accumulates of one image at the space's input
size, which is what the ResNet/DisWOT/OFA papers call "FLOPs" (ResNet-50 = 4.1 G).
``FlopCounterMode`` counts 2 FLOPs per MAC, so ``macs == flop_counter_flops / 2``.

Example:
    >>> c = Cost(macs=4.1e9, params=25.6e6)
    >>> f"{c.gmacs:.1f} GMACs, {c.mparams:.1f} M params"
    '4.1 GMACs, 25.6 M params'
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Cost:
    """Cost of one architecture. ``latency_ms``/``peak_memory_mb`` are None until measured.

    ``extra`` holds space-specific counts, e.g. NAS-Bench-201's published FLOPs convention.
    """

    macs: float
    params: float
    latency_ms: float | None = None
    peak_memory_mb: float | None = None
    extra: Mapping[str, float] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def value(self, metric: str) -> float | None:
        """The value of ``metric`` ('macs', 'params', 'latency', 'memory'), None when not measured."""
        return {
            "macs": self.macs,
            "params": self.params,
            "latency": self.latency_ms,
            "memory": self.peak_memory_mb,
        }[metric]

    def with_measurements(self, **values: float) -> Cost:
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"macs": self.macs, "params": self.params}
        if self.latency_ms is not None:
            out["latency_ms"] = self.latency_ms
        if self.peak_memory_mb is not None:
            out["peak_memory_mb"] = self.peak_memory_mb
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        return cls(
            macs=float(data["macs"]),
            params=float(data["params"]),
            latency_ms=data.get("latency_ms"),
            peak_memory_mb=data.get("peak_memory_mb"),
            extra=dict(data.get("extra", {})),
        )


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def counted_macs(model: nn.Module, input_size: tuple[int, int, int]) -> float:
    """MACs of one image measured by ``torch.utils.flop_counter.FlopCounterMode`` (its FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2


def measured_cost(model: nn.Module, input_size: tuple[int, int, int]) -> Cost:
    """A ``Cost`` counted on a real module (slow; used for teachers and for validation)."""
    return Cost(macs=counted_macs(model, input_size), params=float(count_params(model)))


def measure_latency_ms(
    model: nn.Module, input_size: tuple[int, int, int], repeats: int = 20, warmup: int = 3, threads: int | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> float:
    """Median batch-1 CPU latency in ms over ``repeats`` runs after ``warmup`` runs, threads fixed.

    The input is drawn from a private generator (the global RNG is untouched) in ``memory_format``;
    the model's train/eval mode is restored afterwards. :class:`studentnas.latency.LatencyMeter`
    adds the on-disk cache.
    """
    prev, was_training = torch.get_num_threads(), model.training
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model.eval()
        x = torch.randn(1, *input_size, generator=torch.Generator().manual_seed(0))
        x = x.contiguous(memory_format=memory_format)
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    finally:
        torch.set_num_threads(prev)
        model.train(was_training)


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
