"""``Arch``: one architecture of one search space, frozen, hashable and with a stable short id.

An ``Arch`` is the space's name plus a flat mapping of genes (str -> int | float | str | tuple).
Its ``id`` is a hash of the canonical JSON form, so the same architecture has the same id in every
process, run and machine; the run journal, caches and exported files key on it.

Example:
    >>> a = Arch("resnet", {"block": "basic", "depth1": 2})
    >>> a["block"], a.id == Arch.from_dict(a.to_dict()).id
    ('basic', True)
    >>> len(a.id)
    12
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

GeneValue = int | float | str | tuple


def _freeze(value: Any) -> GeneValue:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def _thaw(value: GeneValue) -> Any:
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Arch:
    """An architecture: ``space`` name plus ``genes``. Build it through a ``SearchSpace``."""

    space: str
    genes: tuple[tuple[str, GeneValue], ...] = field(default=())

    def __init__(self, space: str, genes: Mapping[str, Any] | tuple[tuple[str, Any], ...] = ()):
        items = genes.items() if isinstance(genes, Mapping) else genes
        object.__setattr__(self, "space", str(space))
        object.__setattr__(self, "genes", tuple(sorted((str(k), _freeze(v)) for k, v in items)))

    def __getitem__(self, key: str) -> GeneValue:
        for k, v in self.genes:
            if k == key:
                return v
        raise KeyError(f"arch of space '{self.space}' has no gene '{key}'; genes: {[k for k, _ in self.genes]}")

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.genes)

    def as_dict(self) -> dict[str, GeneValue]:
        """The genes as a plain dict."""
        return dict(self.genes)

    def replace(self, **changes: Any) -> Arch:
        """A copy with some genes changed."""
        return Arch(self.space, {**self.as_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"space": ..., "genes": {...}}`` (tuples become lists)."""
        return {"space": self.space, "genes": {k: _thaw(v) for k, v in self.genes}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arch:
        """Inverse of :meth:`to_dict`."""
        return cls(data["space"], data["genes"])

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """Stable 12-hex-digit id: the SHA-1 of the canonical JSON."""
        cached = self.__dict__.get("_id")
        if cached is None:
            cached = hashlib.sha1(self.canonical_json().encode()).hexdigest()[:12]
            object.__setattr__(self, "_id", cached)
        return cached

    def __str__(self) -> str:
        """The generic form ``space(gene=value,...)``; a space's own label (e.g. the NB201 cell string) is
        :meth:`studentnas.core.space.SearchSpace.format_arch`.

        >>> str(Arch("resnet", {"depths": (1, 2), "block": "basic"}))
        'resnet(block=basic,depths=1-2)'
        """
        body = ",".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in self.genes)
        return f"{self.space}({body})"
