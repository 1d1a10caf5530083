"""``optuna-tpe`` and ``optuna-nsga2``: Optuna samplers over the space's integer encoding, ask/tell.

Each gene is an ``IntDistribution`` within ``space.bounds`` (named after the gene where the space
has named genes), asked with ``study.ask(fixed_distributions)`` and reported with ``study.tell``.
The study's directions follow the searcher's ``objectives``: proxy scores ``maximize``, cost
metrics ``minimize``; ``optuna-tpe`` optimises one objective unless given several (multi-objective
TPE), ``optuna-nsga2`` always at least ``(objective, macs)``.

**Where the study lives.** With ``workdir`` (``search`` passes the run directory) the study is an
Optuna ``JournalStorage`` on ``JournalFileBackend(workdir / "optuna.journal")``: every trial is
appended to that file as it is created and told, so a killed run keeps its study. Without it the
study is in memory and ``state_dict`` carries its trials.

**Resume.** ``search --resume`` replays the run's journal through a *fresh* searcher of the same
seed. A fresh searcher on an existing study therefore re-uses the stored trials, in order, before
it asks the sampler for anything: each stored trial that was an evaluation is proposed again (the
caller finds it in its journal and tells it; a trial already told is not told twice), stored
internal trials (below) are skipped, and a trial that was running when the run was killed is
finished now. The study ends up exactly as in an uninterrupted run, with no duplicate trials.

**Determinism per seed.** Before each new trial the study gets a fresh sampler seeded from
``(seed, trial number)``: a trial's parameters are a function of the seed and the study's history
only, so a resumed run asks what the uninterrupted one would have.

**Budget as a constraint** (``constraint_handling = "constraints"``): an arch over the budget is
never evaluated; its trial is told with the constraint ``budget = violation(arch) > 0`` via
``Trial.set_constraint`` (Optuna's constrained TPE and NSGA-II rank it behind every feasible trial)
and zeros as values. **Never the same arch twice:** a trial whose arch was evaluated before is told
that earlier result; one whose arch is still being evaluated waits for it. These are the internal
trials, marked ``studentnas:kind`` = ``infeasible`` / ``duplicate``. When the last 25 trials were all
internal (the sampler is stuck on known archs), the next trial is a random arch (seeded from
``(seed, trial number)``) enqueued with ``study.enqueue_trial``. Failed candidates are told
``TrialState.FAIL``.

Example:
    >>> from studentnas import get_space
    >>> s = OptunaTPESearcher(get_space("nb201"), seed=0, objective="score")
    >>> len({a.id for a in s.ask(3)})
    3
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

import numpy as np

from studentnas.core import objectives as obj
from studentnas.core.arch import Arch
from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SEARCHERS
from studentnas.core.space import GeneSpace, SearchSpace
from studentnas.searchers.base import Searcher

STUDY_NAME = "studentnas"
JOURNAL_FILE = "optuna.journal"
KIND, ARCH = "studentnas:kind", "studentnas:arch"  # trial user attributes
FALLBACK_AFTER = 25  # internal trials in a row before a random trial is enqueued


def _trial_seed(seed: int, name: str, number: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}:{number}".encode()).digest()[:4], "little")


@functools.cache
def _memory_journal_class() -> type:
    from optuna.storages.journal import BaseJournalBackend

    class MemoryJournal(BaseJournalBackend):
        """Optuna's journal kept in a list: an in-memory study whose whole state is JSON logs."""

        def __init__(self, logs: list[dict[str, Any]] | None = None):
            self.logs = [dict(log) for log in logs or []]

        def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
            return self.logs[log_number_from:]

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            self.logs.extend(logs)

    return MemoryJournal


def _memory_journal(logs: list[dict[str, Any]] | None = None) -> Any:
    return _memory_journal_class()(logs)


