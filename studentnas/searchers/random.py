"""``random``: uniform samples from the space, repaired into the budget, drawn again until new.

Budget handling: ``repair`` (see :mod:`studentnas.searchers.base`): a sample over the budget is shrunk
toward the space's cheapest arch, one gene at a time, until it fits; an already-asked one is drawn
again. Samples within the budget are uniform over it; repaired ones lie near its edge. It ignores the
objectives; like every searcher it keeps the Pareto archive of what it was told.

Example:
    >>> from studentnas import get_space
    >>> s = RandomSearcher(get_space("nb201"), seed=1)
    >>> len({a.id for a in s.ask(5)})
    5
"""

from __future__ import annotations

from studentnas.core.arch import Arch
from studentnas.core.registry import SEARCHERS
from studentnas.searchers.base import Searcher


@SEARCHERS.register()
class RandomSearcher(Searcher):
    """Random search: the baseline every searcher must beat."""

    name = "random"
    constraint_handling = "repair"

    def _propose(self) -> Arch:
        return self.space.sample(self.rng)
