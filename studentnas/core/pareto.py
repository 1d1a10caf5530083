"""Non-dominated fronts and hypervolume over any number of objectives (pymoo does the maths).

Objectives are proxy scores (maximised) and cost metrics (minimised), see
:mod:`studentnas.core.objectives`. Fronts come from pymoo's ``NonDominatedSorting``; exact duplicates
keep their first occurrence. The hypervolume is pymoo's ``HV`` in a *normalised* objective space
whose reference point is recorded with it (:class:`ReferencePoint`):

* a cost metric ``c`` is divided by the budget's limit on it (``--budget 5GFLOPs`` -> ``macs / 5e9``),
  or by the largest value among the run's candidates when the budget does not constrain it; its
  ideal is 0. A student exactly at the budget adds no volume along that axis.
* a proxy score ``s`` maps to ``(max - s) / (max - min)`` over the run's scored candidates: the best
  score is 0, the worst 1.
* the reference point is 1 on every axis (the budget, and the worst score), so the hypervolume lies
  in [0, 1]: the share of the "within budget, better than the worst student" box that the front
  dominates. Points beyond the reference add nothing.

To compare runs (nsga2 vs evolution vs random on one query), compute one reference point from the
union of their candidates and pass it to :func:`hypervolume` for each run.

Example:
    >>> pareto_indices([(3.0, 10.0), (2.0, 5.0), (1.0, 6.0), (3.0, 12.0)])
    [0, 1]
    >>> round(hypervolume_of([[0.0, 0.8], [0.2, 0.4], [0.5, 0.2]], [1.0, 1.0]), 6)  # by hand: 0.04 + 0.18 + 0.4
    0.62
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from studentnas.core import objectives as obj
from studentnas.core.candidate import Candidate

REFERENCE_RULE = ("cost metrics are divided by the budget's limit on them (or by the largest value among the run's "
                  "candidates when unconstrained), proxy scores map to (max - s) / (max - min) over the run's scored "
                  "candidates; the reference point is 1 on every axis")


def nondominated(F: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
    """Row indices of the non-dominated rows of a minimisation matrix, in row order (pymoo's sort).

    Exact duplicate rows keep the first only.

    Example:
        >>> nondominated([[1, 2], [1, 2], [0, 3], [2, 2]])
        [0, 2]
    """
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    arr = np.asarray(F, dtype=float)
    if arr.size == 0:
        return []
    first = NonDominatedSorting().do(arr, only_non_dominated_front=True)
    seen: set[tuple[float, ...]] = set()
    out = []
    for i in sorted(int(j) for j in first):
        key = tuple(arr[i])
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def pareto_indices(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (score up, cost down) points, best score first.

    A point is dominated when another has score >= and cost <=, with one strict. Exact duplicates
    keep the first occurrence only.
    """
    keep = nondominated([(-s, c) for s, c in points])
    return sorted(keep, key=lambda i: (-points[i][0], points[i][1], i))


def front(candidates: Sequence[Candidate], objectives: Sequence[str]) -> list[Candidate]:
    """The ok candidates on the non-dominated front of ``objectives``, best first by the first objective.

    Candidates that failed, or lack a value for an objective (e.g. an unmeasured latency), are left out.
    """
    names = [obj.canonical(n) for n in objectives]
    pairs = [(c, v) for c in candidates if (v := obj.minimisation_vector(c, names)) is not None]
    keep = nondominated([v for _, v in pairs])
    return [pairs[i][0] for i in sorted(keep, key=lambda i: (pairs[i][1], i))]


def pareto_front(candidates: Sequence[Candidate], objective: str, cost_metric: str = "macs") -> list[Candidate]:
    """The ok candidates on the (``objective`` up, ``cost_metric`` down) front, best score first."""
    return front(candidates, [objective, cost_metric])


@dataclass(frozen=True)
class ReferencePoint:
    """How raw objective values are normalised for the hypervolume, and so the reference point.

    ``ideal`` and ``nadir`` are raw values (scores, MACs, ms) per objective; normalised value =
    (f - ideal_f) / (nadir_f - ideal_f) in minimisation form, so the ideal is 0 and the reference
    point (the nadir) is 1 on every axis.
    """

    objectives: tuple[str, ...]
    ideal: tuple[float, ...]
    nadir: tuple[float, ...]

    def normalise(self, vectors: Sequence[Sequence[float]]) -> np.ndarray:
        """Minimisation vectors (see :func:`studentnas.core.objectives.minimisation_vector`) -> normalised rows."""
        arr = np.asarray(vectors, dtype=float).reshape(-1, len(self.objectives))
        lo = np.array([i if obj.is_cost(n) else -i for n, i in zip(self.objectives, self.ideal)])
        hi = np.array([d if obj.is_cost(n) else -d for n, d in zip(self.objectives, self.nadir)])
        width = np.where(hi - lo > 0, hi - lo, 1.0)  # a degenerate axis (one value) maps everything to 0
        return (arr - lo) / width

    def to_dict(self) -> dict[str, Any]:
        return {"objectives": list(self.objectives), "ideal": list(self.ideal), "nadir": list(self.nadir),
                "normalised_point": [1.0] * len(self.objectives), "rule": REFERENCE_RULE}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferencePoint:
        return cls(tuple(data["objectives"]), tuple(map(float, data["ideal"])), tuple(map(float, data["nadir"])))


def reference_point(candidates: Sequence[Candidate], objectives: Sequence[str], budget: Any = None) -> ReferencePoint:
    """The reference point of ``objectives`` for these candidates under ``budget`` (a resolved
    :class:`~studentnas.core.budget.Budget`, or None). See the module docstring for the rule.

    Example:
        >>> from studentnas import Arch, Budget, Cost
        >>> cs = [Candidate(Arch("nb201", {"e0": str(i)}), Cost(m, 1), {"s": s})
        ...       for i, (s, m) in enumerate([(10, 4e9), (8, 2e9), (0, 3e9)])]
        >>> reference_point(cs, ["s", "macs"], Budget.parse("5GFLOPs"))
        ReferencePoint(objectives=('s', 'macs'), ideal=(10.0, 0.0), nadir=(0.0, 5000000000.0))
    """
    names = tuple(obj.canonical(n) for n in objectives)
    ok = [c for c in candidates if obj.minimisation_vector(c, names) is not None]
    ideal, nadir = [], []
    for name in names:
        values = [obj.value(c, name) for c in ok]
        if obj.is_cost(name):
            limits = [c.limit for c in (budget.constraints if budget is not None else ())
                      if c.metric == name and not c.is_relative and math.isfinite(c.limit)]
            ideal.append(0.0)
            nadir.append(float(min(limits)) if limits else float(max(values, default=1.0)))
        else:
            ideal.append(float(max(values, default=0.0)))
            nadir.append(float(min(values, default=0.0)))
    return ReferencePoint(names, tuple(ideal), tuple(nadir))


def hypervolume_of(points: Sequence[Sequence[float]] | np.ndarray, ref_point: Sequence[float]) -> float:
    """pymoo's hypervolume of minimisation ``points`` against ``ref_point`` (points beyond it add nothing)."""
    from pymoo.indicators.hv import HV

    arr = np.asarray(points, dtype=float).reshape(-1, len(ref_point))
    return float(HV(ref_point=np.asarray(ref_point, dtype=float))(arr)) if len(arr) else 0.0


def hypervolume(candidates: Sequence[Candidate], objectives: Sequence[str],
                reference: ReferencePoint | None = None, budget: Any = None) -> tuple[float, ReferencePoint]:
    """Normalised hypervolume of the candidates' front, and the reference point used.

    ``reference`` defaults to :func:`reference_point` of these candidates under ``budget``.

    Example:
        >>> from studentnas import Arch, Budget, Cost
        >>> cs = [Candidate(Arch("nb201", {"e0": str(i)}), Cost(m, 1), {"s": s})
        ...       for i, (s, m) in enumerate([(10, 4e9), (8, 2e9), (5, 1e9), (0, 3e9)])]
        >>> hv, ref = hypervolume(cs, ["s", "macs"], budget=Budget.parse("5GFLOPs"))
        >>> round(hv, 6)  # normalised front (0, .8), (.2, .4), (.5, .2) against (1, 1)
        0.62
    """
    names = [obj.canonical(n) for n in objectives]
    ref = reference or reference_point(candidates, names, budget)
    if tuple(ref.objectives) != tuple(names):
        raise ValueError(f"reference point is for objectives {list(ref.objectives)}, not {names}")
    vectors = [obj.minimisation_vector(c, names) for c in front(candidates, names)]
    return hypervolume_of(ref.normalise(vectors), [1.0] * len(names)), ref
