"""``pick``: the best student of a finished run under a smaller budget, without searching again.

One search answers every budget up to its own: the best student under a tighter budget is the
candidate with the best objective score among those of the run that fit it (it is always on the
run's front for that objective and metric). Budgets use the search grammar
(:class:`studentnas.core.budget.Budget`); shares such as ``50%params`` are resolved against the run's
teacher cost recorded in run.json. Latency and memory budgets can only be judged on candidates
whose latency or memory the run measured. Ties go to the cheaper student (fewer MACs).

Example (on a run made by ``studentnas search``)::

    >>> import studentnas as sn
    >>> best = sn.pick("runs/r1", "2GFLOPs")  # needs a run  # doctest: +SKIP
    >>> best.cost.macs <= 2e9  # the pick above  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studentnas.core import objectives as obj
from studentnas.core.budget import Budget
from studentnas.core.candidate import Candidate
from studentnas.core.cost import Cost, describe_cost
from studentnas.core.errors import BadInputError
from studentnas.engine.rundir import Run


@dataclass(frozen=True)
class Pick:
    """The answer of :func:`pick_student`: the student, and what it was picked by and from."""

    candidate: Candidate
    objective: str
    budget: Budget
    n_fitting: int  # how many of the run's scored candidates fit the budget
    front_rank: int | None  # its rank on the run's front (1 = first), None when it is not on it
    looser_than_run: list[str]  # constraints looser than the run's own budget (the run never went there)

    def to_dict(self, run: Run) -> dict[str, Any]:
        """What ``studentnas pick --json`` prints: the student (labelled by ``run``'s space) and the budget."""
        c = self.candidate
        return {"run": str(run.path), "budget": self.budget.texts, "budget_resolved": self.budget.describe(),
                "objective": self.objective, "score": c.scores[self.objective], "id": c.id,
                "arch": c.arch.to_dict(), "label": run.space.format_arch(c.arch), "cost": c.cost.to_dict(),
                "scores": dict(c.scores), "front_rank": self.front_rank, "n_fitting": self.n_fitting,
                "looser_than_run": self.looser_than_run}


def _teacher_cost(run: Run) -> Cost | None:
    data = run.config.get("teacher_cost")
    return Cost.from_dict(data) if data else None


def pick_student(run: str | Path | Run, budget: str | Sequence[str], objective: str | None = None) -> Pick:
    """The best candidate of ``run`` within ``budget`` by ``objective`` (default: the run's primary proxy).

    Raises :class:`~studentnas.core.errors.BadInputError` when the objective was not scored, the budget
    needs a measurement the run did not make, or no student fits (naming the smallest one's cost).
    """
    run = run if isinstance(run, Run) else Run(run)
    parsed = Budget.parse(budget)
    teacher_cost = _teacher_cost(run)
    if any(c.is_relative for c in parsed.constraints) and teacher_cost is None:
        raise BadInputError(f"run '{run.path}' records no teacher cost, so '{parsed.texts}' cannot be resolved; "
                            "give an absolute budget such as 2GFLOPs")
    resolved = parsed.resolve(teacher_cost) if teacher_cost is not None else parsed
    name = objective or run.objective
    scored = list(run.config.get("proxies", []))
    if obj.is_cost(name) or name not in scored:
        raise BadInputError(f"--objective {name!r} is not a proxy this run scored; pick one of {', '.join(scored)}")
    pool = [c for c in run.candidates if c.ok and math.isfinite(c.score(name))]
    if not pool:
        raise BadInputError(f"run '{run.path}' has no scored candidate; run `studentnas search` (with --resume)")
    for metric in sorted(resolved.needs_measurement):
        if all(c.cost.value(metric) is None for c in pool):
            raise BadInputError(f"run '{run.path}' did not measure {metric}, so budget '{parsed.texts}' cannot be "
                                f"judged; search with a {metric} budget or --objectives ...,{metric}")
    measured = [c for c in pool if all(c.cost.value(m) is not None for m in resolved.metrics)]
    if not measured:
        raise BadInputError(f"no candidate of '{run.path}' has every cost that budget '{parsed.texts}' needs "
                            f"({', '.join(sorted(resolved.metrics))}); drop the unmeasured constraint")
    fitting = [c for c in measured if resolved.satisfied(c.cost)]
    metrics = [c.metric for c in resolved.constraints]
    if not fitting:
        members = [c for c in run.pareto if c in measured] or measured
        smallest = min(members, key=lambda c: tuple(c.cost.value(m) for m in metrics))
        raise BadInputError(
            f"budget {' + '.join(parsed.texts)} ({resolved.describe()}) is tighter than every student of "
            f"'{run.path}': the smallest on its front, {smallest.id}, has {describe_cost(smallest.cost, metrics)}; "
            f"raise the budget to at least that, or search again with this budget")
    best = max(fitting, key=lambda c: (c.score(name), -c.cost.macs, c.id))
    front = run.pareto if name == run.objective else []
    rank = next((i + 1 for i, c in enumerate(front) if c.id == best.id), None)
    return Pick(best, name, resolved, len(fitting), rank, _looser(run, resolved, teacher_cost))


def _looser(run: Run, budget: Budget, teacher_cost: Cost | None) -> list[str]:
    """Constraints of ``budget`` looser than the run's own budget on the same metric."""
    try:
        own = Budget.parse(run.config.get("budget") or [])
    except BadInputError:
        return []
    own = own.resolve(teacher_cost) if teacher_cost is not None else own
    limits: dict[str, float] = {}
    for c in own.constraints:
        if not c.is_relative:
            limits[c.metric] = min(c.limit, limits.get(c.metric, math.inf))
    return [c.text for c in budget.constraints if c.limit > limits.get(c.metric, math.inf)]


def pick(run: str | Path | Run, budget: str | Sequence[str], objective: str | None = None) -> Candidate:
    """The best student of ``run`` under ``budget`` (see :func:`pick_student` for the details)."""
    return pick_student(run, budget, objective).candidate
