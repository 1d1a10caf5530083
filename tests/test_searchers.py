"""Searcher behaviour beyond the single-objective contract: the multi-objective contract, evolution's
tournament, NSGA-II's budget constraint, Optuna's study on disk, and front quality against random."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from studentnas import SEARCHERS, BadInputError, get_space
from studentnas.core.arch import Arch
from studentnas.core.candidate import Candidate
from studentnas.core.cost import Cost
from studentnas.core.pareto import hypervolume, reference_point
from studentnas.searchers.evolution import RegularizedEvolution
from studentnas.searchers.nsga2 import NSGA2Searcher
from studentnas.searchers.optuna_search import JOURNAL_FILE, OptunaTPESearcher
from studentnas.testing import check_searcher


def test_tournament_mutates_the_best_member() -> None:
    space = get_space("nb201")
    evo = RegularizedEvolution(space, seed=0, population_size=4, sample_size=4, objective="s")
    archs = evo.ask(4)
    evo.tell([Candidate(a, Cost(1, 1), {"s": float(i)}) for i, a in enumerate(archs)])  # archs[3] is best
    [child] = evo.ask(1)
    diff = [k for k in child if child[k] != archs[3][k]]
    assert len(diff) == 1, "the child is the best member with one gene mutated"


def test_aging_drops_the_oldest_and_failures_are_not_kept() -> None:
    space = get_space("nb201")
    evo = RegularizedEvolution(space, seed=1, population_size=3, sample_size=2, objective="s")
    archs = evo.ask(3)
    evo.tell([Candidate(a, Cost(1, 1), {"s": 1.0}) for a in archs])
    [a4] = evo.ask(1)
    evo.tell(Candidate(a4, Cost(1, 1), {"s": 5.0}))
    assert [a.id for a, _ in evo.population] == [archs[1].id, archs[2].id, a4.id]
    [a5] = evo.ask(1)
    evo.tell(Candidate(a5, Cost(1, 1), status="failed", reason="nan"))
    assert len(evo.population) == 3 and a5.id not in {a.id for a, _ in evo.population}


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(BadInputError, match="sample_size"):
        RegularizedEvolution(get_space("nb201"), population_size=4, sample_size=9)


def test_search_exhaustion_is_reported() -> None:
    from studentnas.core.errors import SearchExhaustedError
    from studentnas.searchers.random import RandomSearcher

    space = get_space("nb201")
    # a budget only the all-"none" cell meets (several cells share its MACs, so check the arch itself):
    # the first sample is repaired into it, then every repair ends on it again, which was asked
    s = RandomSearcher(space, seed=0, is_feasible=lambda a: a == space.smallest(), max_tries=50)
    assert s.ask(1) == [space.smallest()]
    with pytest.raises(SearchExhaustedError, match="in 50 tries after 1 archs; the space may be used up: raise the"):
        s.ask(1)


@pytest.mark.parametrize("name", SEARCHERS.list())
def test_multi_objective_contract(name: str) -> None:
    check_searcher(SEARCHERS.get(name), get_space("nb201"), objectives=["score", "macs"])


def test_objectives_are_validated_and_defaulted() -> None:
    space = get_space("nb201")
    assert NSGA2Searcher(space, objective="nwot").objectives == ("nwot", "macs")  # multi-objective by nature
    assert RegularizedEvolution(space, objective="nwot").objectives == ("nwot",)
    s = RegularizedEvolution(space, objectives=["macs", "nwot", "latency_ms"])
    assert s.objectives == ("macs", "nwot", "latency") and s.objective == "nwot"
    with pytest.raises(BadInputError, match="all cost metrics"):
        RegularizedEvolution(space, objectives=["macs", "params"])
    with pytest.raises(BadInputError, match="named twice"):
        RegularizedEvolution(space, objectives=["nwot", "macs", "nwot"])


def test_multi_objective_tournament_takes_the_front_member_best_by_the_first_objective() -> None:
    space = get_space("nb201")
    evo = RegularizedEvolution(space, seed=0, population_size=4, sample_size=4, objectives=["s", "macs"])
    archs = evo.ask(4)
    # (score, macs): a0 (5, 10) is dominated by a1 (6, 8); a2 (9, 20) and a3 (1, 1) are on the front.
    points = [(5.0, 10.0), (6.0, 8.0), (9.0, 20.0), (1.0, 1.0)]
    evo.tell([Candidate(a, Cost(m, 1), {"s": sc}) for a, (sc, m) in zip(archs, points)])
    assert {a.id for a, _ in evo.archive} == {archs[1].id, archs[2].id, archs[3].id}
    [child] = evo.ask(1)  # the whole population is sampled: the winner is a2, best score on the front
    assert sum(child[k] != archs[2][k] for k in child) == 1


def _budgeted(space, limit):  # noqa: ANN001, ANN202
    return {"is_feasible": lambda a: space.cost(a).macs <= limit,
            "violation": lambda a: space.cost(a).macs / limit - 1.0}


def test_nsga2_tells_pymoo_the_budget_as_a_constraint() -> None:
    space = get_space("nb201")
    limit = 30e6
    s = NSGA2Searcher(space, seed=1, population_size=6, objectives=["s", "macs"], **_budgeted(space, limit))
    told = []
    while len(told) < 18:
        [a] = s.ask(1)
        told.append(Candidate(a, space.cost(a), {"s": float(space.encode(a).sum())}))
        s.tell(told[-1])
    assert all(c.cost.macs <= limit for c in told)  # nothing over the budget was ever evaluated
    X, G = s._algorithm.pop.get("X"), s._algorithm.pop.get("G")[:, 0]
    for x, g in zip(X, G):
        macs = space.cost(space.decode(x)).macs
        # feasible individuals carry G = 0; infeasible ones their relative excess, e.g. 36 MMACs -> 0.2
        assert g == (pytest.approx(macs / limit - 1.0) if macs > limit else 0.0)
    assert s.state_dict()["n_told"] == 18


def test_optuna_study_lives_in_the_workdir_and_is_reused_on_resume(tmp_path: Path) -> None:
    space = get_space("nb201")
    kw = {"seed": 5, "objectives": ["s", "macs"], **_budgeted(space, 40e6)}

    def score(a: Arch) -> Candidate:
        return Candidate(a, space.cost(a), {"s": float(np.cos(space.encode(a)).sum())})

    first = OptunaTPESearcher(space, workdir=tmp_path / "run", **kw)
    journal = []
    for _ in range(6):
        [a] = first.ask(1)
        journal.append(score(a))
        first.tell(journal[-1])
    assert (tmp_path / "run" / JOURNAL_FILE).is_file()
    n_trials = len(first._study.trials)
    shutil.copytree(tmp_path / "run", tmp_path / "resumed")
    expected = first.ask(1)

    resumed = OptunaTPESearcher(space, workdir=tmp_path / "resumed", **kw)
    by_id = {c.id: c for c in journal}
    for cand in journal:  # replay: the stored trials are proposed in order, none is created or told again
        [a] = resumed.ask(1)
        assert a.id == cand.id
        resumed.tell(by_id[a.id])
    assert len(resumed._study.trials) == n_trials
    assert resumed.ask(1) == expected
    with pytest.raises(BadInputError, match="was made with"):
        OptunaTPESearcher(space, workdir=tmp_path / "resumed", **{**kw, "objectives": ["s", "params"]})


def test_optuna_state_dict_is_json_and_restores_the_study() -> None:
    space = get_space("resnet")
    s = OptunaTPESearcher(space, seed=2, objective="s")
    for _ in range(5):
        [a] = s.ask(1)
        s.tell(Candidate(a, space.cost(a), {"s": float(space.encode(a)[0])}))
    state = json.loads(json.dumps(s.state_dict()))
    clone = OptunaTPESearcher(space, seed=9, objective="s")
    clone.load_state_dict(state)
    assert len(clone._study.trials) == len(s._study.trials) and clone.ask(2) == s.ask(2)


def test_every_searcher_finds_a_better_front_than_random_on_a_synthetic_problem() -> None:
    """Front quality, deterministic per seed: mean hypervolume over 4 seeds, 60 evaluations each."""
    space = get_space("nb201")

    def score(a: Arch) -> float:
        v = space.encode(a).astype(float)
        return float(np.sin(v).sum() + (v == 3).sum())

    def run(name: str, seed: int) -> list[Candidate]:
        s, out = SEARCHERS.get(name)(space, seed=seed, objectives=["s", "macs"]), []
        while len(out) < 60:
            [a] = s.ask(1)
            out.append(Candidate(a, space.cost(a), {"s": score(a)}))
            s.tell(out[-1])
        return out

    runs = {name: [run(name, seed) for seed in range(4)] for name in ["random", "nsga2", "optuna-nsga2"]}
    ref = reference_point([c for rs in runs.values() for r in rs for c in r], ["s", "macs"])  # one for all
    mean = {name: float(np.mean([hypervolume(r, ["s", "macs"], ref)[0] for r in rs])) for name, rs in runs.items()}
    assert mean["nsga2"] > mean["random"] + 0.01 and mean["optuna-nsga2"] > mean["random"] + 0.01, mean
