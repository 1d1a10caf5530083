"""Searchers behind one ask/tell interface (see :mod:`studentnas.searchers.base`).

May import: ``core`` only (never ``distill`` or a plugin); the engine finds them through ``SEARCHERS``.
"""

from studentnas.searchers.base import Searcher

__all__ = ["Searcher"]
