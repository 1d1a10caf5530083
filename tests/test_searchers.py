"""Searcher behaviour beyond the contract: evolution selects the best of its tournament."""

from __future__ import annotations

import pytest

from studentnas import BadInputError, get_space
from studentnas.candidate import Candidate
from studentnas.cost import Cost
from studentnas.searchers.evolution import RegularizedEvolution


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
    from studentnas.errors import SearchExhaustedError
    from studentnas.searchers.random import RandomSearcher

    space = get_space("nb201")
    # a budget only the all-"none" cell meets (several cells share its MACs, so check the arch itself)
    s = RandomSearcher(space, seed=0, is_feasible=lambda a: a == space.smallest(), max_tries=20000)
    assert s.ask(1) == [space.smallest()]
    with pytest.raises(SearchExhaustedError, match="raise the budget"):
        s.ask(1)
