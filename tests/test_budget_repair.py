"""Budget repair (``constraint_handling = "repair"``, the random and evolution searchers): a proposal over
the budget is shrunk toward the space's cheapest arch until it fits, so tight budgets do not exhaust them.

The hard case is the one that used to fail: the resnet space centred on resnet18 at 32 px with 25 % of
resnet18's MACs, which about 0.01 % of the space fits (1,000 classes; 0.02 % with 10)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import timm

from studentnas import SEARCHERS, BadInputError, get_space
from studentnas.core.arch import Arch
from studentnas.core.budget import Budget
from studentnas.core.candidate import Candidate
from studentnas.core.cost import Cost
from studentnas.core.errors import SearchExhaustedError
from studentnas.engine.setup import check_budget_range
from studentnas.search_spaces.resnet import ResNetSpace
from studentnas.searchers.random import RandomSearcher

SIZE = (3, 32, 32)
R18 = ResNetSpace(max_depths=(4, 4, 4, 4))  # what for_teacher(resnet18) gives (checked below)
R18_MACS = 37_523_456  # resnet18 at 32 px, 1000 classes (the analytic cost equals FlopCounterMode)
LIMIT = 0.25 * R18_MACS


def macs(space, arch: Arch) -> float:  # noqa: ANN001
    return space.cost(arch, SIZE).macs


def budgeted(space, limit: float) -> dict:  # noqa: ANN001
    """What search() gives a searcher for a MACs budget: a feasibility test and the relative excess."""
    return {"is_feasible": lambda a: macs(space, a) <= limit, "violation": lambda a: macs(space, a) / limit - 1.0}


def drive(searcher, space, n: int) -> list[Arch]:  # noqa: ANN001
    out = []
    for _ in range(n):
        [arch] = searcher.ask(1)
        searcher.tell(Candidate(arch, space.cost(arch, SIZE), {"s": float(space.encode(arch).sum())}))
        out.append(arch)
    return out


def test_the_resnet18_space_at_32px_is_the_hard_case() -> None:
    assert R18.config() == ResNetSpace.for_teacher(timm.create_model("resnet18")).config()
    assert macs(R18, R18.named("resnet18")) == R18_MACS
    rng = np.random.default_rng(0)
    fits = sum(macs(R18, R18.sample(rng)) <= LIMIT for _ in range(3000))
    assert fits <= 3, f"{fits} of 3000 uniform draws fit; resampling alone needs thousands of draws per arch"


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_tight_budget_is_repaired_into_many_distinct_students(name: str) -> None:
    kwargs = {"population_size": 10, "sample_size": 3} if name == "evolution" else {}
    searcher = SEARCHERS.get(name)(R18, seed=0, objective="s", **budgeted(R18, LIMIT), **kwargs)
    t0 = time.perf_counter()
    archs = drive(searcher, R18, 40)
    assert time.perf_counter() - t0 < 30, "repair is a few analytic cost look-ups per proposal"
    assert len({a.id for a in archs}) == 40
    costs = [macs(R18, a) for a in archs]
    assert max(costs) <= LIMIT
    assert searcher.n_repaired >= 30, "nearly every proposal was over the budget and repaired"
    assert np.median(costs) >= 0.8 * LIMIT, "repair stops at the first arch that fits, near the budget's edge"
    assert len({a["block"] for a in archs}) == 2 and len({R18.depths(a) for a in archs}) >= 3, "diverse students"


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_repair_keeps_same_seed_same_students(name: str) -> None:
    def run(seed: int) -> list[str]:
        searcher = SEARCHERS.get(name)(R18, seed=seed, objective="s", **budgeted(R18, LIMIT))
        return [a.id for a in drive(searcher, R18, 15)]

    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize("space", [R18, get_space("nb201")], ids=["resnet", "nb201"])
def test_repair_never_returns_an_infeasible_arch(space) -> None:  # noqa: ANN001
    low = macs(space, space.cheapest(lambda a: macs(space, a)))
    rng = np.random.default_rng(1)
    high = max(macs(space, space.sample(rng)) for _ in range(50))
    for limit in [low, *np.linspace(low, high, 6)[1:-1]]:
        searcher = RandomSearcher(space, seed=int(limit) % 97, **budgeted(space, limit))
        for _ in range(25):
            arch = space.sample(searcher.rng)
            if macs(space, arch) > limit:
                assert macs(space, searcher._repair(arch)) <= limit
        asked = searcher.ask(1 if limit == low else 10)
        assert all(macs(space, arch) <= limit for arch in asked)
        if limit == low:  # only the cheapest arch (or one that costs the same) fits
            assert macs(space, asked[0]) == low


def test_shrink_walks_one_gene_at_a_time_to_the_cheapest_arch() -> None:
    def measure(a: Arch) -> float:
        return macs(R18, a)

    target = R18.cheapest(measure)
    assert R18.format_arch(target) == "basic d1-1-1-1 w0.5-0.5-0.5-0.5 stem deep_tiered16"
    assert measure(target) == R18.min_cost(SIZE).macs
    genes = R18.genes()

    def distance(a: Arch) -> int:
        return sum(abs(g.index(a[g.name]) - g.index(target[g.name])) for g in genes)

    rng = np.random.default_rng(2)
    for _ in range(20):
        arch = R18.sample(rng)
        path = list(R18.shrink(arch, rng, measure))
        assert path[-1] == target and len(path) <= distance(arch)
        for a, b in zip([arch, *path], path):
            assert distance(b) < distance(a), "every step gets closer to the cheapest arch"
            changed = {k for k in a if a[k] != b[k]} - {"ratio", "stem_width"}  # canonical companions
            assert len(changed) <= 1, (a, b)


def test_a_budget_below_the_cheapest_arch_gives_up_and_names_it() -> None:
    cheapest = R18.cheapest(lambda a: macs(R18, a))
    for name in ("random", "evolution"):
        searcher = SEARCHERS.get(name)(R18, seed=0, **budgeted(R18, macs(R18, cheapest) - 1))
        with pytest.raises(SearchExhaustedError, match="even the cheapest arch of space 'resnet', basic "
                           r"d1-1-1-1 w0.5-0.5-0.5-0.5 stem deep_tiered16, is 0.0% over it; raise the budget") as err:
            searcher.ask(1)
        assert err.value.cheapest == cheapest


def test_budget_range_check_rejects_limits_no_student_meets_together() -> None:
    """At 224 px with 1000 classes the fewest MACs and the fewest params are different students (a
    bottleneck one: cheap convs; a basic one: a 4x narrower classifier input), so 'MACs of the first' +
    'params of the second' passes each per-metric check, but no one student meets both."""
    size = (3, 224, 224)
    by_macs = min(R18.minimal_archs(), key=lambda a: R18.cost(a, size).macs)
    by_params = min(R18.minimal_archs(), key=lambda a: R18.cost(a, size).params)
    (m1, p1), (m2, p2) = [(R18.cost(a, size).macs, R18.cost(a, size).params) for a in (by_macs, by_params)]
    assert by_macs["block"] == "bottleneck" and by_params["block"] == "basic" and m1 < m2 and p2 < p1
    teacher = Cost(macs=1.8e9, params=11.7e6)
    check_budget_range(Budget.parse([f"{m2:.0f}MACs", f"{p2:.0f}params"]), R18, size, 1000, teacher)  # basic fits
    with pytest.raises(BadInputError, match="no student of space 'resnet' at 3x224x224 meets every limit at once"):
        check_budget_range(Budget.parse([f"{m1:.0f}MACs", f"{p2:.0f}params"]), R18, size, 1000, teacher)
