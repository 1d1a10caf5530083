"""``Searcher``: the ask/tell interface every search strategy implements.

Lifecycle (modelled on Optuna's ``Study.ask``/``tell``)::

    searcher = SEARCHERS.get("nsga2")(space, seed=0, is_feasible=fits_budget, objectives=["nwot", "macs"])
    while not done:
        archs = searcher.ask(n)          # n new, feasible, never-asked archs
        candidates = evaluate(archs)     # scores (or failures) for exactly those archs
        searcher.tell(candidates)        # every asked arch must be told once, in any order

The public methods validate and keep the bookkeeping (what was asked, what is pending, the RNG,
the Pareto archive); subclasses implement the protected hooks ``_propose`` (one proposal, may be
infeasible or already seen), ``_observe`` (learn from one told candidate) and optionally
``_accepted``/``_rejected`` (told which proposals :meth:`ask` kept or turned down, and why), plus
``_state``/``_load_state`` for their own state. Randomness comes only from ``self.rng`` (a
``numpy.random.Generator`` made from the seed) or from generators seeded from ``self.seed``, so a
searcher replayed with the same tells asks the same archs: this is what makes runs resumable.

Objectives: ``objectives`` names proxy scores (maximised, from ``Candidate.scores``) and cost
metrics (minimised, from ``Candidate.cost``: ``macs``, ``params``, ``latency``, ``memory``), see
:mod:`studentnas.core.objectives`. A single ``objective`` still works; searchers whose
``multi_objective`` is True (``nsga2``, ``optuna-nsga2``) then optimise ``(objective, macs)``.
Every searcher keeps ``archive``, the Pareto archive of what it was told.

Budget handling is explicit, one rule per searcher (``constraint_handling``), and in every case
**an arch over the budget is never asked, so never evaluated**:

=================  ============================================================================
``repair``         ``random``, ``evolution``: a proposal that fails ``is_feasible`` is shrunk
                   toward the space's cheapest arch (:meth:`SearchSpace.shrink`: one gene per
                   step, the step that saves the most of ``violation`` per notch, ties by
                   ``self.rng``) until it fits; the repaired arch is then deduplicated like any
                   proposal. So a tight budget (at 32 px, 0.01-0.02 % of the resnet space
                   centred on resnet18 fits 25 % of its MACs) costs some analytic cost look-ups
                   per proposal, not thousands of rejected samples. Only when even the
                   cheapest arch is over the budget does :meth:`ask` give up, with a
                   :class:`~studentnas.core.errors.SearchExhaustedError` that names it.
``resample``       (a subclass may choose it) a proposal that fails ``is_feasible`` is discarded
                   and proposed again.
``constraints``    ``nsga2``, ``optuna-tpe``, ``optuna-nsga2``: the budget is a constraint of the
                   optimiser. An infeasible proposal is told to the optimiser as infeasible with
                   its ``violation`` (how far over the budget, relative) and proposed again, so
                   the optimiser learns where the budget lies.
=================  ============================================================================

Whatever the rule, a proposal that was asked before (pending or told) is discarded and proposed
again; :meth:`ask` gives up after ``max_tries`` discarded proposals for one arch (the space is used up).

Example:
    >>> from studentnas import get_space, SEARCHERS
    >>> s = SEARCHERS.get("random")(get_space("nb201"), seed=0)
    >>> [a] = s.ask(1)
    >>> s.state_dict()["pending"] == [a.to_dict()]
    True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from studentnas.core import objectives as obj
from studentnas.core.arch import Arch
from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError, SearchExhaustedError
from studentnas.core.pareto import nondominated
from studentnas.core.space import SearchSpace

Vector = tuple[float, ...]


def _always(_arch: Arch) -> bool:
    return True


class Searcher(ABC):
    """Base class of all searchers. See the module docstring for the lifecycle.

    Args:
        space: the search space.
        seed: the only source of randomness.
        is_feasible: True when an arch is within the budget (default: everything is).
        violation: how far an arch is over the budget, relative (``<= 0`` inside); default:
            0 when ``is_feasible`` else 1. Used by searchers that handle the budget as a constraint,
            and by ``repair`` to rank the shrinking steps (without it: the space's analytic MACs).
        objective: the single proxy score to maximise (kept for single-objective callers).
        objectives: proxy scores to maximise and cost metrics to minimise, e.g. ``["diswot", "macs"]``;
            overrides ``objective`` (which becomes the first proxy among them).
        workdir: a folder for searchers that keep state in files (Optuna's study); None keeps it in memory.
        max_tries: proposals :meth:`ask` may turn down for one arch before giving up.
    """

    name: ClassVar[str] = ""
    constraint_handling: ClassVar[str] = "resample"
    multi_objective: ClassVar[bool] = False  # True: with one objective, optimise (objective, macs)
    uses_workdir: ClassVar[bool] = False  # True: keeps its state under ``workdir`` when one is given

    def __init__(self, space: SearchSpace, *, seed: int = 0, is_feasible: Callable[[Arch], bool] | None = None,
                 violation: Callable[[Arch], float] | None = None, objective: str = "score",
                 objectives: Sequence[str] | None = None, workdir: str | Path | None = None, max_tries: int = 2000):
        self.space = space
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.is_feasible = is_feasible or _always
        self._violation = violation
        if objectives:
            names = tuple(obj.parse_objectives(list(objectives)))
        else:
            names = (objective,) + (("macs",) if self.multi_objective and not obj.is_cost(objective) else ())
        self.objectives: tuple[str, ...] = names
        self.objective = next((n for n in names if not obj.is_cost(n)), names[0])
        self.workdir = Path(workdir) if workdir is not None else None
        self.max_tries = int(max_tries)
        self._seen: set[str] = set()
        self._pending: dict[str, Arch] = {}
        self.archive: list[tuple[Arch, Vector]] = []
        self.n_told = 0
        self.n_repaired = 0  # proposals that ``repair`` shrank into the budget (not part of the state)
        self._cheapest: Arch | None = None  # where ``repair`` shrinks to, found on the first repair

    # --- public API ---------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Arch]:
        """``n`` new archs that satisfy the budget and were never asked before."""
        if int(n) < 1:
            raise BadInputError(f"ask(n) needs n >= 1, got {n}")
        out = []
        for _ in range(int(n)):
            for _try in range(self.max_tries):
                arch = self._propose()
                why = self._novelty(arch) or (None if self.is_feasible(arch) else "infeasible")
                if why == "infeasible" and self.constraint_handling == "repair":
                    arch = self._repair(arch)
                    why = self._novelty(arch)
                if why is None:
                    break
                self._rejected(arch, why)
            else:
                raise SearchExhaustedError(
                    f"{self.name} found no new arch within the budget in {self.max_tries} tries "
                    f"after {len(self._seen)} archs; the space may be used up: raise the budget or stop earlier")
            self._seen.add(arch.id)
            self._pending[arch.id] = arch
            self._accepted(arch)
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
            self._update_archive(cand)
            self._observe(cand)

    def objective_vector(self, cand: Candidate) -> Vector | None:
        """``cand`` in minimisation form over ``objectives`` (None when it failed or lacks a value)."""
        return obj.minimisation_vector(cand, self.objectives)

    def violation(self, arch: Arch) -> float:
        """How far ``arch`` is over the budget, relative; ``<= 0`` when it fits."""
        if self._violation is not None:
            return float(self._violation(arch))
        return 0.0 if self.is_feasible(arch) else 1.0

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state; ``load_state_dict`` on a fresh searcher of the same config restores it."""
        return {
            "name": self.name,
            "objectives": list(self.objectives),
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "seen": sorted(self._seen),
            "pending": [a.to_dict() for a in self._pending.values()],
            "n_told": self.n_told,
            "archive": [[a.to_dict(), list(v)] for a, v in self.archive],
            "own": self._state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise BadInputError(f"state is from searcher '{state.get('name')}', not '{self.name}'")
        if tuple(state.get("objectives", self.objectives)) != self.objectives:
            raise BadInputError(f"state optimises {state['objectives']}, this searcher {list(self.objectives)}; "
                                "create the searcher with the same objectives")
        self.seed = int(state.get("seed", self.seed))  # searchers may derive generators from the seed
        self.rng.bit_generator.state = state["rng"]
        self._seen = set(state["seen"])
        self._pending = {a.id: a for a in (Arch.from_dict(d) for d in state["pending"])}
        self.n_told = int(state["n_told"])
        self.archive = [(Arch.from_dict(a), tuple(float(x) for x in v)) for a, v in state.get("archive", [])]
        self._load_state(state["own"])

    # --- bookkeeping --------------------------------------------------------------------------
    def _novelty(self, arch: Arch) -> str | None:
        """``pending`` or ``told`` when ``arch`` was asked before, else None."""
        return "pending" if arch.id in self._pending else "told" if arch.id in self._seen else None

    def _repair(self, arch: Arch) -> Arch:
        """The first arch on ``space.shrink``'s path from ``arch`` that fits the budget (``repair``)."""
        measure = self._violation  # how far over the budget; None: the space's analytic MACs
        if self._cheapest is None:
            self._cheapest = self.space.cheapest(measure)
        last = arch
        for last in self.space.shrink(arch, self.rng, measure, self._cheapest):
            if self.is_feasible(last):
                self.n_repaired += 1
                return last
        excess = self.violation(last) if self._violation is not None else 0.0  # 0: over an unmeasured limit
        over = f"is {excess:.1%} over it" if excess > 0 else "does not fit"
        raise SearchExhaustedError(
            f"{self.name} cannot repair an arch into the budget: even the cheapest arch of space "
            f"'{self.space.name}', {self.space.format_arch(last)}, {over}; raise the budget", cheapest=last)

    def _update_archive(self, cand: Candidate) -> None:
        vector = self.objective_vector(cand)
        if vector is None:
            return
        items = [*self.archive, (cand.arch, vector)]
        self.archive = [items[i] for i in nondominated([v for _, v in items])]

    # --- hooks for subclasses -----------------------------------------------------------------
    @abstractmethod
    def _propose(self) -> Arch:
        """One proposal (feasibility and novelty are checked by :meth:`ask`)."""

    def _accepted(self, arch: Arch) -> None:
        """The last proposal was kept by :meth:`ask` (it is now pending)."""

    def _rejected(self, arch: Arch, why: str) -> None:
        """The last proposal was turned down: ``why`` is ``infeasible`` (over the budget), ``pending``
        (asked, not yet told) or ``told`` (evaluated before)."""

    def _observe(self, cand: Candidate) -> None:
        """Learn from one told candidate (default: nothing)."""

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass
