"""``random``: uniform samples from the space, resampled until within budget and new.

Budget handling: ``resample`` (an over-budget or already-asked sample is drawn again). It ignores
the objectives; like every searcher it keeps the Pareto archive of what it was told.

Example:
    >>> from studentnas import get_space
    >>> s = RandomSearcher(get_space("nb201"), seed=1)
    >>> len({a.id for a in s.ask(5)})
    5
"""

from __future__ import annotations

from studentnas.arch import Arch
from studentnas.registry import SEARCHERS
from studentnas.searchers.base import Searcher


@SEARCHERS.register("random")
class RandomSearcher(Searcher):
    """Random search: the baseline every searcher must beat."""

    name = "random"

    def _propose(self) -> Arch:
        return self.space.sample(self.rng)