class _OptunaSearcher(Searcher):
    """Shared machinery of the Optuna searchers; subclasses say which sampler to use."""

    constraint_handling = "constraints"
    uses_workdir = True

    def __init__(self, space: SearchSpace, **kwargs: Any):
        super().__init__(space, **kwargs)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per trial
        lower, upper = space.bounds
        genes = [g.name for g in space.genes()] if isinstance(space, GeneSpace) else []
        self._names = genes if len(genes) == len(lower) else [f"x{i}" for i in range(len(lower))]
        self._dists = {n: optuna.distributions.IntDistribution(int(lo), int(hi))
                       for n, lo, hi in zip(self._names, lower, upper)}
        self._open_study()
        self._trial_of: dict[str, int] = {}  # pending arch id -> its trial number
        self._waiting: dict[str, list[int]] = {}  # pending arch id -> duplicate trials waiting for its result
        self._known: dict[str, list[float] | None] = {}  # told arch id -> its values (None: it failed)
        self._current = -1  # trial number of the last proposal
        self._streak = 0  # internal trials in a row
        self._last_duplicate: Arch | None = None  # the arch of the last trial, when it was a duplicate

    # --- the study ------------------------------------------------------------------------------
    def _open_study(self, logs: list[dict[str, Any]] | None = None) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._backend: Any = JournalFileBackend(str(self.workdir / JOURNAL_FILE))
        else:
            self._backend = _memory_journal(logs)
        storage = JournalStorage(self._backend)
        directions = [obj.direction(o) for o in self.objectives]
        self._study = optuna.create_study(storage=storage, study_name=STUDY_NAME, directions=directions,
                                          sampler=self._sampler(0), load_if_exists=True)
        identity = {"searcher": self.name, "objectives": list(self.objectives), "seed": self.seed,
                    "params": self._names}
        stored = self._study.user_attrs.get("studentnas")
        if stored is None:
            self._study.set_user_attr("studentnas", identity)
        elif stored != identity:
            raise BadInputError(f"the Optuna study in {self.workdir / JOURNAL_FILE} was made with {stored}, not "
                                f"{identity}; use a new run directory (or the run's own settings)")
        self._stored = self._study.get_trials(deepcopy=False)  # an earlier session's trials, re-used in order
        self._cursor = 0
        self._next_number = len(self._stored)
        self._reused_finished: set[int] = set()

    def _sampler(self, number: int) -> Any:
        raise NotImplementedError

    def _live(self, number: int) -> Any:
        import optuna

        # Trial(study, trial_id) is how Optuna itself wraps a stored trial; the id is FrozenTrial's private field
        frozen = self._study.get_trials(deepcopy=False)[number]
        return optuna.trial.Trial(self._study, frozen._trial_id)

    def _finish(self, number: int, values: list[float] | None, kind: str, violation: float = 0.0) -> None:
        """Tell trial ``number``: ``values`` (None: FAIL), the budget constraint and what kind of trial it was."""
        from optuna.trial import TrialState

        trial = self._live(number)
        trial.set_user_attr(KIND, kind)
        if values is None:
            self._study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_constraint("budget", float(violation))
        self._study.tell(trial, list(values))

    def _values(self, cand: Candidate) -> list[float] | None:
        values = [obj.value(cand, o) for o in self.objectives]
        return values if cand.ok and all(math.isfinite(v) for v in values) else None

    def _vector_to_arch(self, params: dict[str, Any]) -> Arch:
        return self.space.decode([int(params[n]) for n in self._names])

    # --- Searcher hooks ---------------------------------------------------------------------------
    def _propose(self) -> Arch:
        while self._cursor < len(self._stored):  # re-use an earlier session's trials first
            frozen = self._stored[self._cursor]
            self._cursor += 1
            if frozen.state.is_finished() and ARCH not in frozen.user_attrs:  # an internal trial, already told
                self._note_internal(self._vector_to_arch(frozen.params), frozen.user_attrs.get(KIND))
                continue
            if frozen.state.is_finished():
                self._reused_finished.add(frozen.number)
            self._current = frozen.number
            return self._vector_to_arch(frozen.params)
        number = self._next_number
        self._next_number += 1
        replacement = self._replacement(number)
        if replacement is not None:
            self._study.enqueue_trial({n: int(v) for n, v in zip(self._names, self.space.encode(replacement))})
        self._study.sampler = self._sampler(number)
        trial = self._study.ask(self._dists)
        if trial.number != number:
            raise RuntimeError(f"Optuna study {STUDY_NAME} got trial {trial.number}, expected {number}: "
                               "is another process writing to it?")
        self._current = number
        return self._vector_to_arch(trial.params)

    def _replacement(self, number: int) -> Arch | None:
        """The arch to enqueue instead of asking the sampler: a mutant of a duplicate the sampler just
        proposed, or a random arch after ``FALLBACK_AFTER`` internal trials in a row; else None."""
        if self._streak >= FALLBACK_AFTER:
            return self.space.sample(np.random.default_rng(_trial_seed(self.seed, "fallback", number)))
        if self._last_duplicate is not None:
            return self.space.mutate(self._last_duplicate, np.random.default_rng(_trial_seed(self.seed, "mutant",
                                                                                                    number)))
        return None

    def _note_internal(self, arch: Arch, kind: str | None) -> None:
        self._streak += 1
        self._last_duplicate = arch if kind == "duplicate" else None

    def _rejected(self, arch: Arch, why: str) -> None:
        number = self._current
        self._note_internal(arch, "infeasible" if why == "infeasible" else "duplicate")
        if number in self._reused_finished:
            return
        if why == "infeasible":
            zeros = [0.0] * len(self.objectives)
            self._finish(number, zeros, "infeasible", violation=max(self.violation(arch), 1e-9))
        elif why == "told":
            self._finish(number, self._known[arch.id], "duplicate")
        else:
            self._live(number).set_user_attr(KIND, "duplicate")
            self._waiting.setdefault(arch.id, []).append(number)

    def _accepted(self, arch: Arch) -> None:
        number = self._current
        self._streak, self._last_duplicate = 0, None
        self._trial_of[arch.id] = number
        if number not in self._reused_finished:
            self._live(number).set_user_attr(ARCH, arch.id)

    def _observe(self, cand: Candidate) -> None:
        values = self._known[cand.id] = self._values(cand)
        number = self._trial_of.pop(cand.id)
        if number not in self._reused_finished:
            self._finish(number, values, "evaluated")
        for other in self._waiting.pop(cand.id, []):
            self._finish(other, values, "duplicate")

    def _state(self) -> dict[str, Any]:
        return {"journal": list(self._backend.read_logs(0)),
                "n_trials": len(self._study.get_trials(deepcopy=False)), "n_stored": len(self._stored),
                "cursor": self._cursor, "next_number": self._next_number,
                "reused_finished": sorted(self._reused_finished), "trial_of": self._trial_of,
                "waiting": self._waiting, "known": self._known, "current": self._current, "streak": self._streak,
                "last_duplicate": self._last_duplicate.to_dict() if self._last_duplicate is not None else None}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore the study from the state's journal: in memory, or into an empty work directory; a
        work directory that already holds the same study (as many trials) is kept as it is."""
        n_trials = len(self._study.get_trials(deepcopy=False))
        if self.workdir is None:
            self._open_study(state["journal"])
        elif n_trials == 0:
            (self.workdir / JOURNAL_FILE).unlink()
            self._backend.append_logs(state["journal"])
            self._open_study()
        elif n_trials != int(state["n_trials"]):
            raise BadInputError(f"the Optuna study in {self.workdir} has {n_trials} trials, the state "
                                f"{state['n_trials']}; load the state into a searcher on an empty or the same study")
        self._stored = self._study.get_trials(deepcopy=False)[: int(state["n_stored"])]
        self._cursor = int(state["cursor"])
        self._next_number = int(state["next_number"])
        self._reused_finished = set(state["reused_finished"])
        self._trial_of = {k: int(v) for k, v in state["trial_of"].items()}
        self._waiting = {k: [int(x) for x in v] for k, v in state["waiting"].items()}
        self._known = dict(state["known"])
        self._current, self._streak = int(state["current"]), int(state["streak"])
        last = state["last_duplicate"]
        self._last_duplicate = Arch.from_dict(last) if last is not None else None


@SEARCHERS.register()
class OptunaTPESearcher(_OptunaSearcher):
    """Optuna's TPE (multi-objective with several objectives), the budget as a constraint."""

    name = "optuna-tpe"

    def _sampler(self, number: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=_trial_seed(self.seed, self.name, number))


@SEARCHERS.register()
class OptunaNSGA2Searcher(_OptunaSearcher):
    """Optuna's NSGA-II sampler: proxy score up, cost down, the budget as a constraint."""

    name = "optuna-nsga2"
    multi_objective = True

    def __init__(self, space: SearchSpace, *, population_size: int = 20, **kwargs: Any):
        if population_size < 2:
            raise BadInputError(f"optuna-nsga2 needs population_size >= 2, got {population_size}")
        self.population_size = int(population_size)
        super().__init__(space, **kwargs)

    def _sampler(self, number: int) -> Any:
        import optuna

        return optuna.samplers.NSGAIISampler(population_size=self.population_size,
                                             seed=_trial_seed(self.seed, self.name, number))


__all__ = ["JOURNAL_FILE", "OptunaNSGA2Searcher", "OptunaTPESearcher"]
