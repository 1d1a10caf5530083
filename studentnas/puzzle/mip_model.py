"""Building and solving the Puzzle MILP: one replacement per parent layer span, best summed quality under budgets.

Callers import :func:`solve` from :mod:`studentnas.puzzle.mip`, which adds the loops around it (diverse
candidates, re-checking measured costs) and the translation of a budget into limits.

Formulation (METHODS.md §3.6), solved with ``scipy.optimize.milp`` (HiGHS):

* one binary ``x_r`` per *usable* entry ``r`` of the library (status ``ok``, a finite objective for
  the metric, and a finite value for every constrained cost key);
* **coverage**: for every parent layer ``l``, ``sum_{r covers l} x_r = 1`` (an entry spanning two
  layers covers both, so the chosen entries tile the layers exactly);
* **budgets**: for every key ``k`` in ``limits``, ``sum_r c_r^k x_r <= limit_k - fixed_k`` where
  ``fixed_k`` is ``Library.fixed_costs[k]`` (stem, head), and the same with ``>=`` for ``lower_limits``;
* **no-ops**: ``sum_{r noop} x_r <= max_noops``; a no-op entry that spans two layers is one ``x``, so it
  counts **once** (it removes one module from the student, however many parent layers it stands for);
* **diversity**: see :func:`solve`;
* **objective**: minimise ``sum_r q_r x_r`` with ``q_r = Entry.objective(metric)`` (lower is better;
  accuracy is negated there, so accuracy is maximised).

Teacher entries without the metric count as 0 for ``kl``/``nmse``/``loss`` (the teacher's own block
does not move the output), and as the teacher's accuracy ``Library.meta["teacher_quality"]["acc"]``
for ``acc`` when it is given; otherwise they are left out. Cost rows are scaled to at most 1 in
absolute value before HiGHS sees them, so MAC counts near 1e10 and milliseconds share one tolerance;
so is the objective, so block KLs near 1e-8 (a near-identity block) are told apart as well as KLs near 1
(HiGHS's absolute tolerances then mean: selections whose summed objectives differ by less than about
``1e-6 * max_r |q_r|`` may be taken for ties).

Example:
    >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
    >>> layers = [LayerInfo(i, f"b{i}", "bottleneck", (8,), (8,)) for i in range(2)]
    >>> def e(s, t, kind, p, kl):
    ...     return Entry(Replacement(s, t, kind), {"params": p}, {"kl": kl})
    >>> lib = Library("toy", layers, [e(0, 1, "teacher", 10, 0), e(0, 1, "noop", 0, .5),
    ...                              e(1, 2, "teacher", 10, 0), e(1, 2, "noop", 0, .2)], {"params": 5})
    >>> sol = solve(lib, {"params": 15})       # 5 fixed + one teacher block: drop the cheaper-to-lose layer 1
    >>> [c.replacement.label for c in sol.chosen], sol.objective, sol.costs["params"]
    (['teacher@0', 'noop@1'], 0.2, 15.0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from studentnas.core.errors import BadInputError
from studentnas.puzzle.library import COST_KEYS, Library
from studentnas.puzzle.mip_table import EntryTable, MipSolution, check_limits

_MILP_STATUS = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded", 4: "error"}


def format_number(value: float) -> str:
    """A cost or limit in messages: six significant digits.

    >>> format_number(1234567.0), format_number(0.5)
    ('1.23457e+06', '0.5')
    """
    return f"{value:.6g}"


@dataclass
class _Rows:
    """Extra constraint rows over the selected columns (structural: no-ops, diversity)."""

    matrix: list[sparse.csr_array] = field(default_factory=list)
    lower: list[np.ndarray] = field(default_factory=list)
    upper: list[np.ndarray] = field(default_factory=list)

    def add(self, row: np.ndarray, lo: float, hi: float) -> None:
        self.matrix.append(sparse.csr_array(row.reshape(1, -1)))
        self.lower.append(np.array([lo]))
        self.upper.append(np.array([hi]))


def _structural(table: EntryTable, cols: np.ndarray, max_noops: int | None,
                forbid: Sequence[Sequence[str] | MipSolution], required: int) -> _Rows:
    rows = _Rows()
    if max_noops is not None:
        rows.add(table.noop[cols].astype(float), -np.inf, float(max_noops))
    if forbid and required > 0:
        position = {table.entries[j].replacement.id: i for i, j in enumerate(cols)}
        widths = table.widths[cols].astype(float)
        for earlier in forbid:
            ids = earlier.ids if isinstance(earlier, MipSolution) else list(earlier)
            row = np.zeros(cols.size)
            for rid in ids:
                if rid in position:
                    row[position[rid]] = widths[position[rid]]
            rows.add(row, -np.inf, float(table.num_layers - required))
    return rows


def _run_milp(c: np.ndarray, table: EntryTable, cols: np.ndarray, budget_rows: _Rows, extra: _Rows,
              time_limit: float, gap: float):
    # HiGHS's tolerances are absolute (about 1e-7 on reduced costs, 1e-6 on the MIP gap): unscaled block
    # KLs of 1e-8 .. 1e-7 all look like 0 to it and any cover passes for optimal. Scaled to at most 1 (the
    # selection is the same), only differences below about 1e-6 of the largest |q_r| are ties.
    c = c / (float(np.abs(c).max()) or 1.0)
    cover = table.coverage[:, cols]
    blocks = [cover, *budget_rows.matrix, *extra.matrix]
    lower = [np.ones(table.num_layers), *budget_rows.lower, *extra.lower]
    upper = [np.ones(table.num_layers), *budget_rows.upper, *extra.upper]
    constraint = LinearConstraint(sparse.vstack(blocks, format="csr"), np.concatenate(lower), np.concatenate(upper))
    return milp(c, integrality=np.ones(cols.size), bounds=Bounds(0, 1), constraints=constraint,
                options={"time_limit": float(time_limit), "mip_rel_gap": gap, "disp": False})


def _budget_rows(table: EntryTable, cols: np.ndarray, limits: Mapping[str, float],
                 lower_limits: Mapping[str, float]) -> _Rows:
    rows = _Rows()
    for key in sorted(set(limits) | set(lower_limits), key=COST_KEYS.index):
        values = table.costs[key][cols] if key in table.costs else np.zeros(cols.size)
        scale = float(np.abs(values).max()) or 1.0
        hi = (limits[key] - table.fixed(key)) / scale if key in limits else np.inf
        lo = (lower_limits[key] - table.fixed(key)) / scale if key in lower_limits else -np.inf
        rows.add(values / scale, lo, hi)
    return rows


def _extreme(table: EntryTable, cols: np.ndarray, key: str, extra: _Rows, sense: float,
             time_limit: float) -> float | None:
    """Whole-model min (sense=+1) or max (sense=-1) of ``key`` over covers meeting ``extra``; None if none."""
    values = table.costs[key][cols] if key in table.costs else np.zeros(cols.size)
    scale = float(np.abs(values).max()) or 1.0
    res = _run_milp(sense * values / scale, table, cols, _Rows(), extra, time_limit, 1e-9)
    if res.x is None:
        return None
    return table.fixed(key) + float(values[res.x > 0.5].sum())


def _explain_infeasible(table: EntryTable, cols: np.ndarray, limits: Mapping[str, float],
                        lower_limits: Mapping[str, float], extra: _Rows, structural: str,
                        time_limit: float) -> BadInputError:
    """One line naming the constraint that cannot be met and the best value the library reaches."""
    with_rules = f" (with {structural})" if structural else ""
    if _extreme(table, cols, next(iter(table.costs), "params"), extra, 1.0, time_limit) is None:
        return BadInputError(f"no selection of library entries satisfies {structural} even without a budget; "
                             "relax it (fewer earlier solutions, a smaller diversity alpha or a larger max_noops)")
    alone, minima = [], []
    for key, limit in limits.items():
        best = _extreme(table, cols, key, extra, 1.0, time_limit)
        minima.append(f"{key} <= {format_number(limit)} (min {format_number(best)})")
        if best > limit * (1 + 1e-9) + 1e-12:
            alone.append(f"budget {key} <= {format_number(limit)} cannot be met{with_rules}: the smallest {key} "
                         f"any selection reaches is {format_number(best)} (fixed parts "
                         f"{format_number(table.fixed(key))} included); raise the limit to at least "
                         f"{format_number(best)}")
    for key, limit in lower_limits.items():
        best = _extreme(table, cols, key, extra, -1.0, time_limit)
        minima.append(f"{key} >= {format_number(limit)} (max {format_number(best)})")
        if best < limit * (1 - 1e-9) - 1e-12:
            alone.append(f"lower limit {key} >= {format_number(limit)} cannot be met{with_rules}: the largest {key} "
                         f"any selection reaches is {format_number(best)}; lower it to at most {format_number(best)}")
    if alone:
        return BadInputError("; ".join(alone))
    return BadInputError("each budget constraint can be met on its own but not all together"
                         f"{with_rules}: {', '.join(minima)}; loosen one of them")


def _required_differences(alpha: float | None, num_layers: int, forbid: Sequence[Any]) -> int:
    if not forbid:
        return 0
    if alpha is None:
        return 1
    if not 0.0 <= float(alpha) <= 1.0:
        raise BadInputError(f"diversity alpha = {alpha} must lie in [0, 1] (the share of layers that must differ)")
    return int(math.ceil(float(alpha) * num_layers - 1e-9))


def solve(library: Library | EntryTable, limits: Mapping[str, float], *, metric: str = "kl",
          lower_limits: Mapping[str, float] | None = None, max_noops: int | None = None,
          forbid: Sequence[Sequence[str] | MipSolution] = (), diversity: float | None = None,
          time_limit: float = 60.0, mip_rel_gap: float = 1e-4) -> MipSolution:
    """The best selection under ``limits`` (whole-model values; fixed costs are subtracted here).

    ``forbid`` holds earlier solutions (lists of replacement ids, or :class:`MipSolution`). With
    ``diversity=alpha`` the new selection must differ from each of them in at least
    ``d = ceil(alpha * L)`` parent layers; without it, in at least one layer (it must be new).
    Two covers agree on layer ``l`` exactly when the same entry covers ``l`` in both, so the number of
    agreeing layers with an earlier solution ``S`` is the summed width of the entries they share:
    ``agree = sum_{r in S} width(r) * x_r``. "Differ in >= d layers" is ``L - agree >= d``, i.e. the
    linear row ``sum_{r in S} width(r) * x_r <= L - d`` per earlier solution (a 2-layer entry kept
    from ``S`` counts for both of its layers).

    Raises :class:`BadInputError` for an unknown key, a metric no entry has, or infeasible budgets
    (naming the constraint and the best value reachable). ``library`` may also be a prebuilt
    :class:`EntryTable` (re-solving many budgets; its metric is used). ``status`` is ``optimal`` when
    HiGHS proved the objective within ``mip_rel_gap`` (relative, HiGHS's default 1e-4) of the best
    possible, ``time_limit`` when it stopped at ``time_limit`` seconds with a feasible selection. HiGHS's
absolute tolerances apply to the objective scaled to ``max_r |q_r| = 1``, so "optimal" means within
``mip_rel_gap`` relative or about ``1e-6 * max_r |q_r|`` absolute of the best cover, whatever the unit.

    Example:
        >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
        >>> lib = Library("toy", [LayerInfo(0, "b0", "basic", (4,), (4,))],
        ...               [Entry(Replacement(0, 1, "teacher"), {"macs": 8.0}, {}),
        ...                Entry(Replacement(0, 1, "noop"), {"macs": 0.0}, {"kl": 1.0})])
        >>> solve(lib, {"macs": 4.0}).labels
        ['noop@0']
    """
    started = time.perf_counter()
    table = library if isinstance(library, EntryTable) else EntryTable.build(library, metric)
    metric = table.metric
    limits = check_limits(table, limits, "limits")
    lower_limits = check_limits(table, lower_limits, "lower_limits")
    for key in set(limits) & set(lower_limits):
        if lower_limits[key] > limits[key]:
            raise BadInputError(f"lower limit {key} >= {format_number(lower_limits[key])} is above the upper limit "
                                f"{key} <= {format_number(limits[key])}; swap or fix them")
    if max_noops is not None and (int(max_noops) != max_noops or max_noops < 0):
        raise BadInputError(f"max_noops = {max_noops} must be a whole number >= 0")
    keys = [k for k in set(limits) | set(lower_limits) if k in table.costs]
    mask = table.usable_for(keys)
    table.check_cover(mask, f"costs for {', '.join(sorted(keys))}")
    cols = np.flatnonzero(mask)
    required = _required_differences(diversity, table.num_layers, forbid)
    extra = _structural(table, cols, max_noops, forbid, required)
    res = _run_milp(table.obj[cols], table, cols, _budget_rows(table, cols, limits, lower_limits), extra,
                    time_limit, mip_rel_gap)
    if res.x is None:
        if res.status == 1:
            raise BadInputError(f"the MIP found no feasible selection within time_limit={time_limit} s; "
                                "raise time_limit or loosen the budget")
        rules = [f"max_noops={max_noops}"] if max_noops is not None else []
        if required:
            rules.append(f"at least {required} of {table.num_layers} layers different from each of "
                         f"{len(forbid)} earlier solution(s)")
        raise _explain_infeasible(table, cols, limits, lower_limits, extra, " and ".join(rules), time_limit)
    picked = cols[res.x > 0.5]
    counts = np.bincount(np.concatenate([np.arange(s, e) for s, e in zip(table.starts[picked], table.ends[picked])]),
                         minlength=table.num_layers)
    if not (counts == 1).all():  # HiGHS returned a non-integral or overlapping point: a solver bug, not input
        raise RuntimeError(f"MIP solution does not cover every layer exactly once (counts {counts.tolist()})")
    return table.solution(picked, status=_MILP_STATUS.get(res.status, "error"),
                          seconds=time.perf_counter() - started, method="mip", limits=limits,
                          lower_limits=lower_limits)
