"""``nsga2``: pymoo's NSGA-II over the space's integer encoding, driven through pymoo's ask/tell.

Each gene is an integer variable within ``space.bounds`` (``space.encode``/``decode``); the
operators are pymoo's integer recipe: random integer sampling, SBX crossover and polynomial
mutation with rounding repair, and pymoo's own duplicate elimination within a generation. The
objectives are the searcher's ``objectives`` in minimisation form ("proxy score up, cost down";
with one ``objective``, ``(objective, macs)``). Survival is pymoo's non-dominated sorting with
crowding distance; nothing of it is written here.

How a pymoo generation meets our one-arch-at-a-time ``ask``:

* ``ask`` hands out the generation's individuals one by one. pymoo is told the generation (plus
  any fillers, below) only once every individual of it has a result, then asked for the next.
* **Budget as a constraint** (``constraint_handling = "constraints"``): an individual over the
  budget is never evaluated; it gets one inequality constraint ``G = violation(arch) > 0`` (how far
  over the budget, relative), so pymoo's constrained domination ranks it below every feasible one
  and by how far it is over. Candidates whose proxy failed get ``G = 1``.
* **Never the same arch twice:** an individual whose arch was evaluated before gets that earlier
  result instead of an evaluation; one whose arch is still being evaluated waits for its result.
* When the generation is all handed out but some results are still out (the caller asks ahead of
  its tells, e.g. parallel workers), ``ask`` proposes *fillers*: mutants of the Pareto archive (or
  random samples), drawn from ``self.rng``. They are evaluated as usual and added to the next tell.

Deterministic per seed: pymoo's ``random_state`` is seeded with ``seed`` and fillers use
``self.rng``. ``state_dict`` stores the pymoo algorithm pickled (base64) with the bookkeeping; load
it only from a run you trust, as with any pickle.

Example:
    >>> from studentnas import get_space
    >>> s = NSGA2Searcher(get_space("nb201"), seed=0, population_size=4, objectives=["score", "macs"])
    >>> len({a.id for a in s.ask(4)})
    4
"""

from __future__ import annotations

import base64
import pickle
from collections import deque
from typing import Any

import numpy as np

from studentnas.core.arch import Arch
from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SEARCHERS
from studentnas.core.space import SearchSpace
from studentnas.searchers.base import Searcher

Result = tuple[tuple[float, ...], tuple[float, ...]]  # (F, G) as pymoo gets them
FILLER = -1  # "index" of a proposal that is not an individual of the current generation


