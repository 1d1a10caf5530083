"""Baselines for the Puzzle MIP under the same budget: greedy substitution and random feasible covers.

Both use the same usable entries as :func:`studentnas.puzzle.mip.solve` (an :class:`EntryTable`) and
return :class:`~studentnas.puzzle.mip.MipSolution` objects (``method`` ``greedy`` / ``random``), so the
pipeline builds, scores and reports all three the same way. They honour upper ``limits`` only (no lower
limits, no-op cap or diversity).

Example:
    >>> import numpy as np
    >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
    >>> layers = [LayerInfo(i, f"b{i}", "basic", (4,), (4,)) for i in range(2)]
    >>> lib = Library("toy", layers, [Entry(Replacement(i, i + 1, k), {"macs": m}, {"kl": q})
    ...                               for i in range(2) for k, m, q in [("teacher", 4.0, 0.0), ("noop", 0.0, i + 1.0)]])
    >>> greedy(lib, {"macs": 4.0}).labels          # drop layer 0: it loses 1.0 per 4 MACs, layer 1 loses 2.0
    ['noop@0', 'teacher@1']
    >>> [s.costs["macs"] <= 4.0 for s in random_feasible(lib, {"macs": 4.0}, np.random.default_rng(0), n=3)]
    [True, True, True]
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from studentnas.core.errors import BadInputError
from studentnas.puzzle.library import Library
from studentnas.puzzle.mip_model import solve
from studentnas.puzzle.mip_table import EntryTable, MipSolution, check_limits


def _prepare(library: Library | EntryTable, limits: Mapping[str, float], metric: str):
    table = library if isinstance(library, EntryTable) else EntryTable.build(library, metric)
    limits = check_limits(table, limits, "limits")
    mask = table.usable_for([k for k in limits if k in table.costs])
    table.check_cover(mask, f"costs for {', '.join(sorted(limits))}")
    keys = sorted(limits)
    costs = np.stack([table.costs[k] if k in table.costs else np.zeros(len(table.entries)) for k in keys], axis=1) \
        if keys else np.zeros((len(table.entries), 0))
    costs = np.where(np.isfinite(costs), costs, 0.0)  # only entries outside ``mask`` can be non-finite
    budget = np.array([limits[k] - table.fixed(k) for k in keys])  # what the layers may spend
    scale = np.maximum(np.abs(np.array([limits[k] for k in keys])), 1e-12)
    return table, limits, mask, keys, costs, budget, scale


def _violation(totals: np.ndarray, budget: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Relative excess of the layers' cost over their budget, per key (0 when it holds)."""
    return np.maximum(totals - budget, 0.0) / scale


def greedy(library: Library | EntryTable, limits: Mapping[str, float], metric: str = "kl") -> MipSolution:
    """Start from the teacher on every layer; substitute one entry at a time until every limit holds.

    Rule, per step: let ``m`` be the most-violated key (largest ``(total - limit) / limit``). A
    candidate substitution puts one unused entry ``e`` in place of the chosen entries over ``e``'s span;
    it is allowed only when those entries tile exactly that span (so one- and two-layer entries swap
    cleanly for each other), when it saves some of ``m`` (``dc_m > 0``) and when it strictly lowers the
    summed relative violation over all limited keys (which also guarantees the loop ends). Among them it
    takes the smallest *quality lost per unit of m saved*, ``max(dq, 0) / dc_m`` with ``dq`` the change
    in summed objective; ties (e.g. several swaps that lose nothing) go to the larger saving. When no
    substitution is allowed before the limits hold, the result has status ``infeasible``.
    The teacher block of a layer with no usable teacher entry is replaced by that layer's best-scoring
    entry starting there.

    Example:
        >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
        >>> lib = Library("toy", [LayerInfo(0, "b0", "basic", (4,), (4,))],
        ...               [Entry(Replacement(0, 1, k), {"params": p}, {"kl": q})
        ...                for k, p, q in [("teacher", 9.0, 0.0), ("linear", 3.0, 0.3), ("noop", 0.0, 2.0)]])
        >>> sol = greedy(lib, {"params": 4.0})
        >>> sol.labels, sol.status, sol.objective
        (['linear@0'], 'feasible', 0.3)
    """
    started = time.perf_counter()
    table, limits, mask, keys, costs, budget, scale = _prepare(library, limits, metric)
    num_layers = table.num_layers
    starts, ends = table.starts, table.ends
    owner = _teacher_cover(table, mask)
    chosen = np.zeros(len(table.entries), dtype=bool)
    chosen[np.unique(owner)] = True
    totals = costs[chosen].sum(axis=0)
    status = "feasible"
    while True:
        violation = _violation(totals, budget, scale)
        if not (violation > 0).any():
            break
        m = int(np.argmax(violation))
        # attribute every chosen entry's objective and costs to its start layer; prefix sums then give
        # the chosen entries' totals over any span whose boundaries coincide with chosen boundaries
        lead = np.unique(owner)
        per_layer = np.zeros((num_layers, 1 + len(keys)))
        per_layer[starts[lead], 0] = table.obj[lead]
        per_layer[starts[lead], 1:] = costs[lead]
        prefix = np.vstack([np.zeros((1, 1 + len(keys))), np.cumsum(per_layer, axis=0)])
        first, last = owner[starts], owner[ends - 1]
        clean = (starts[first] == starts) & (ends[last] == ends) & ~chosen & mask
        old = prefix[ends] - prefix[starts]
        dq = table.obj - old[:, 0]
        saved = old[:, 1:] - costs  # per key, >0 means cheaper
        new_violation = _violation(totals[None, :] - saved, budget[None, :], scale[None, :]).sum(axis=1)
        allowed = clean & (saved[:, m] > 0) & (new_violation < violation.sum() - 1e-12)
        if not allowed.any():
            status = "infeasible"
            break
        idx = np.flatnonzero(allowed)
        ratio = np.maximum(dq[idx], 0.0) / saved[idx, m]
        best = idx[np.lexsort((-saved[idx, m], ratio))[0]]
        s, e = starts[best], ends[best]
        chosen[np.unique(owner[s:e])] = False
        chosen[best] = True
        owner[s:e] = best
        totals = totals - saved[best]
    return table.solution(np.flatnonzero(chosen), status=status, seconds=time.perf_counter() - started,
                          method="greedy", limits=limits)


