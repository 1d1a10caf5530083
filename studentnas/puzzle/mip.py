"""The Puzzle mixed-integer program: one replacement per parent layer span, best summed quality under budgets.

The entry points the pipeline calls:

* :func:`solve`: the best selection under whole-model limits (the MILP and its formulation are in
  :mod:`studentnas.puzzle.mip_model`; the usable entries as arrays, :class:`EntryTable`, and the
  selection record, :class:`MipSolution`, in :mod:`studentnas.puzzle.mip_table`);
* :func:`solve_diverse`: up to ``n`` solutions that differ from each other in a share of the layers;
* :func:`solve_with_recheck`: re-solve with tighter table limits until the *measured* costs fit;
* :func:`limits_from_budget`: a :class:`~studentnas.core.budget.Budget` as limits per library cost key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from studentnas.core.budget import Budget
from studentnas.core.errors import BadInputError
from studentnas.puzzle.library import Entry, Library
from studentnas.puzzle.mip_model import format_number, solve
from studentnas.puzzle.mip_table import EntryTable, MipSolution

__all__ = ["BUDGET_KEYS", "Measure", "limits_from_budget", "solve_diverse", "solve_with_recheck"]

#: Budget metric -> library cost key.
BUDGET_KEYS = {"macs": "macs", "params": "params", "latency": "latency_ms", "memory": "memory_mb"}


def solve_diverse(library: Library | EntryTable, limits: Mapping[str, float], n: int, alpha: float,
                  **solve_kw: Any) -> list[MipSolution]:
    """Up to ``n`` solutions, each differing from every earlier one in ``>= ceil(alpha * L)`` layers.

    The first is the plain optimum (infeasible budgets raise as in :func:`solve`); the list stops early
    when no further selection is diverse enough.

    Example:
        >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
        >>> lib = Library("toy", [LayerInfo(0, "b0", "basic", (4,), (4,))],
        ...               [Entry(Replacement(0, 1, k), {"macs": m}, {"kl": q}) for k, m, q in
        ...                [("teacher", 8.0, 0.0), ("noop", 0.0, 1.0), ("linear", 2.0, 0.5)]])
        >>> [s.labels for s in solve_diverse(lib, {"macs": 8.0}, 5, 1.0)]
        [['teacher@0'], ['linear@0'], ['noop@0']]
    """
    table = library if isinstance(library, EntryTable) else EntryTable.build(library, solve_kw.pop("metric", "kl"))
    solve_kw.pop("metric", None)
    earlier = list(solve_kw.pop("forbid", ()))
    out: list[MipSolution] = []
    for _ in range(int(n)):
        try:
            sol = solve(table, limits, forbid=earlier, diversity=alpha, **solve_kw)
        except BadInputError:
            if not out:
                raise
            break
        out.append(sol)
        earlier.append(sol.ids)
    return out


def limits_from_budget(budget: Budget, library: Library) -> dict[str, float]:
    """Whole-model limits per library cost key; shares (``60%params``) are taken of ``library.teacher_cost``.

    Example:
        >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
        >>> lib = Library("toy", [LayerInfo(0, "b0", "basic", (4,), (4,))],
        ...               [Entry(Replacement(0, 1, "teacher"), {"params": 80.0, "macs": 900.0}, {})], {"params": 20.0})
        >>> limits_from_budget(Budget.parse(["60%params", "500MACs"]), lib)
        {'params': 60.0, 'macs': 500.0}
    """
    out: dict[str, float] = {}
    for c in budget.constraints:
        key = BUDGET_KEYS[c.metric]
        if c.is_relative:
            has = key in library.fixed_costs or any(key in e.costs for e in library.teacher_entries())
            base = library.teacher_cost(key)
            if not has or base <= 0:
                raise BadInputError(f"budget '{c.text}' is a share of the teacher's {key}, which the library does "
                                    "not record; score the library with that cost or give an absolute budget")
            limit = base * float(c.share)
        else:
            limit = float(c.limit)
        out[key] = min(limit, out.get(key, math.inf))
    return out


Measure = Callable[[list[Entry]], Mapping[str, float]]


def solve_with_recheck(library: Library | EntryTable, limits: Mapping[str, float], measure: Measure, *,
                       max_iterations: int = 5, margin: float = 0.01,
                       **solve_kw: Any) -> tuple[MipSolution, dict[str, float], list[dict[str, Any]]]:
    """Solve, build-and-measure, and tighten until the *measured* costs fit ``limits``.

    ``measure(chosen_entries)`` returns the real whole-model costs of the student those entries
    assemble into (the pipeline builds it and counts / times it). Each iteration ``i`` solves with the
    table limits ``T_i`` (``T_1 = limits``), measures, and for every key whose measured value ``m_k``
    breaks ``limits[k]`` sets ``T_{i+1}[k] = T_i[k] * limits[k] / m_k * (1 - margin)``; table limits
    never loosen. Every iteration is logged (table limits, table costs, measured costs, violated keys,
    objective, chosen labels). Returns ``(solution, measured, log)`` once the measured costs fit;
    raises :class:`BadInputError` with the log's summary after ``max_iterations`` or when a tightened
    budget becomes infeasible.

    Example:
        >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
        >>> lib = Library("toy", [LayerInfo(0, "b0", "basic", (4,), (4,))],
        ...               [Entry(Replacement(0, 1, k), {"macs": m}, {"kl": q}) for k, m, q in
        ...                [("teacher", 8.0, 0.0), ("linear", 5.0, 0.5), ("noop", 0.0, 1.0)]])
        >>> sol, measured, log = solve_with_recheck(lib, {"macs": 8.0}, lambda ch: {"macs": ch[0].costs["macs"] + 1})
        >>> sol.labels, measured, [row["violated"] for row in log]
        (['linear@0'], {'macs': 6.0}, [['macs'], []])
    """
    if max_iterations < 1:
        raise BadInputError(f"max_iterations = {max_iterations} must be >= 1")
    table = library if isinstance(library, EntryTable) else EntryTable.build(library, solve_kw.pop("metric", "kl"))
    solve_kw.pop("metric", None)
    target = {k: float(v) for k, v in limits.items()}
    current = dict(target)
    log: list[dict[str, Any]] = []

    def summary() -> str:
        return " | ".join(f"iteration {row['iteration']}: table limits {_short(row['limits'])}, "
                          f"table {_short(row['table_costs'])}, measured {_short(row['measured'])}"
                          for row in log)

    for iteration in range(1, max_iterations + 1):
        try:
            sol = solve(table, current, **solve_kw)
        except BadInputError as err:
            if not log:
                raise
            raise BadInputError(f"after tightening for measured costs the budget is infeasible ({err}); "
                                f"re-check log: {summary()}") from err
        measured = {k: float(v) for k, v in measure(list(sol.chosen)).items()}
        violated = [k for k in target if k in measured and measured[k] > target[k] * (1 + 1e-9)]
        log.append({"iteration": iteration, "limits": dict(current), "table_costs": dict(sol.costs),
                    "measured": dict(measured), "violated": violated, "objective": sol.objective,
                    "chosen": sol.labels})
        if not violated:
            return sol, measured, log
        for k in violated:
            current[k] = min(current[k], current[k] * target[k] / measured[k] * (1.0 - margin))
    raise BadInputError(f"the measured costs still break the budget after {max_iterations} MIP re-solves "
                        f"({', '.join(log[-1]['violated'])}); the cost tables underestimate the built student; "
                        f"re-check log: {summary()}")


def _short(costs: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}={format_number(v)}" for k, v in costs.items()) + "}"
