"""``Cost``: what an architecture costs to run (counted analytically or measured on a real model).

Conventions (docs/architecture.md): ``macs`` are multiply-accumulates of one image at the space's input
size, which is what the ResNet/DisWOT/OFA papers call "FLOPs" (ResNet-50 = 4.1 G).
``FlopCounterMode`` counts 2 FLOPs per MAC, so ``macs == flop_counter_flops / 2``.

Example:
    >>> c = Cost(macs=4.1e9, params=25.6e6)
    >>> f"{c.gmacs:.1f} GMACs, {c.mparams:.1f} M params"
    '4.1 GMACs, 25.6 M params'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: Metric -> (scale, unit) of :func:`describe_cost`.
UNITS = {"macs": (1e9, "GMACs"), "params": (1e6, "M params"), "latency": (1.0, "ms"), "memory": (1.0, "MB")}


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


def describe_cost(cost: Cost, metrics: Sequence[str] = ("macs", "params")) -> str:
    """``cost`` in words, e.g. ``0.412 GMACs, 3.1 M params``, for the given metrics (those measured, each once).

    >>> describe_cost(Cost(macs=4e9, params=20e6))
    '4 GMACs, 20 M params'
    >>> describe_cost(Cost(macs=5.48e6, params=171_200, latency_ms=3.25), ["macs", "latency", "memory", "macs"])
    '0.00548 GMACs, 3.25 ms'
    """
    parts = []
    for metric in dict.fromkeys(metrics):
        value = cost.value(metric)
        if value is not None:
            scale, unit = UNITS[metric]
            parts.append(f"{value / scale:.4g} {unit}")
    return ", ".join(parts)
