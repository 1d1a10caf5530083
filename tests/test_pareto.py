from __future__ import annotations

from studentnas import Arch, Cost
from studentnas.candidate import Candidate
from studentnas.pareto import pareto_front, pareto_indices


def test_pareto_indices_by_hand() -> None:
    # (score, cost): 0 dominates 3 (same score, cheaper); 1 is cheaper than 0; 2 is dominated by 1.
    assert pareto_indices([(3.0, 10.0), (2.0, 5.0), (1.0, 6.0), (3.0, 12.0), (0.5, 1.0)]) == [0, 1, 4]


def test_front_skips_failed_candidates() -> None:
    a, b, c = (Arch("nb201", {"e0": op}) for op in ("none", "skip_connect", "nor_conv_1x1"))
    cands = [Candidate(a, Cost(10, 1), {"s": 3.0}), Candidate(b, Cost(1, 1), status="failed", reason="nan"),
             Candidate(c, Cost(5, 1), {"s": 2.0})]
    assert [x.id for x in pareto_front(cands, "s")] == [a.id, c.id]