@SEARCHERS.register()
class NSGA2Searcher(Searcher):
    """NSGA-II (pymoo): proxy score up, cost down, the budget as a constraint."""

    name = "nsga2"
    constraint_handling = "constraints"
    multi_objective = True

    def __init__(self, space: SearchSpace, *, population_size: int = 20, eta: float = 3.0, **kwargs: Any):
        super().__init__(space, **kwargs)
        if population_size < 2:
            raise BadInputError(f"nsga2 needs population_size >= 2, got {population_size}")
        self.population_size = int(population_size)
        self.eta = float(eta)
        self._algorithm = self._make_algorithm()
        self._gen: Any = None  # pymoo Population being handed out, or None
        self._queue: deque[int] = deque()  # indices of _gen not yet proposed
        self._results: dict[int, Result] = {}  # index in _gen -> its result
        self._waiting: dict[str, list[int]] = {}  # pending arch id -> indices of _gen that are that arch
        self._where: dict[str, int] = {}  # pending arch id -> its index in _gen, or FILLER
        self._extras: list[tuple[list[int], Result]] = []  # told fillers for the next tell
        self._known: dict[str, Result] = {}  # every told arch's result
        self._current = FILLER

    # --- pymoo plumbing ---------------------------------------------------------------------------
    def _make_algorithm(self) -> Any:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem
        from pymoo.core.termination import NoTermination
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair
        from pymoo.operators.sampling.rnd import IntegerRandomSampling

        lower, upper = self.space.bounds
        problem = Problem(n_var=len(lower), n_obj=len(self.objectives), n_ieq_constr=1, xl=np.asarray(lower),
                          xu=np.asarray(upper), vtype=int)
        algorithm = NSGA2(pop_size=self.population_size, sampling=IntegerRandomSampling(),
                          crossover=SBX(prob=0.9, eta=self.eta, vtype=float, repair=RoundingRepair()),
                          mutation=PM(eta=self.eta, vtype=float, repair=RoundingRepair()),
                          eliminate_duplicates=True)
        return algorithm.setup(problem, termination=NoTermination(), seed=self.seed, verbose=False)

    def _tell_pymoo(self) -> None:
        """Give pymoo the finished generation and the told fillers (pymoo's ask/tell with static values)."""
        from pymoo.core.evaluator import Evaluator
        from pymoo.core.population import Population
        from pymoo.problems.static import StaticProblem

        parts, results = [], []
        if self._gen is not None:
            parts.append(self._gen)
            results += [self._results[i] for i in range(len(self._gen))]
        if self._extras:
            parts.append(Population.new("X", np.array([x for x, _ in self._extras], dtype=int)))
            results += [r for _, r in self._extras]
        self._gen, self._results, self._extras = None, {}, []
        if not parts:
            return
        infills = Population.merge(*parts) if len(parts) > 1 else parts[0]
        problem = self._algorithm.problem
        F = np.array([f for f, _ in results], dtype=float)
        G = np.array([g for _, g in results], dtype=float)
        Evaluator().eval(StaticProblem(problem, F=F, G=G), infills)
        self._algorithm.tell(infills=infills)

    def _next_generation(self) -> bool:
        """Tell pymoo what is finished and ask it for a generation; False when it has none to give."""
        self._tell_pymoo()
        gen = self._algorithm.ask()
        if gen is None or len(gen) == 0:  # mating found no new offspring: carry on with fillers
            self._algorithm.termination.force_termination = False
            return False
        self._gen, self._queue = gen, deque(range(len(gen)))
        return True

    def _generation_done(self) -> bool:
        return self._gen is None or len(self._results) == len(self._gen)

    def _filler(self) -> Arch:
        if self.archive:
            parent = self.archive[int(self.rng.integers(len(self.archive)))][0]
            return self.space.mutate(parent, self.rng)
        return self.space.sample(self.rng)

    def _result(self, cand: Candidate) -> Result:
        vector = self.objective_vector(cand)
        if vector is None:  # failed (or infeasible once measured): never survives against a feasible one
            return (0.0,) * len(self.objectives), (1.0,)
        return tuple(vector), (0.0,)

    # --- Searcher hooks ---------------------------------------------------------------------------
    def _propose(self) -> Arch:
        if not self._queue and self._generation_done():
            self._next_generation()
        if self._queue:
            self._current = self._queue.popleft()
            return self.space.decode(self._gen[self._current].X)
        self._current = FILLER
        return self._filler()

    def _rejected(self, arch: Arch, why: str) -> None:
        i = self._current
        if i == FILLER:
            return
        if why == "infeasible":
            self._results[i] = ((0.0,) * len(self.objectives), (max(self.violation(arch), 1e-9),))
        elif why == "told":
            self._results[i] = self._known[arch.id]
        else:  # pending: the same arch is being evaluated; share its result
            self._waiting.setdefault(arch.id, []).append(i)

    def _accepted(self, arch: Arch) -> None:
        self._where[arch.id] = self._current

    def _observe(self, cand: Candidate) -> None:
        result = self._known[cand.id] = self._result(cand)
        i = self._where.pop(cand.id)
        if i == FILLER:
            self._extras.append(([int(x) for x in self.space.encode(cand.arch)], result))
        else:
            self._results[i] = result
        for j in self._waiting.pop(cand.id, []):
            self._results[j] = result

    def _state(self) -> dict[str, Any]:
        blob = pickle.dumps({k: getattr(self, k) for k in (
            "_algorithm", "_gen", "_queue", "_results", "_waiting", "_where", "_extras", "_known", "_current")})
        return {"pickle": base64.b64encode(blob).decode("ascii")}

    def _load_state(self, state: dict[str, Any]) -> None:
        for key, val in pickle.loads(base64.b64decode(state["pickle"])).items():
            setattr(self, key, val)
