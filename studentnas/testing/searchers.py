"""Contract every ``Searcher`` must satisfy: determinism per seed, budget respect, no re-evaluation
of a known arch, and ``state_dict`` round trips.

The candidates it tells are scored by a deterministic function of the arch (the sum of its
encoding), which is enough to drive any searcher; the contract is about bookkeeping, not quality.

Example:
    >>> from studentnas import get_space
    >>> from studentnas.searchers.random import RandomSearcher
    >>> check_searcher(RandomSearcher, get_space("nb201"), steps=5)
"""

from __future__ import annotations

import json

from studentnas.arch import Arch
from studentnas.candidate import Candidate
from studentnas.searchers.base import Searcher
from studentnas.space import SearchSpace


def _told(space: SearchSpace, arch: Arch, objective: str) -> Candidate:
    cost = space.cost(arch)
    return Candidate(arch=arch, cost=cost, scores={objective: float(space.encode(arch).sum())})


def _drive(searcher: Searcher, space: SearchSpace, steps: int, batch: int) -> list[str]:
    ids = []
    while len(ids) < steps:
        archs = searcher.ask(batch)
        searcher.tell([_told(space, a, searcher.objective) for a in archs])
        ids.extend(a.id for a in archs)
    return ids


def check_searcher(cls: type[Searcher], space: SearchSpace, steps: int = 40, batch: int = 2, seed: int = 3) -> None:
    """Run the contract for searcher class ``cls`` on ``space``."""
    # a budget that cuts the space: at most the median MACs of a few samples
    import numpy as np

    probe = [space.cost(space.sample(np.random.default_rng(i))).macs for i in range(16)]
    limit = float(np.median(probe))

    def feasible(arch: Arch) -> bool:
        return space.cost(arch).macs <= limit

    make = lambda s: cls(space, seed=s, is_feasible=feasible, objective="score")  # noqa: E731
    first = _drive(make(seed), space, steps, batch)
    assert first == _drive(make(seed), space, steps, batch), f"{cls.name}: same seed must ask the same archs"
    assert len(set(first)) == len(first), f"{cls.name}: an arch was asked twice"
    searcher = make(seed)
    asked: list[Arch] = []
    for _ in range(steps // batch):
        archs = searcher.ask(batch)
        asked.extend(archs)
        assert all(feasible(a) for a in archs), f"{cls.name}: asked an arch over the budget"
        searcher.tell([_told(space, a, "score") for a in archs])
    state = json.loads(json.dumps(searcher.state_dict()))
    clone = make(seed + 100)
    clone.load_state_dict(state)
    next_a, next_b = searcher.ask(batch), clone.ask(batch)
    assert [a.id for a in next_a] == [a.id for a in next_b], f"{cls.name}: state_dict round trip changed the asks"
    assert not {a.id for a in next_a} & {a.id for a in asked}, f"{cls.name}: re-asked an evaluated arch"
    try:
        searcher.tell([_told(space, asked[0], "score")])
    except ValueError:
        pass
    else:
        raise AssertionError(f"{cls.name}: telling an arch that is not pending must raise ValueError")
