"""Contract every ``Searcher`` must satisfy: determinism per seed, budget respect, no re-evaluation
of a known arch, ``state_dict`` round trips, resume by replay, and a correct Pareto archive; with
one objective or several.

The candidates it tells are scored by a deterministic function of the arch (the sum of its
encoding), and every seventh one is told as failed; that is enough to drive any searcher: the
contract is about bookkeeping, not quality. Searchers with ``uses_workdir`` are checked both in
memory and with a work directory (their state then lives in files there; at most 12 steps).

Resume by replay is how ``studentnas search --resume`` works: a *fresh* searcher with the same seed
(and, for ``uses_workdir`` searchers, the run's work directory as it was) is driven through the
recorded asks and tells; it must ask the same archs, then go on exactly as the original.

Example:
    >>> from studentnas import get_space
    >>> from studentnas.searchers.random import RandomSearcher
    >>> check_searcher(RandomSearcher, get_space("nb201"), steps=6)
    >>> check_searcher(RandomSearcher, get_space("nb201"), steps=6, objectives=["score", "macs"])
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from studentnas.core.arch import Arch
from studentnas.core.candidate import FAILED, Candidate
from studentnas.core.pareto import front
from studentnas.core.space import SearchSpace
from studentnas.searchers.base import Searcher

Make = Callable[[int, "Path | None"], Searcher]


def _told(space: SearchSpace, arch: Arch, objective: str = "score") -> Candidate:
    cost = space.cost(arch)
    total = float(space.encode(arch).sum())
    if int(total) % 7 == 3:  # about one in seven: a failure
        return Candidate(arch=arch, cost=cost, status=FAILED, reason="contract: failed on purpose")
    return Candidate(arch=arch, cost=cost, scores={objective: total})


def _drive(searcher: Searcher, space: SearchSpace, steps: int, batch: int) -> list[list[Candidate]]:
    """Ask ``batch`` and tell them, ``steps // batch`` times; returns the told batches."""
    told = []
    for _ in range(max(1, steps // batch)):
        archs = searcher.ask(batch)
        cands = [_told(space, a, searcher.objective) for a in archs]
        searcher.tell(cands)
        told.append(cands)
    return told


def _ids(batches: Sequence[Sequence[Candidate]]) -> list[str]:
    return [c.id for b in batches for c in b]


def check_searcher(cls: type[Searcher], space: SearchSpace, steps: int = 40, batch: int = 2, seed: int = 3,
                   objectives: Sequence[str] | None = None) -> None:
    """Run the contract for searcher class ``cls`` on ``space`` (with ``objectives`` when given)."""
    probe = [space.cost(space.sample(np.random.default_rng(i))).macs for i in range(16)]
    limit = float(np.median(probe))  # a budget that cuts the space: the median MACs of a few samples

    def feasible(arch: Arch) -> bool:
        return space.cost(arch).macs <= limit

    def violation(arch: Arch) -> float:
        return space.cost(arch).macs / limit - 1.0

    def make(s: int, workdir: Path | None) -> Searcher:
        kwargs = {"objectives": list(objectives)} if objectives else {"objective": "score"}
        return cls(space, seed=s, is_feasible=feasible, violation=violation, workdir=workdir, **kwargs)

    with tempfile.TemporaryDirectory(prefix="studentnas-contract-") as tmp:
        for use_dir in ([False, True] if cls.uses_workdir else [False]):
            count = iter(range(10**6))

            def fresh(use_dir: bool = use_dir, count=count) -> Path | None:  # a new work directory (or None)
                return Path(tmp) / f"{int(use_dir)}-{next(count)}" if use_dir else None

            where = "with a workdir" if use_dir else "in memory"
            n = min(steps, 12) if use_dir else steps  # files are fsynced on every trial: keep it short
            _check_one(cls.name, make, fresh, space, n, batch, seed, feasible, where)


def _check_one(name: str, make: Make, fresh: Callable[[], Path | None], space: SearchSpace, steps: int,
               batch: int, seed: int, feasible: Callable[[Arch], bool], where: str) -> None:
    # determinism, novelty, budget
    first = _drive(make(seed, fresh()), space, steps, batch)
    again = _drive(make(seed, fresh()), space, steps, batch)
    assert _ids(first) == _ids(again), f"{name} ({where}): same seed must ask the same archs"
    assert len(set(_ids(first))) == len(_ids(first)), f"{name} ({where}): an arch was asked twice"
    assert all(feasible(c.arch) for b in first for c in b), f"{name} ({where}): asked an arch over the budget"

    # state_dict round trip; no re-asking of an evaluated arch; telling a stranger raises
    searcher = make(seed, fresh())
    told = _drive(searcher, space, steps, batch)
    state = json.loads(json.dumps(searcher.state_dict()))
    clone = make(seed + 100, fresh())
    clone.load_state_dict(state)
    next_a, next_b = searcher.ask(batch), clone.ask(batch)
    assert [a.id for a in next_a] == [a.id for a in next_b], f"{name} ({where}): state_dict round trip changed the asks"
    assert not {a.id for a in next_a} & set(_ids(told)), f"{name} ({where}): re-asked an evaluated arch"
    try:
        searcher.tell([told[0][0]])
    except ValueError:
        pass
    else:
        raise AssertionError(f"{name}: telling an arch that is not pending must raise ValueError")

    # the Pareto archive is the front of what was told
    every = [c for b in told for c in b]
    want = {c.id for c in front(every, searcher.objectives)}
    got = {a.id for a, _ in searcher.archive}
    assert got == want, f"{name} ({where}): Pareto archive {sorted(got)} != front of the told candidates {sorted(want)}"

    _check_replay(name, make, fresh, space, steps, batch, seed, where)


def _check_replay(name: str, make: Make, fresh: Callable[[], Path | None], space: SearchSpace, steps: int,
                  batch: int, seed: int, where: str) -> None:
    """A fresh searcher replaying the recorded asks and tells (as ``search --resume`` does) asks the same."""
    workdir = fresh()
    original = make(seed, workdir)
    told = _drive(original, space, steps, batch)
    interrupted = original.ask(batch)  # asked, never told: the run was killed mid-evaluation
    copy = None
    if workdir is not None:
        copy = workdir.with_name(workdir.name + "-resumed")
        shutil.copytree(workdir, copy)
    original.tell([_told(space, a, original.objective) for a in interrupted])
    expected = original.ask(batch)

    resumed = make(seed, copy)
    journal = {c.id: c for b in told for c in b}
    for b in told:
        archs = resumed.ask(batch)
        assert [a.id for a in archs] == [c.id for c in b], f"{name} ({where}): a resumed run asked other archs"
        resumed.tell([journal[a.id] for a in archs])
    archs = resumed.ask(batch)
    assert [a.id for a in archs] == [a.id for a in interrupted], \
        f"{name} ({where}): a resumed run asked other archs than the interrupted evaluations"
    resumed.tell([_told(space, a, resumed.objective) for a in archs])
    assert [a.id for a in resumed.ask(batch)] == [a.id for a in expected], \
        f"{name} ({where}): a resumed run went on differently from the uninterrupted one"
