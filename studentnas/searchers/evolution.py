"""``evolution``: regularised (aging) evolution, the searcher DisWOT uses.

The population holds the ``population_size`` most recent successful candidates. Until it is full,
proposals are random samples. Afterwards each proposal draws ``sample_size`` members uniformly
without replacement, takes the *best* of them by the objective (DisWOT's public code picks among the
worst after an ascending sort; we do not copy that bug) and mutates it. Telling a candidate appends
it and removes the oldest member (aging), so no individual lives forever. Failed candidates are not
added. Defaults follow DisWOT's NB201 search: population 36, sample 8.

With several objectives (``objectives=["nwot", "latency"]``) the tournament winner is, among the
sampled members on their own non-dominated front (pymoo's sort), the one best by the first
objective; with one objective this is simply the best member.

Budget handling: ``repair`` (see :mod:`studentnas.searchers.base`): a child (or initial sample) over
the budget is shrunk toward the space's cheapest arch, one gene at a time, until it fits, so a
mutation that grows one gene past the budget trades it against the others; an already-asked child is
proposed again.

Example:
    >>> from studentnas import get_space
    >>> s = RegularizedEvolution(get_space("nb201"), seed=0, population_size=4, sample_size=2)
    >>> len(s.ask(4))
    4
"""

from __future__ import annotations

from collections import deque
from typing import Any

from studentnas.core.arch import Arch
from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError
from studentnas.core.pareto import nondominated
from studentnas.core.registry import SEARCHERS
from studentnas.core.space import SearchSpace
from studentnas.searchers.base import Searcher, Vector


@SEARCHERS.register()
class RegularizedEvolution(Searcher):
    """Aging evolution with tournament selection of the best and single-gene mutation."""

    name = "evolution"
    constraint_handling = "repair"

    def __init__(self, space: SearchSpace, *, population_size: int = 36, sample_size: int = 8, **kwargs: Any):
        super().__init__(space, **kwargs)
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise BadInputError(f"evolution needs population_size >= 2 and 1 <= sample_size <= population_size; "
                                f"got {population_size} and {sample_size}")
        self.population_size = int(population_size)
        self.sample_size = int(sample_size)
        self.population: deque[tuple[Arch, Vector]] = deque()  # (arch, minimisation vector), oldest first

    def _propose(self) -> Arch:
        if len(self.population) + len(self._pending) < self.population_size or not self.population:
            return self.space.sample(self.rng)
        k = min(self.sample_size, len(self.population))
        picks = [self.population[int(i)] for i in self.rng.choice(len(self.population), size=k, replace=False)]
        if len(self.objectives) > 1:
            picks = [picks[i] for i in nondominated([v for _, v in picks])]
        parent = min(picks, key=lambda item: item[1])[0]  # first best wins ties, as max() did
        return self.space.mutate(parent, self.rng)

    def _observe(self, cand: Candidate) -> None:
        vector = self.objective_vector(cand)
        if cand.ok and vector is not None:
            self.population.append((cand.arch, vector))
            while len(self.population) > self.population_size:
                self.population.popleft()

    def _state(self) -> dict[str, Any]:
        return {"population": [[a.to_dict(), list(v)] for a, v in self.population]}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.population = deque((Arch.from_dict(a), tuple(float(x) for x in v)) for a, v in state["population"])
