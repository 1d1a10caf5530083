"""``Searcher``: the ask/tell interface every search strategy implements.

Lifecycle (modelled on Optuna's ``Study.ask``/``tell``)::

    searcher = SEARCHERS.get("evolution")(space, seed=0, is_feasible=fits_budget, objective="nwot")
    while not done:
        archs = searcher.ask(n)          # n new, feasible, never-asked archs
        candidates = evaluate(archs)     # scores (or failures) for exactly those archs
        searcher.tell(candidates)        # every asked arch must be told once, in any order

The public methods validate and keep the bookkeeping (what was asked, what is pending, the RNG);
subclasses implement the protected hooks ``_propose`` (one proposal, may be infeasible or already
seen) and ``_observe`` (learn from one told candidate), plus ``_state``/``_load_state`` for their
own state. Randomness comes only from ``self.rng`` (a ``numpy.random.Generator`` made from the
seed), so a searcher replayed with the same tells asks the same archs: this is what makes runs
resumable.

Budget handling is explicit: ``constraint_handling = "resample"`` means a proposal that fails
``is_feasible`` (or was asked before) is discarded and proposed again, up to ``max_tries`` times.
Infeasible archs are therefore never evaluated.

Example:
    >>> from studentnas import get_space, SEARCHERS
    >>> s = SEARCHERS.get("random")(get_space("nb201"), seed=0)
    >>> [a] = s.ask(1)
    >>> s.state_dict()["pending"] == [a.to_dict()]
    True
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np

from studentnas.arch import Arch
from studentnas.candidate import Candidate
from studentnas.errors import BadInputError, SearchExhaustedError
from studentnas.space import SearchSpace


def _always(_arch: Arch) -> bool:
    return True


class Searcher(ABC):
    """Base class of all searchers. See the module docstring for the lifecycle."""

    name: ClassVar[str] = ""
    constraint_handling: ClassVar[str] = "resample"

    def __init__(self, space: SearchSpace, *, seed: int = 0, is_feasible: Callable[[Arch], bool] | None = None,
                 objective: str = "score", max_tries: int = 2000):
        self.space = space
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.is_feasible = is_feasible or _always
        self.objective = objective
        self.max_tries = int(max_tries)
        self._seen: set[str] = set()
        self._pending: dict[str, Arch] = {}
        self.n_told = 0

    # --- public API ---------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Arch]:
        """``n`` new archs that satisfy the budget and were never asked before."""
        if int(n) < 1:
            raise BadInputError(f"ask(n) needs n >= 1, got {n}")
        out = []
        for _ in range(int(n)):
            for _try in range(self.max_tries):
                arch = self._propose()
                if arch.id not in self._seen and self.is_feasible(arch):
                    break
            else:
                raise SearchExhaustedError(
                    f"{self.name} found no new arch within the budget in {self.max_tries} tries "
                    f"after {len(self._seen)} archs; the space may be used up: raise the budget or stop earlier")
            self._seen.add(arch.id)
            self._pending[arch.id] = arch
            out.append(arch)
        return out

    def tell(self, candidates: Candidate | Iterable[Candidate]) -> None:
        """Report evaluated candidates. Each must have been asked and not told yet."""
        items = [candidates] if isinstance(candidates, Candidate) else list(candidates)
        for cand in items:
            if cand.id not in self._pending:
                raise ValueError(f"told candidate {cand.id}, which is not pending (asked and not yet told)")
            del self._pending[cand.id]
            self.n_told += 1
            self._observe(cand)

    def fitness(self, cand: Candidate) -> float:
        """The objective of a told candidate; -inf for failed or infeasible ones."""
        value = cand.score(self.objective)
        return value if math.isfinite(value) else -math.inf

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state; ``load_state_dict`` on a fresh searcher of the same config restores it."""
        return {
            "name": self.name,
            "rng": self.rng.bit_generator.state,
            "seen": sorted(self._seen),
            "pending": [a.to_dict() for a in self._pending.values()],
            "n_told": self.n_told,
            "own": self._state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise BadInputError(f"state is from searcher '{state.get('name')}', not '{self.name}'")
        self.rng.bit_generator.state = state["rng"]
        self._seen = set(state["seen"])
        self._pending = {a.id: a for a in (Arch.from_dict(d) for d in state["pending"])}
        self.n_told = int(state["n_told"])
        self._load_state(state["own"])

    # --- hooks for subclasses -----------------------------------------------------------------
    @abstractmethod
    def _propose(self) -> Arch:
        """One proposal (feasibility and novelty are checked by :meth:`ask`)."""

    def _observe(self, cand: Candidate) -> None:
        """Learn from one told candidate (default: nothing)."""

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass
