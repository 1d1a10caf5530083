"""Non-dominated fronts of candidates: a score to maximise against a cost to minimise.

Example:
    >>> pareto_indices([(3.0, 10.0), (2.0, 5.0), (1.0, 6.0), (3.0, 12.0)])
    [0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from studentnas.candidate import Candidate


def pareto_indices(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (score up, cost down) points, best score first.

    A point is dominated when another has score >= and cost <=, with one strict. Exact duplicates
    keep the first occurrence only.
    """
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], points[i][1], i))
    front, best_cost = [], math.inf
    for i in order:
        if points[i][1] < best_cost:
            front.append(i)
            best_cost = points[i][1]
    return front


def pareto_front(candidates: Sequence[Candidate], objective: str, cost_metric: str = "macs") -> list[Candidate]:
    """The ok candidates on the (``objective`` up, ``cost_metric`` down) front, best score first."""
    ok = [c for c in candidates if c.ok and math.isfinite(c.score(objective))]
    points = [(c.score(objective), c.cost.value(cost_metric)) for c in ok]
    return [ok[i] for i in pareto_indices(points)]
