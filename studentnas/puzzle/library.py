"""The Puzzle replacement library: what may stand in for which parent layers, what it costs, how good it is.

A teacher is cut into a sequence of parent *layers* (ResNet blocks; transformer attention and FFN
sub-blocks), each mapping a hidden state to a hidden state of the same kind
(:mod:`studentnas.puzzle.decompose`). A :class:`Replacement` covers a contiguous span of parent
layers ``[start, end)`` (one layer, or two for a merged pair) with a module of one ``kind``
(``teacher``, ``noop``, ``linear``, ``bottleneck``, ``attn``, ``ffn`` ...) and its ``config``.
An :class:`Entry` adds what the pipeline learnt about it: its costs (params, MACs, latency,
memory), its quality (KL to the teacher when it alone replaces its span, accuracy, BLD loss) and
a status. The :class:`Library` holds the layers and every entry, and is what the MIP reads.

Quality keys (lower is better unless noted): ``kl`` (KL(teacher || child) on held-out data),
``nmse`` (the BLD loss on held-out activations), ``acc`` (top-1 of the teacher with only this
entry substituted; higher is better), ``loss`` (LM loss for language models).
Cost keys: ``params``, ``macs``, ``latency_ms``, ``memory_mb``.

Example:
    >>> layers = [LayerInfo(0, "layer1.0", "bottleneck", (64, 8, 8), (64, 8, 8))]
    >>> r = Replacement(0, 1, "noop")
    >>> lib = Library("resnet", layers, [Entry(r, costs={"params": 0.0, "macs": 0.0}, quality={"kl": 0.2})])
    >>> lib.by_id()[r.id].replacement.label, Library.from_dict(lib.to_dict()).entries[0].quality
    ('noop@0', {'kl': 0.2})
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COST_KEYS = ("params", "macs", "latency_ms", "memory_mb")
QUALITY_KEYS = ("kl", "nmse", "acc", "loss")
NOOP_KINDS = frozenset({"noop", "block_noop"})
LOWER_IS_BETTER = {"kl": True, "nmse": True, "loss": True, "acc": False}


def _canonical(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in config.items()))


@dataclass(frozen=True)
class LayerInfo:
    """One parent layer: its position, teacher module name, family kind and hidden shapes (no batch)."""

    index: int
    name: str
    kind: str  # bottleneck | basic | attn | ffn | unknown ...
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stage: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. stride, heads, kv_heads, ffn_dim

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "kind": self.kind, "in_shape": list(self.in_shape),
                "out_shape": list(self.out_shape), "stage": self.stage, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerInfo:
        return cls(int(data["index"]), str(data["name"]), str(data["kind"]), tuple(data["in_shape"]),
                   tuple(data["out_shape"]), int(data.get("stage", 0)), dict(data.get("extra", {})))


@dataclass(frozen=True)
class Replacement:
    """A module of ``kind`` with ``config`` standing in for parent layers ``start .. end-1``."""

    start: int
    end: int  # exclusive
    kind: str
    config: tuple[tuple[str, Any], ...] = ()

    def __init__(self, start: int, end: int, kind: str, config: Mapping[str, Any] | None = None):
        if end <= start:
            raise ValueError(f"replacement span [{start}, {end}) is empty; end must be > start")
        object.__setattr__(self, "start", int(start))
        object.__setattr__(self, "end", int(end))
        object.__setattr__(self, "kind", str(kind))
        object.__setattr__(self, "config", _canonical(config or {}))

    @property
    def span(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.end))

    @property
    def width(self) -> int:
        """How many parent layers it covers."""
        return self.end - self.start

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.config)

    @property
    def is_teacher(self) -> bool:
        return self.kind == "teacher"

    @property
    def is_noop(self) -> bool:
        """A replacement that removes its span (``noop``, or ``block_noop`` for a whole transformer block)."""
        return self.kind in NOOP_KINDS

    @property
    def label(self) -> str:
        """Readable and unique within a library, e.g. ``bottleneck(width=0.5)@3`` or ``merge(width=1.0)@4-5``."""
        opts = ",".join(f"{k}={v}" for k, v in self.config)
        where = f"{self.start}" if self.width == 1 else f"{self.start}-{self.end - 1}"
        return f"{self.kind}({opts})@{where}" if opts else f"{self.kind}@{where}"

    @property
    def id(self) -> str:
        """12 hex characters of the canonical JSON form; stable across processes (file names, journals)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "kind": self.kind,
                "config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.config}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Replacement:
        return cls(int(data["start"]), int(data["end"]), str(data["kind"]), dict(data.get("config", {})))


@dataclass
class Entry:
    """A replacement plus its measured costs and quality, and ``status`` ('ok' or 'failed: reason')."""

    replacement: Replacement
    costs: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    status: str = "ok"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def objective(self, metric: str) -> float:
        """The quality in "lower is better" form (accuracy is negated); NaN when missing."""
        value = float(self.quality.get(metric, math.nan))
        return value if LOWER_IS_BETTER.get(metric, True) else -value

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.replacement.id, "label": self.replacement.label, **self.replacement.to_dict(),
                "costs": dict(self.costs), "quality": dict(self.quality), "status": self.status}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        return cls(Replacement.from_dict(data), {k: float(v) for k, v in data.get("costs", {}).items()},
                   {k: float(v) for k, v in data.get("quality", {}).items()}, str(data.get("status", "ok")))


@dataclass
class Library:
    """Every parent layer and every entry; ``fixed_costs`` are the non-layer parts (stem, head).

    The teacher's own total cost is ``fixed_costs + sum of the 'teacher' entries' costs``.
    """

    family: str
    layers: list[LayerInfo]
    entries: list[Entry]
    fixed_costs: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def by_id(self) -> dict[str, Entry]:
        return {e.replacement.id: e for e in self.entries}

    def teacher_entries(self) -> list[Entry]:
        return [e for e in self.entries if e.replacement.is_teacher]

    def teacher_cost(self, key: str) -> float:
        """The whole teacher's ``key`` cost: fixed parts plus every layer's own block."""
        return self.fixed_costs.get(key, 0.0) + sum(e.costs.get(key, 0.0) for e in self.teacher_entries())

    def total_cost(self, chosen: Sequence[Entry], key: str) -> float:
        """The assembled student's ``key`` cost by the library's (additive) tables."""
        return self.fixed_costs.get(key, 0.0) + sum(e.costs.get(key, 0.0) for e in chosen)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "layers": [info.to_dict() for info in self.layers],
                "fixed_costs": dict(self.fixed_costs), "meta": dict(self.meta),
                "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Library:
        return cls(str(data["family"]), [LayerInfo.from_dict(d) for d in data["layers"]],
                   [Entry.from_dict(d) for d in data["entries"]],
                   {k: float(v) for k, v in data.get("fixed_costs", {}).items()}, dict(data.get("meta", {})))
