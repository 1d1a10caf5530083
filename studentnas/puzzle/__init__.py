"""Puzzle: blockwise local distillation (BLD) of a replacement library, and a MIP that assembles the student.

May import: everything below it (``distill``, ``lm``, ``engine``, ...), not ``bench``, ``studies`` or ``cli``.

Stages, each resumable from the run directory (``RUN/puzzle/``):

1. :mod:`~studentnas.puzzle.decompose` cuts the teacher into prefix, parent layers and suffix, and a
   family plugin (:mod:`studentnas.puzzle.families`) lists cheaper replacements for every layer
   (:mod:`~studentnas.puzzle.library`).
2. BLD trains every replacement alone to reproduce its parent layers from the teacher's own input
   activations.
3. Scoring substitutes one replacement at a time into the teacher and measures KL to the teacher,
   plus the replacement's params, MACs, latency and memory.
4. :mod:`~studentnas.puzzle.mip` picks one replacement per layer span with ``scipy.optimize.milp``.
5. The student is assembled from the BLD weights, checked against the budget, exported and distilled.
"""
