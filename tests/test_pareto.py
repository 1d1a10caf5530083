"""Pareto fronts (2-D and N objectives) and hypervolume, against numbers derived by hand."""

from __future__ import annotations

import math

import pytest

from studentnas import Arch, Budget, Cost
from studentnas.core.candidate import Candidate
from studentnas.core.pareto import (
    ReferencePoint,
    front,
    hypervolume,
    hypervolume_of,
    nondominated,
    pareto_front,
    pareto_indices,
    reference_point,
)


def test_pareto_indices_by_hand() -> None:
    # (score, cost): 0 dominates 3 (same score, cheaper); 1 is cheaper than 0; 2 is dominated by 1.
    assert pareto_indices([(3.0, 10.0), (2.0, 5.0), (1.0, 6.0), (3.0, 12.0), (0.5, 1.0)]) == [0, 1, 4]


def test_front_skips_failed_candidates() -> None:
    a, b, c = (Arch("nb201", {"e0": op}) for op in ("none", "skip_connect", "nor_conv_1x1"))
    cands = [Candidate(a, Cost(10, 1), {"s": 3.0}), Candidate(b, Cost(1, 1), status="failed", reason="nan"),
             Candidate(c, Cost(5, 1), {"s": 2.0})]
    assert [x.id for x in pareto_front(cands, "s")] == [a.id, c.id]


# --- N objectives and hypervolume (numbers derived by hand) -------------------------------------


def _cand(i: int, score: float, macs: float, latency: float | None = None) -> Candidate:
    return Candidate(Arch("nb201", {"e0": f"op{i}"}), Cost(macs, 1.0, latency_ms=latency), {"s": score})


def test_nondominated_three_objectives_by_hand() -> None:
    # minimise all three: row 3 is dominated by row 0 (worse in every coordinate); row 4 duplicates row 1
    F = [[1, 5, 3], [2, 2, 2], [3, 1, 4], [2, 6, 4], [2, 2, 2], [0, 9, 9]]
    assert nondominated(F) == [0, 1, 2, 5]


def test_hypervolume_2d_by_hand() -> None:
    # staircase against (1, 1): 0.2*(1-0.8) + 0.3*(1-0.4) + 0.5*(1-0.2) = 0.04 + 0.18 + 0.40
    assert hypervolume_of([[0.0, 0.8], [0.2, 0.4], [0.5, 0.2]], [1, 1]) == pytest.approx(0.62)
    # a dominated point and one beyond the reference add nothing
    assert hypervolume_of([[0.0, 0.8], [0.2, 0.4], [0.5, 0.2], [0.5, 0.5], [1.5, 0.1]], [1, 1]) == pytest.approx(0.62)
    assert hypervolume_of([], [1, 1]) == 0.0


def test_hypervolume_3d_by_hand() -> None:
    # boxes 0.5^3 = 0.125 and 1*0.25*0.25 = 0.0625 overlap in 0.5*0.25*0.25 = 0.03125: union 0.15625
    assert hypervolume_of([[0.5, 0.5, 0.5], [0.0, 0.75, 0.75]], [1, 1, 1]) == pytest.approx(0.15625)


def test_reference_point_from_budget_and_worst_score() -> None:
    cands = [_cand(0, 10, 4e9), _cand(1, 8, 2e9), _cand(2, 5, 1e9), _cand(3, 0, 3e9),
             Candidate(Arch("nb201", {"e0": "x"}), Cost(1e8, 1), status="failed", reason="nan")]
    ref = reference_point(cands, ["s", "macs"], Budget.parse("5GFLOPs"))
    assert ref == ReferencePoint(("s", "macs"), (10.0, 0.0), (0.0, 5e9))  # best/worst score; 0 and the budget
    hv, used = hypervolume(cands, ["s", "macs"], budget=Budget.parse("5GFLOPs"))
    # normalised front: (10-s)/10 and macs/5e9 -> (0, .8), (.2, .4), (.5, .2): 0.62 as above
    assert used == ref and hv == pytest.approx(0.62)
    # without a budget the cost axis is scaled by the largest MACs (4e9): (0, 1), (.2, .5), (.5, .25);
    # the first point sits on the reference (no volume): 0.3 * (1 - 0.5) + 0.5 * (1 - 0.25)
    hv_free, ref_free = hypervolume(cands, ["s", "macs"])
    assert ref_free.nadir == (0.0, 4e9) and hv_free == pytest.approx(0.3 * 0.5 + 0.5 * 0.75)
    assert ReferencePoint.from_dict(ref.to_dict()) == ref and ref.to_dict()["normalised_point"] == [1.0, 1.0]


def test_front_over_latency_leaves_out_unmeasured_candidates() -> None:
    cands = [_cand(0, 9, 5e6, latency=3.0), _cand(1, 7, 1e6, latency=1.0), _cand(2, 8, 2e6, latency=5.0),
             _cand(3, 99, 1e6, latency=None)]
    assert [c.id for c in front(cands, ["s", "latency_ms"])] == [cands[0].id, cands[1].id]
    assert [c.id for c in front(cands, ["s", "macs"])] == [cands[3].id]  # by MACs the unmeasured one wins
    three = front(cands, ["s", "macs", "latency"])
    assert [c.id for c in three] == [cands[0].id, cands[2].id, cands[1].id]  # 2 is cheaper in MACs than 0
    # (9 - s) / 2 and latency / 5 (the largest measured): (0, .6) and (1, .2), the latter on the reference
    assert math.isclose(hypervolume(cands, ["s", "latency"])[0], 0.4)