def _teacher_cover(table: EntryTable, mask: np.ndarray) -> np.ndarray:
    """``owner[l]``: the entry covering layer ``l`` when every layer keeps its teacher block."""
    owner = np.full(table.num_layers, -1, dtype=np.int64)
    teacher: dict[int, int] = {}
    best: dict[int, int] = {}
    for j in np.flatnonzero(mask):
        s = int(table.starts[j])
        if table.entries[j].replacement.is_teacher and table.ends[j] == s + 1:
            teacher.setdefault(s, int(j))
        if s not in best or table.obj[j] < table.obj[best[s]]:
            best[s] = int(j)
    best.update(teacher)
    layer = 0
    while layer < table.num_layers:
        if layer not in best:
            raise BadInputError(f"greedy: no usable entry starts at parent layer {layer}; the library needs the "
                                "teacher block of every layer")
        j = best[layer]
        owner[layer:table.ends[j]] = j
        layer = int(table.ends[j])
    return owner


def random_feasible(library: Library | EntryTable, limits: Mapping[str, float], rng: np.random.Generator,
                    n: int = 10, metric: str = "kl", max_draws: int = 100) -> list[MipSolution]:
    """``n`` random covers that meet ``limits`` by the tables (duplicates possible in tiny libraries).

    Each draw walks the layers left to right and picks uniformly among the usable entries that start at
    the current layer (and can still be completed), so one- and two-layer entries both appear. A draw
    over budget is *repaired*: its entries are visited in random order and each is swapped for the
    cheapest entry over the same span, cheapest meaning the smallest sum of ``cost_k / limit_k`` over the
    keys still violated, until every limit holds. A draw that is still over budget after all its
    entries are at their cheapest is rejected and redrawn, at most ``max_draws`` times per wanted cover.
    Fewer than ``n`` covers come back when the draws run out; none raises :class:`BadInputError`
    (with the MIP's message when the budget itself is infeasible).

    Example:
        >>> from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
        >>> lib = Library("toy", [LayerInfo(0, "b0", "basic", (4,), (4,))],
        ...               [Entry(Replacement(0, 1, k), {"params": p}, {"kl": q})
        ...                for k, p, q in [("teacher", 9.0, 0.0), ("linear", 3.0, 0.3), ("noop", 0.0, 2.0)]])
        >>> sorted({s.labels[0] for s in random_feasible(lib, {"params": 4.0}, np.random.default_rng(1), n=8)})
        ['linear@0', 'noop@0']
    """
    started = time.perf_counter()
    table, limits, mask, keys, costs, budget, scale = _prepare(library, limits, metric)
    num_layers = table.num_layers
    cols = np.flatnonzero(mask)
    # entries by start layer, keeping only those after which the cover can still be completed
    completes = np.zeros(num_layers + 1, dtype=bool)
    completes[num_layers] = True
    by_start: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * num_layers
    for layer in range(num_layers - 1, -1, -1):
        here = cols[table.starts[cols] == layer]
        here = here[completes[table.ends[here]]]
        by_start[layer] = here
        completes[layer] = here.size > 0
    if not completes[0]:
        raise BadInputError("random_feasible: the usable entries cannot cover every parent layer")
    same_span = {}
    for j in cols:
        same_span.setdefault((int(table.starts[j]), int(table.ends[j])), []).append(int(j))
    same_span = {k: np.asarray(v) for k, v in same_span.items()}
    out: list[MipSolution] = []
    for _ in range(int(n) * int(max_draws)):
        if len(out) == n:
            break
        picks = []
        layer = 0
        while layer < num_layers:
            j = int(rng.choice(by_start[layer]))
            picks.append(j)
            layer = int(table.ends[j])
        picks = np.asarray(picks)
        totals = costs[picks].sum(axis=0)
        for pos in rng.permutation(picks.size):
            violated = _violation(totals, budget, scale) > 0
            if not violated.any():
                break
            j = picks[pos]
            group = same_span[(int(table.starts[j]), int(table.ends[j]))]
            weight = (costs[group][:, violated] / scale[violated]).sum(axis=1)
            k = int(group[np.argmin(weight)])
            if weight.min() < (costs[j, violated] / scale[violated]).sum():
                totals = totals - costs[j] + costs[k]
                picks[pos] = k
        if (_violation(totals, budget, scale) > 0).any():
            continue
        out.append(table.solution(picks, status="feasible", seconds=time.perf_counter() - started,
                                  method="random", limits=limits))
        started = time.perf_counter()
    if not out:
        solve(table, limits)  # raises the MIP's one-line message when the budget is infeasible
        raise BadInputError(f"random_feasible: no feasible cover in {int(n) * int(max_draws)} random draws; "
                            "the budget is feasible but tight: use the MIP or greedy, or raise max_draws")
    return out
