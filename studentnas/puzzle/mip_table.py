"""The usable entries of a Puzzle library as arrays, and the selection record every selector returns.

:class:`EntryTable` keeps the entries the MIP (:func:`studentnas.puzzle.mip_model.solve`) and the
baselines (:mod:`studentnas.puzzle.baselines`) may pick: status ``ok`` and a finite objective for the
metric, with their spans, costs and the layers x entries coverage matrix. :class:`MipSolution` is one
selection covering every parent layer once, with its whole-model costs by the tables.

Example:
    >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
    >>> layers = [LayerInfo(i, f"b{i}", "bottleneck", (8,), (8,)) for i in range(2)]
    >>> lib = Library("toy", layers, [Entry(Replacement(0, 2, "noop"), {"params": 0}, {"kl": 1}),
    ...                              Entry(Replacement(1, 2, "teacher"), {"params": 10}, {}),
    ...                              Entry(Replacement(0, 1, "teacher"), {"params": 10}, {}, "failed")])
    >>> table = EntryTable.build(lib)                # the failed entry is left out
    >>> table.coverage.toarray().tolist(), table.obj.tolist()
    ([[1.0, 0.0], [1.0, 1.0]], [1.0, 0.0])
    >>> table.solution([0], status="feasible", seconds=0.0, method="greedy").labels
    ['noop@0-1']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from studentnas.core.errors import BadInputError
from studentnas.puzzle.library import COST_KEYS, LOWER_IS_BETTER, QUALITY_KEYS, Entry, Library


@dataclass
class MipSolution:
    """One selection of entries covering every parent layer once, with what it costs by the tables.

    ``objective`` is the summed ``Entry.objective(metric)`` (lower is better; for ``acc`` it is minus the
    summed accuracies). ``costs`` are whole-model totals by the library tables (fixed parts included).
    ``status``: ``optimal`` or ``time_limit`` (best found within the limit) for the MIP, ``feasible`` or
    ``infeasible`` for the baselines. ``method`` is ``mip``, ``greedy`` or ``random``.
    """

    chosen: list[Entry]
    objective: float
    costs: dict[str, float]
    status: str
    seconds: float
    metric: str = "kl"
    method: str = "mip"
    limits: dict[str, float] = field(default_factory=dict)
    lower_limits: dict[str, float] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        """Replacement ids of the chosen entries, by start layer (what ``forbid`` takes)."""
        return [e.replacement.id for e in self.chosen]

    @property
    def labels(self) -> list[str]:
        return [e.replacement.label for e in self.chosen]

    @property
    def feasible(self) -> bool:
        """True when every limit holds by the tables (always for a MIP solution)."""
        return self.status in ("optimal", "time_limit", "feasible")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "status": self.status, "metric": self.metric,
                "objective": float(self.objective), "costs": {k: float(v) for k, v in self.costs.items()},
                "limits": dict(self.limits), "lower_limits": dict(self.lower_limits),
                "seconds": float(self.seconds), "labels": self.labels,
                "chosen": [e.to_dict() for e in self.chosen]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MipSolution:
        return cls([Entry.from_dict(d) for d in data["chosen"]], float(data["objective"]),
                   {k: float(v) for k, v in data["costs"].items()}, str(data["status"]),
                   float(data["seconds"]), str(data.get("metric", "kl")), str(data.get("method", "mip")),
                   dict(data.get("limits", {})), dict(data.get("lower_limits", {})))


@dataclass
class EntryTable:
    """The usable entries of a library as arrays (shared by the MIP and the baselines).

    ``obj`` is the objective in lower-is-better form, ``costs[k]`` the per-entry cost (NaN when the
    entry lacks it), ``coverage`` the sparse layers x entries 0/1 matrix.
    """

    library: Library
    metric: str
    entries: list[Entry]
    starts: np.ndarray
    ends: np.ndarray
    obj: np.ndarray
    costs: dict[str, np.ndarray]
    noop: np.ndarray
    coverage: sparse.csr_array

    @property
    def num_layers(self) -> int:
        return self.library.num_layers

    @property
    def widths(self) -> np.ndarray:
        return self.ends - self.starts

    @classmethod
    def build(cls, library: Library, metric: str = "kl") -> EntryTable:
        """Collect the usable entries (status ok, finite objective); O(number of entries)."""
        if metric not in QUALITY_KEYS:
            raise BadInputError(f"unknown quality metric '{metric}'; use one of {', '.join(QUALITY_KEYS)}")
        num_layers = library.num_layers
        if num_layers == 0:
            raise BadInputError(f"library '{library.family}' has no parent layers; nothing to select")
        teacher_default = 0.0 if LOWER_IS_BETTER[metric] else None
        if metric == "acc":
            acc = dict(library.meta.get("teacher_quality", {})).get("acc")
            teacher_default = None if acc is None else -float(acc)
        entries, objs = [], []
        for entry in library.entries:
            r = entry.replacement
            if r.start < 0 or r.end > num_layers:
                raise BadInputError(f"library entry {r.label} spans [{r.start}, {r.end}) outside the "
                                    f"{num_layers} parent layers; rebuild the library")
            if not entry.ok:
                continue
            q = entry.objective(metric)
            if math.isnan(q) and r.is_teacher and teacher_default is not None:
                q = teacher_default
            if not math.isfinite(q):
                continue
            entries.append(entry)
            objs.append(q)
        if not entries:
            raise BadInputError(f"no library entry has status ok and a finite '{metric}' score; "
                                "score the library first or choose another --metric")
        starts = np.fromiter((e.replacement.start for e in entries), dtype=np.int64, count=len(entries))
        ends = np.fromiter((e.replacement.end for e in entries), dtype=np.int64, count=len(entries))
        costs = {k: np.array([float(e.costs.get(k, math.nan)) for e in entries]) for k in COST_KEYS}
        costs = {k: v for k, v in costs.items() if np.isfinite(v).any()}
        noop = np.array([e.replacement.is_noop for e in entries], dtype=bool)
        table = cls(library, metric, entries, starts, ends, np.asarray(objs, dtype=float), costs, noop,
                    _coverage(starts, ends, num_layers))
        table.check_cover(np.ones(len(entries), dtype=bool), "a finite score")
        return table

    def check_cover(self, mask: np.ndarray, what: str) -> None:
        """Raise when some layer has no entry left after ``mask``."""
        counts = np.asarray(self.coverage[:, np.flatnonzero(mask)].sum(axis=1)).ravel()
        missing = np.flatnonzero(counts == 0)
        if missing.size:
            names = ", ".join(f"{i} ({self.library.layers[i].name})" for i in missing[:5])
            raise BadInputError(f"parent layer(s) {names} have no usable library entry with status ok and {what}; "
                                "every layer needs at least its teacher block")

    def usable_for(self, keys: Iterable[str]) -> np.ndarray:
        """Mask of entries with a finite value for every key in ``keys``."""
        mask = np.ones(len(self.entries), dtype=bool)
        for k in keys:
            mask &= np.isfinite(self.costs[k])
        return mask

    def fixed(self, key: str) -> float:
        return float(self.library.fixed_costs.get(key, 0.0))

    def solution(self, picked: np.ndarray, *, status: str, seconds: float, method: str,
                 limits: Mapping[str, float] | None = None,
                 lower_limits: Mapping[str, float] | None = None) -> MipSolution:
        """A :class:`MipSolution` from the indices of the chosen entries."""
        picked = np.asarray(picked, dtype=np.int64)
        picked = picked[np.argsort(self.starts[picked], kind="stable")]
        chosen = [self.entries[i] for i in picked]
        keys = [k for k in COST_KEYS if k in self.library.fixed_costs or any(k in e.costs for e in chosen)]
        costs = {k: float(self.library.total_cost(chosen, k)) for k in keys}
        return MipSolution(chosen, float(self.obj[picked].sum()), costs, status, seconds, self.metric, method,
                           dict(limits or {}), dict(lower_limits or {}))


def _coverage(starts: np.ndarray, ends: np.ndarray, num_layers: int) -> sparse.csr_array:
    """Layers x entries 0/1 matrix, vectorised: entry j has ones on rows ``starts[j] .. ends[j]-1``."""
    widths = ends - starts
    cols = np.repeat(np.arange(starts.size), widths)
    offsets = np.arange(cols.size) - np.repeat(np.cumsum(widths) - widths, widths)
    rows = np.repeat(starts, widths) + offsets
    return sparse.csr_array((np.ones(cols.size), (rows, cols)), shape=(num_layers, starts.size))


def check_limits(table: EntryTable, limits: Mapping[str, float] | None, what: str) -> dict[str, float]:
    """``limits`` as floats, each key a library cost key that ``table`` has costs for and each value finite;
    a :class:`BadInputError` naming ``what`` otherwise."""
    out = {}
    for key, value in (limits or {}).items():
        if key not in COST_KEYS:
            raise BadInputError(f"unknown cost key '{key}' in {what}; valid keys are {', '.join(COST_KEYS)}")
        if key not in table.costs and key not in table.library.fixed_costs:
            have = ", ".join(k for k in COST_KEYS if k in table.costs) or "none"
            raise BadInputError(f"{what} constrain '{key}', which no library entry has; "
                                f"keys with costs in this library: {have}")
        value = float(value)
        if not math.isfinite(value):
            raise BadInputError(f"{what}['{key}'] = {value} is not a finite number; give an absolute value")
        out[key] = value
    return out
