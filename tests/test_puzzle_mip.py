"""The Puzzle MIP (scipy HiGHS) and its greedy / random baselines on libraries whose optimum is known.

Hand-made libraries have their optimum derived in the comments; small random libraries are checked
against brute-force enumeration of every cover.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from studentnas.core.budget import Budget
from studentnas.core.errors import BadInputError
from studentnas.puzzle.baselines import greedy, random_feasible
from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
from studentnas.puzzle.mip import limits_from_budget, solve_diverse, solve_with_recheck
from studentnas.puzzle.mip_model import solve
from studentnas.puzzle.mip_table import EntryTable, MipSolution


def E(start, end, kind, costs, quality=None, status="ok", **config):  # noqa: N802 - reads like a table row
    return Entry(Replacement(start, end, kind, config), {k: float(v) for k, v in costs.items()},
                 {k: float(v) for k, v in (quality or {}).items()}, status)


def make_library(num_layers, entries, fixed=None, meta=None):
    layers = [LayerInfo(i, f"blocks.{i}", "bottleneck", (8, 4, 4), (8, 4, 4)) for i in range(num_layers)]
    return Library("toy", layers, entries, dict(fixed or {}), dict(meta or {}))


def three_layers():
    """Per layer: teacher (10 params, kl 0 -- left out: the MIP counts a teacher's missing kl as 0),
    half width (5 params) and no-op (0). kl of the half widths: .1 / .45 / .2; of the no-ops: 1 / .5 / 3.
    Fixed (stem + head) params: 4."""
    kl_half, kl_noop = [0.1, 0.45, 0.2], [1.0, 0.5, 3.0]
    entries = []
    for i in range(3):
        entries += [E(i, i + 1, "teacher", {"params": 10}),
                    E(i, i + 1, "bottleneck", {"params": 5}, {"kl": kl_half[i]}, width=0.5),
                    E(i, i + 1, "noop", {"params": 0}, {"kl": kl_noop[i]})]
    return make_library(3, entries, {"params": 4})


# ---------------------------------------------------------------------------------------------- hand-made


def test_single_layer_spans_hand_derived():
    lib = three_layers()
    # limit 24 -> the layers may spend 20 of 30: save 10. Two half widths: cheapest pair is layers 0 and 2
    # (.1 + .2 = .3); one no-op saves 10 too but costs .5 at best (layer 1). Optimum .3, params 4+5+10+5.
    sol = solve(lib, {"params": 24})
    assert sol.labels == ["bottleneck(width=0.5)@0", "teacher@1", "bottleneck(width=0.5)@2"]
    assert sol.objective == pytest.approx(0.3) and sol.costs["params"] == 24.0 and sol.status == "optimal"
    # limit 19 -> spend 15, save 15: half@0 + noop@1 = .6; three halves .75; noop@1 + half@2 = .7.
    sol = solve(lib, {"params": 19})
    assert sol.labels == ["bottleneck(width=0.5)@0", "noop@1", "teacher@2"]
    assert sol.objective == pytest.approx(0.6) and sol.costs["params"] == 19.0
    # no budget at all: the teacher everywhere, objective 0
    assert solve(lib, {}).labels == ["teacher@0", "teacher@1", "teacher@2"]


def test_two_layer_span_hand_derived():
    # two layers of 10 params; half widths (5) with kl .3 / .25; one merged block for both: 8 params, kl .35
    lib = make_library(2, [E(0, 1, "teacher", {"params": 10}), E(1, 2, "teacher", {"params": 10}),
                           E(0, 1, "bottleneck", {"params": 5}, {"kl": 0.3}, width=0.5),
                           E(1, 2, "bottleneck", {"params": 5}, {"kl": 0.25}, width=0.5),
                           E(0, 1, "noop", {"params": 0}, {"kl": 1.0}), E(1, 2, "noop", {"params": 0}, {"kl": 1.0}),
                           E(0, 2, "merge", {"params": 8}, {"kl": 0.35}, width=1.0)])
    # <= 12: merge (8, .35) beats half+half (10, .55) and teacher+noop (10, 1.0); teacher+half is 15
    sol = solve(lib, {"params": 12})
    assert sol.labels == ["merge(width=1.0)@0-1"] and sol.objective == pytest.approx(0.35)
    assert sol.costs == {"params": 8.0}
    # <= 16: teacher + half@1 (15, .25) beats the merge
    assert solve(lib, {"params": 16}).labels == ["teacher@0", "bottleneck(width=0.5)@1"]


def two_constraints():
    # per layer: teacher (p10, m100), A = few params many MACs (p2, m90), B = the reverse (p9, m20)
    return make_library(2, [E(0, 1, "teacher", {"params": 10, "macs": 100}),
                            E(1, 2, "teacher", {"params": 10, "macs": 100}),
                            E(0, 1, "A", {"params": 2, "macs": 90}, {"kl": 0.1}),
                            E(1, 2, "A", {"params": 2, "macs": 90}, {"kl": 0.15}),
                            E(0, 1, "B", {"params": 9, "macs": 20}, {"kl": 0.2}),
                            E(1, 2, "B", {"params": 9, "macs": 20}, {"kl": 0.3})])


def test_two_constraints_at_once_hand_derived():
    lib = two_constraints()
    # (params, macs, kl) of all 9 covers: TT 20,200,0  TA 12,190,.15  TB 19,120,.3  AT 12,190,.1  AA 4,180,.25
    # AB 11,110,.4  BT 19,120,.2  BA 11,110,.35  BB 18,40,.5.
    # params <= 13 alone -> AT (.1); macs <= 130 alone -> BT (.2); both -> only AB and BA fit -> BA (.35)
    assert solve(lib, {"params": 13}).labels == ["A@0", "teacher@1"]
    assert solve(lib, {"macs": 130}).labels == ["B@0", "teacher@1"]
    sol = solve(lib, {"params": 13, "macs": 130})
    assert sol.labels == ["B@0", "A@1"] and sol.objective == pytest.approx(0.35)
    assert sol.costs == {"params": 11.0, "macs": 110.0}


def test_lower_limits():
    # one layer: teacher 10, X = 2 params kl .1, Y = 6 params kl .3
    lib = make_library(1, [E(0, 1, "teacher", {"params": 10}), E(0, 1, "X", {"params": 2}, {"kl": 0.1}),
                           E(0, 1, "Y", {"params": 6}, {"kl": 0.3})])
    assert solve(lib, {"params": 8}).labels == ["X@0"]
    # params in [5, 8]: only Y
    sol = solve(lib, {"params": 8}, lower_limits={"params": 5})
    assert sol.labels == ["Y@0"] and sol.lower_limits == {"params": 5.0}
    with pytest.raises(BadInputError, match=r"lower limit params >= 11 cannot be met: the largest params any "
                                            r"selection reaches is 10; lower it to at most 10$"):
        solve(lib, {}, lower_limits={"params": 11})
    # 7 <= params <= 8: each side alone is met (min 2, max 10), no entry lies between
    with pytest.raises(BadInputError, match=r"on its own but not all together: params <= 8 \(min 2\), "
                                            r"params >= 7 \(max 10\)"):
        solve(lib, {"params": 8}, lower_limits={"params": 7})
    with pytest.raises(BadInputError, match="above the upper limit"):
        solve(lib, {"params": 4}, lower_limits={"params": 5})


def test_max_noops_hand_derived():
    # three layers of 10 params; no-ops kl .1/.2/.3; half widths (5) kl .5 each; layers may spend 10
    entries = []
    for i, kl in enumerate([0.1, 0.2, 0.3]):
        entries += [E(i, i + 1, "teacher", {"params": 10}), E(i, i + 1, "noop", {"params": 0}, {"kl": kl}),
                    E(i, i + 1, "bottleneck", {"params": 5}, {"kl": 0.5}, width=0.5)]
    lib = make_library(3, entries)
    # free: noop@0 + noop@1 + teacher (10, .3)
    assert solve(lib, {"params": 10}).labels == ["noop@0", "noop@1", "teacher@2"]
    # at most one no-op: noop@0 + two halves (10, 1.1); noop + teacher + half would be 15
    sol = solve(lib, {"params": 10}, max_noops=1)
    assert sol.labels == ["noop@0", "bottleneck(width=0.5)@1", "bottleneck(width=0.5)@2"]
    assert sol.objective == pytest.approx(1.1)
    # none: three halves cost 15 > 10, and 15 is the smallest the library reaches without no-ops
    with pytest.raises(BadInputError, match=r"params <= 10 cannot be met \(with max_noops=0\).*reaches is 15"):
        solve(lib, {"params": 10}, max_noops=0)


def test_two_layer_noop_counts_once():
    # single no-ops (.2 each) beat the 2-layer no-op (.5) unless only one no-op entry is allowed
    lib = make_library(2, [E(0, 1, "teacher", {"params": 10}), E(1, 2, "teacher", {"params": 10}),
                           E(0, 1, "noop", {"params": 0}, {"kl": 0.2}), E(1, 2, "noop", {"params": 0}, {"kl": 0.2}),
                           E(0, 2, "noop", {"params": 0}, {"kl": 0.5})])
    assert solve(lib, {"params": 0}).labels == ["noop@0", "noop@1"]
    assert solve(lib, {"params": 0}, max_noops=1).labels == ["noop@0-1"]


def differing_layers(a: MipSolution, b: MipSolution, num_layers: int) -> int:
    def owner(sol):
        out = [None] * num_layers
        for e in sol.chosen:
            for layer in e.replacement.span:
                out[layer] = e.replacement.id
        return out
    return sum(x != y for x, y in zip(owner(a), owner(b)))


def test_diversity_hand_derived():
    lib = three_layers()
    first = solve(lib, {"params": 24})  # half, teacher, half (.3)
    # alpha .5 of 3 layers -> differ in >= 2. Covers within 20: T,N,T (.5; differs in 3), W,W,T (.55), W,N,T (.6),
    # T,W,W (.65) ... -> T,N,T.
    second = solve(lib, {"params": 24}, forbid=[first.ids], diversity=0.5)
    assert second.labels == ["teacher@0", "noop@1", "teacher@2"] and second.objective == pytest.approx(0.5)
    assert differing_layers(first, second, 3) >= math.ceil(0.5 * 3)
    # without alpha a forbidden solution only has to change in one layer; T,N,T (.5) is still the best of those
    assert solve(lib, {"params": 24}, forbid=[first]).objective == pytest.approx(0.5)
    sols = solve_diverse(lib, {"params": 24}, n=4, alpha=0.5)
    assert [s.objective for s in sols[:2]] == pytest.approx([0.3, 0.5])
    for a, b in itertools.combinations(sols, 2):
        assert differing_layers(a, b, 3) >= 2


def test_diversity_counts_a_two_layer_span_for_both_layers():
    lib = make_library(3, [E(0, 1, "teacher", {"params": 10}), E(1, 2, "teacher", {"params": 10}),
                           E(2, 3, "teacher", {"params": 10}), E(0, 2, "merge", {"params": 8}, {"kl": 0.1}),
                           E(0, 1, "noop", {"params": 0}, {"kl": 0.3}), E(1, 2, "noop", {"params": 0}, {"kl": 0.4}),
                           E(2, 3, "noop", {"params": 0}, {"kl": 0.05})])
    # <= 18: merge + teacher@2 (18, .1); merge + noop@2 (8, .15); noop@0 + teacher@1 + noop@2 (10, .35) ...
    first = solve(lib, {"params": 18})
    assert first.labels == ["merge@0-1", "teacher@2"]
    # alpha 1/3 -> differ in >= 1 layer: merge + noop@2 (.15)
    assert solve(lib, {"params": 18}, forbid=[first.ids], diversity=1 / 3).labels == ["merge@0-1", "noop@2"]
    # alpha 2/3 -> differ in >= 2: keeping the merge agrees on 2 layers (its width), so it is out:
    # noop@0 + teacher@1 + noop@2 (.35). Counting the merge as one layer would wrongly allow merge + noop@2.
    sol = solve(lib, {"params": 18}, forbid=[first.ids], diversity=2 / 3)
    assert sol.labels == ["noop@0", "teacher@1", "noop@2"] and differing_layers(first, sol, 3) == 3
    with pytest.raises(BadInputError, match="alpha"):
        solve(lib, {"params": 18}, forbid=[first.ids], diversity=1.5)


def test_accuracy_is_maximised():
    # accuracy of the teacher with one block replaced; the teacher's own entries carry no score
    entries = [E(0, 1, "teacher", {"macs": 10}), E(1, 2, "teacher", {"macs": 10}),
               E(0, 1, "bottleneck", {"macs": 5}, {"acc": 0.85}, width=0.5),
               E(1, 2, "bottleneck", {"macs": 5}, {"acc": 0.88}, width=0.5),
               E(0, 1, "noop", {"macs": 0}, {"acc": 0.5}), E(1, 2, "noop", {"macs": 0}, {"acc": 0.6})]
    lib = make_library(2, entries, meta={"teacher_quality": {"acc": 0.9}})
    # <= 15: teacher (.9) + half@1 (.88) = 1.78 beats half@0 + teacher (1.75); objective is minus the sum
    sol = solve(lib, {"macs": 15}, metric="acc")
    assert sol.labels == ["teacher@0", "bottleneck(width=0.5)@1"] and sol.objective == pytest.approx(-1.78)
    # without the teacher's accuracy its entries are left out: half + half (1.73) is the best left
    lib.meta = {}
    assert solve(lib, {"macs": 20}, metric="acc").objective == pytest.approx(-1.73)


def test_failed_and_unscored_entries_are_left_out():
    lib = make_library(1, [E(0, 1, "teacher", {"params": 10}), E(0, 1, "noop", {"params": 0}, {"kl": 1.0}),
                           E(0, 1, "bottleneck", {"params": 1}, {"kl": 0.0}, status="failed: nan loss", width=0.1),
                           E(0, 1, "bottleneck", {"params": 2}, {"kl": math.nan}, width=0.2),
                           E(0, 1, "linear", {}, {"kl": 0.1})])  # no params cost: unusable under a params limit
    assert solve(lib, {"params": 5}).labels == ["noop@0"]
    assert solve(lib, {}).labels == ["teacher@0"]


# ---------------------------------------------------------------------------------------------- errors


def test_infeasible_budget_names_constraint_and_minimum():
    lib = three_layers()  # fixed params 4: all no-ops reach exactly 4
    with pytest.raises(BadInputError, match=r"budget params <= 3.5 cannot be met: the smallest params any selection "
                                            r"reaches is 4 \(fixed parts 4 included\); raise the limit to at least 4$"):
        solve(lib, {"params": 3.5})
    # each alone feasible (params min 4 via AA, macs min 40 via BB) but no cover has params <= 11 and macs <= 100
    with pytest.raises(BadInputError, match=r"each budget constraint can be met on its own but not all together: "
                                            r"params <= 11 \(min 4\), macs <= 100 \(min 40\)"):
        solve(two_constraints(), {"params": 11, "macs": 100})


def test_bad_keys_and_metrics():
    lib = three_layers()
    with pytest.raises(BadInputError, match="unknown cost key 'flops'.*params, macs, latency_ms, memory_mb"):
        solve(lib, {"flops": 1e9})
    with pytest.raises(BadInputError, match="'memory_mb', which no library entry has.*: params"):
        solve(lib, {"memory_mb": 100})
    with pytest.raises(BadInputError, match="unknown quality metric 'ppl'"):
        solve(lib, {}, metric="ppl")
    with pytest.raises(BadInputError, match="no library entry .* finite 'loss'"):
        solve(make_library(1, [E(0, 1, "noop", {"params": 0}, {"kl": 1})]), {}, metric="loss")
    uncovered = make_library(2, [E(0, 1, "teacher", {"params": 1})])
    with pytest.raises(BadInputError, match=r"parent layer\(s\) 1 \(blocks.1\) have no usable library entry"):
        solve(uncovered, {})


def test_limits_from_budget():
    lib = make_library(2, [E(0, 1, "teacher", {"params": 30, "macs": 4e9, "latency_ms": 2.0}),
                           E(1, 2, "teacher", {"params": 50, "macs": 5e9, "latency_ms": 3.0}),
                           E(1, 2, "noop", {"params": 0, "macs": 0, "latency_ms": 0}, {"kl": 1})], {"params": 20})
    # teacher params 20 + 30 + 50 = 100 -> 60 %; 5 GFLOPs = 5e9 MACs; ms and MB map to latency_ms / memory_mb
    assert limits_from_budget(Budget.parse(["60%params", "5GFLOPs", "30ms", "200MB"]), lib) == {
        "params": pytest.approx(60.0), "macs": 5e9, "latency_ms": 30.0, "memory_mb": 200.0}
    assert limits_from_budget(Budget.parse("50%latency"), lib) == {"latency_ms": pytest.approx(2.5)}
    with pytest.raises(BadInputError, match="share of the teacher's memory_mb"):
        limits_from_budget(Budget.parse("50%memory"), lib)


def test_solution_round_trips_through_json():
    sol = solve(three_layers(), {"params": 19})
    back = MipSolution.from_dict(json.loads(json.dumps(sol.to_dict())))
    assert back.ids == sol.ids and back.objective == sol.objective and back.costs == sol.costs
    assert back.limits == {"params": 19.0} and back.method == "mip"


# ---------------------------------------------------------------------------------------------- re-check


def test_recheck_tightens_once_for_a_constant_overhead():
    lib = three_layers()
    overhead = 1.5  # e.g. BN buffers the tables do not count: the built student is always 1.5 params bigger

    def measure(chosen):
        return {"params": lib.total_cost(chosen, "params") + overhead}

    # iteration 1: limit 24 -> half,teacher,half (table 24) measured 25.5 > 24. Tighten:
    # 24 * 24 / 25.5 * 0.99 = 22.3624. Iteration 2: layers <= 18.36 -> half@0 + noop@1 (.6, table 19),
    # measured 20.5 <= 24: done.
    sol, measured, log = solve_with_recheck(lib, {"params": 24}, measure)
    assert sol.labels == ["bottleneck(width=0.5)@0", "noop@1", "teacher@2"]
    assert measured == {"params": 20.5}
    assert [row["violated"] for row in log] == [["params"], []]
    assert [row["limits"]["params"] for row in log] == pytest.approx([24.0, 24 * 24 / 25.5 * 0.99])
    assert [row["table_costs"]["params"] for row in log] == [24.0, 19.0]
    assert [row["measured"]["params"] for row in log] == [25.5, 20.5]
    with pytest.raises(BadInputError, match=r"still break the budget after 1 MIP re-solves \(params\).*measured "
                                            r"\{params=25.5\}"):
        solve_with_recheck(lib, {"params": 24}, measure, max_iterations=1)
    # an overhead no selection can absorb: tightening ends in an infeasible budget, said with the log
    with pytest.raises(BadInputError, match="after tightening for measured costs the budget is infeasible.*"
                                            "iteration 1"):
        solve_with_recheck(lib, {"params": 24}, lambda ch: {"params": lib.total_cost(ch, "params") + 30})


# ---------------------------------------------------------------------------------------------- baselines


def test_greedy_hand_derived():
    lib = three_layers()
    # limit 24: ratios kl-lost / params-saved from the teacher: half@0 .02, half@2 .04, noop@1 .05 ...
    # -> half@0 (25 left > 24), then half@2 (.04) -> 20: the MIP optimum (.3)
    g = greedy(lib, {"params": 24})
    assert g.labels == ["bottleneck(width=0.5)@0", "teacher@1", "bottleneck(width=0.5)@2"]
    assert g.status == "feasible" and g.method == "greedy"
    # limit 19: from there noop@1 (.5 / 10 = .05) beats half@1 (.09), noop@0 over half@0 (.9 / 5) ...
    # -> half, noop, half: .8, worse than the MIP's .6
    g = greedy(lib, {"params": 19})
    assert g.labels == ["bottleneck(width=0.5)@0", "noop@1", "bottleneck(width=0.5)@2"]
    assert g.objective == pytest.approx(0.8) and g.costs["params"] == 14.0
    assert solve(lib, {"params": 19}).objective < g.objective


def test_greedy_and_random_on_two_constraints():
    lib = two_constraints()
    limits = {"params": 13, "macs": 130}
    g = greedy(lib, limits)
    assert g.feasible and g.costs["params"] <= 13 and g.costs["macs"] <= 130
    rand = random_feasible(lib, limits, np.random.default_rng(0), n=6)
    assert len(rand) == 6
    for r in rand:
        assert r.method == "random" and r.costs["params"] <= 13 and r.costs["macs"] <= 130
        assert sorted(layer for e in r.chosen for layer in e.replacement.span) == [0, 1]
    best = solve(lib, limits).objective
    assert best <= g.objective + 1e-12 and all(best <= r.objective + 1e-12 for r in rand)
    with pytest.raises(BadInputError, match="cannot be met"):
        random_feasible(lib, {"params": 3}, np.random.default_rng(0), n=2)


def test_random_feasible_is_deterministic_per_seed():
    lib = random_library(3)
    limits = {"params": 0.6 * lib.teacher_cost("params")}
    a = random_feasible(lib, limits, np.random.default_rng(7), n=5)
    b = random_feasible(lib, limits, np.random.default_rng(7), n=5)
    assert [s.ids for s in a] == [s.ids for s in b]


# ---------------------------------------------------------------------------------------------- brute force


def random_library(seed: int, num_layers: int = 5) -> Library:
    """Teacher, no-op and two width variants per layer; about half the layers start a 2-layer merge."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(num_layers):
        p, m = rng.uniform(5, 10, 2)
        entries += [E(i, i + 1, "teacher", {"params": p, "macs": m}),
                    E(i, i + 1, "noop", {"params": 0, "macs": 0}, {"kl": rng.uniform(0.5, 2.0)})]
        for v in range(2):
            f = rng.uniform(0.2, 0.8)
            entries.append(E(i, i + 1, "bottleneck", {"params": p * f * rng.uniform(0.7, 1.3),
                                                     "macs": m * f * rng.uniform(0.7, 1.3)},
                             {"kl": (1 - f) * rng.uniform(0.2, 1.0)}, v=v))
        if i + 1 < num_layers and rng.random() < 0.5:
            f = rng.uniform(0.3, 1.0)
            entries.append(E(i, i + 2, "merge", {"params": 2 * p * f, "macs": 2 * m * f},
                             {"kl": rng.uniform(0.1, 1.5) * (1 - f) + 0.05}))
        if i + 1 < num_layers and rng.random() < 0.2:
            entries.append(E(i, i + 2, "noop", {"params": 0, "macs": 0}, {"kl": rng.uniform(1.0, 3.0)}))
    return make_library(num_layers, entries, {"params": 3.0, "macs": 2.0})


def all_covers(lib: Library):
    table = EntryTable.build(lib)
    by_start = {}
    for e in table.entries:
        by_start.setdefault(e.replacement.start, []).append(e)

    def walk(pos, acc):
        if pos == lib.num_layers:
            yield list(acc)
            return
        for e in by_start.get(pos, []):
            acc.append(e)
            yield from walk(e.replacement.end, acc)
            acc.pop()
    return list(walk(0, []))


def cover_objective(cover):
    return sum(0.0 if e.replacement.is_teacher and "kl" not in e.quality else e.quality["kl"] for e in cover)


def layer_owners(cover, num_layers):
    out = [None] * num_layers
    for e in cover:
        for layer in e.replacement.span:
            out[layer] = e.replacement.id
    return out


@pytest.mark.parametrize("seed", range(8))
def test_mip_matches_brute_force(seed):
    lib = random_library(seed)
    covers = all_covers(lib)
    rng = np.random.default_rng(100 + seed)
    teacher = {k: lib.teacher_cost(k) for k in ("params", "macs")}
    for _ in range(4):
        limits = {k: rng.uniform(0.25, 0.9) * teacher[k] for k in ("params", "macs")}
        lower = {"params": limits["params"] * 0.8} if rng.random() < 0.3 else None
        max_noops = int(rng.integers(0, 3)) if rng.random() < 0.4 else None

        def fits(cover, limits=limits, lower=lower, max_noops=max_noops):
            ok = all(lib.total_cost(cover, k) <= v + 1e-9 for k, v in limits.items())
            ok &= all(lib.total_cost(cover, k) >= v - 1e-9 for k, v in (lower or {}).items())
            return ok and (max_noops is None or sum(e.replacement.is_noop for e in cover) <= max_noops)

        feasible = [c for c in covers if fits(c)]
        if not feasible:
            with pytest.raises(BadInputError):
                solve(lib, limits, lower_limits=lower, max_noops=max_noops)
            continue
        best = min(cover_objective(c) for c in feasible)
        sol = solve(lib, limits, lower_limits=lower, max_noops=max_noops, mip_rel_gap=1e-9)
        assert sol.objective == pytest.approx(best, abs=1e-9)
        assert fits(sol.chosen)
        assert sorted(layer for e in sol.chosen for layer in e.replacement.span) == list(range(lib.num_layers))
        # diversity: the best cover differing from the first in >= ceil(alpha * L) layers
        alpha = float(rng.choice([0.2, 0.4, 0.6, 1.0]))
        need = math.ceil(alpha * lib.num_layers - 1e-9)
        first = layer_owners(sol.chosen, lib.num_layers)
        diverse = [c for c in feasible
                   if sum(a != b for a, b in zip(first, layer_owners(c, lib.num_layers))) >= need]
        if diverse:
            second = solve(lib, limits, lower_limits=lower, max_noops=max_noops, forbid=[sol.ids],
                           diversity=alpha, mip_rel_gap=1e-9)
            assert second.objective == pytest.approx(min(cover_objective(c) for c in diverse), abs=1e-9)
        else:
            with pytest.raises(BadInputError):
                solve(lib, limits, lower_limits=lower, max_noops=max_noops, forbid=[sol.ids], diversity=alpha)


@pytest.mark.parametrize("seed", range(4))
def test_infeasible_minimum_matches_brute_force(seed):
    lib = random_library(seed)
    smallest = min(lib.total_cost(c, "params") for c in all_covers(lib))
    with pytest.raises(BadInputError, match=rf"the smallest params any selection reaches is {smallest:.6g} "):
        solve(lib, {"params": smallest * 0.99})
    assert solve(lib, {"params": smallest * 1.000001}).costs["params"] == pytest.approx(smallest)


@pytest.mark.parametrize("seed", range(6))
def test_mip_beats_greedy_and_random(seed):
    lib = random_library(seed, num_layers=6)
    for share in (0.4, 0.6, 0.8):
        limits = {k: share * lib.teacher_cost(k) for k in ("params", "macs")}
        best = solve(lib, limits, mip_rel_gap=1e-9)
        g = greedy(lib, limits)
        if g.feasible:
            assert all(g.costs[k] <= v + 1e-9 for k, v in limits.items())
            assert best.objective <= g.objective + 1e-9
        rand = random_feasible(lib, limits, np.random.default_rng(seed), n=5)
        assert rand
        for r in rand:
            assert all(r.costs[k] <= v + 1e-9 for k, v in limits.items())
            assert sorted(layer for e in r.chosen for layer in e.replacement.span) == list(range(6))
            assert best.objective <= r.objective + 1e-9


def test_near_identity_blocks_hand_derived():
    # A briefly trained resnet's non-downsampling blocks are almost their shortcut: their replacements score
    # block KLs near 1e-8 beside linear ones near 1e-3 (as in the Puzzle pipeline test's library).
    # Per layer (macs, kl): teacher (4, 0), half width (2, 3e-8 / 1e-8), no-op (0, 2e-8 / 6e-8),
    # linear (.25, 1e-3). Limit 4: save 4 of 8. Covers within it: noop+teacher 2e-8, noop+half 3e-8,
    # half+half 4e-8, teacher+noop 6e-8, noop+noop 8e-8, half+noop 9e-8, any linear >= 1e-3.
    lib = make_library(2, [E(0, 1, "teacher", {"macs": 4}, {"kl": 0}), E(1, 2, "teacher", {"macs": 4}, {"kl": 0}),
                           E(0, 1, "bottleneck", {"macs": 2}, {"kl": 3e-8}, width=0.5),
                           E(1, 2, "bottleneck", {"macs": 2}, {"kl": 1e-8}, width=0.5),
                           E(0, 1, "noop", {"macs": 0}, {"kl": 2e-8}), E(1, 2, "noop", {"macs": 0}, {"kl": 6e-8}),
                           E(0, 1, "linear", {"macs": 0.25}, {"kl": 1e-3}),
                           E(1, 2, "linear", {"macs": 0.25}, {"kl": 1e-3})])
    sol = solve(lib, {"macs": 4})
    assert sol.labels == ["noop@0", "teacher@1"] and sol.objective == pytest.approx(2e-8, rel=1e-12)
    assert greedy(lib, {"macs": 4}).objective >= sol.objective
    # differing in >= 1 of the 2 layers: noop+half (3e-8), then half+half (4e-8), then teacher+noop (6e-8)
    assert [s.labels for s in solve_diverse(lib, {"macs": 4}, 4, 0.5)] == [
        ["noop@0", "teacher@1"], ["noop@0", "bottleneck(width=0.5)@1"],
        ["bottleneck(width=0.5)@0", "bottleneck(width=0.5)@1"], ["teacher@0", "noop@1"]]


@pytest.mark.parametrize("unit", [1e-7, 1e-9, 1e3])
@pytest.mark.parametrize("seed", range(3))
def test_mip_optimum_does_not_depend_on_the_unit_of_the_objective(seed, unit):
    base = random_library(seed)
    lib = make_library(base.num_layers, [Entry(e.replacement, dict(e.costs),
                                               {k: v * unit for k, v in e.quality.items()}, e.status)
                                         for e in base.entries], base.fixed_costs)
    covers = all_covers(lib)
    rng = np.random.default_rng(200 + seed)
    for _ in range(4):
        limits = {k: rng.uniform(0.25, 0.9) * lib.teacher_cost(k) for k in ("params", "macs")}
        feasible = [c for c in covers if all(lib.total_cost(c, k) <= v + 1e-9 for k, v in limits.items())]
        if not feasible:
            continue
        sol = solve(lib, limits, mip_rel_gap=1e-9)
        assert sol.objective == pytest.approx(min(cover_objective(c) for c in feasible), rel=1e-6)
        assert sol.labels == solve(base, limits, mip_rel_gap=1e-9).labels
