"""Searchers behind one ask/tell interface (see :mod:`studentnas.searchers.base`)."""

from studentnas.searchers.base import Searcher

__all__ = ["Searcher"]
