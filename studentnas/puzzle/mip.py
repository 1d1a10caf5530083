"""The Puzzle mixed-integer program: one replacement per parent layer span, best summed quality under budgets.

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
absolute value before HiGHS sees them, so MAC counts near 1e10 and milliseconds share one tolerance.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from studentnas.budget import Budget
from studentnas.errors import BadInputError
from studentnas.puzzle.library import COST_KEYS, LOWER_IS_BETTER, QUALITY_KEYS, Entry, Library

#: Budget metric -> library cost key.
BUDGET_KEYS = {"macs": "macs", "params": "params", "latency": "latency_ms", "memory": "memory_mb"}

_MILP_STATUS = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded", 4: "error"}


def _fmt(value: float) -> str:
    return f"{value:.6g}"


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


def _check_limits(table: EntryTable, limits: Mapping[str, float] | None, what: str) -> dict[str, float]:
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
        minima.append(f"{key} <= {_fmt(limit)} (min {_fmt(best)})")
        if best > limit * (1 + 1e-9) + 1e-12:
            alone.append(f"budget {key} <= {_fmt(limit)} cannot be met{with_rules}: the smallest {key} any "
                         f"selection reaches is {_fmt(best)} (fixed parts {_fmt(table.fixed(key))} included); "
                         f"raise the limit to at least {_fmt(best)}")
    for key, limit in lower_limits.items():
        best = _extreme(table, cols, key, extra, -1.0, time_limit)
        minima.append(f"{key} >= {_fmt(limit)} (max {_fmt(best)})")
        if best < limit * (1 - 1e-9) - 1e-12:
            alone.append(f"lower limit {key} >= {_fmt(limit)} cannot be met{with_rules}: the largest {key} any "
                         f"selection reaches is {_fmt(best)}; lower it to at most {_fmt(best)}")
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
    possible, ``time_limit`` when it stopped at ``time_limit`` seconds with a feasible selection.

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
    limits = _check_limits(table, limits, "limits")
    lower_limits = _check_limits(table, lower_limits, "lower_limits")
    for key in set(limits) & set(lower_limits):
        if lower_limits[key] > limits[key]:
            raise BadInputError(f"lower limit {key} >= {_fmt(lower_limits[key])} is above the upper limit "
                                f"{key} <= {_fmt(limits[key])}; swap or fix them")
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
    return "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in costs.items()) + "}"
