"""Fitting the weights of a rank combination of proxies on *tune* cells only.

A fitted combination is the weighted mean of per-proxy normalised ranks
(:func:`~studentnas.bench.correlation.combine_ranks`) whose weights were chosen to maximise the
Spearman correlation with accuracy on the ``tune`` cells of a benchmark. It is then judged on the
disjoint ``report`` cells (:mod:`studentnas.bench.summary` splits cells by a hash of the arch), so
the reported figure is a held-out one.

The search is coordinate ascent over a small weight grid, which keeps the result readable (a few
proxies with round weights) and deterministic:

1. start from the best single proxy on the tune cells (weight 1, every other weight 0);
2. for each proxy in name order, try every weight of the grid with the other weights fixed and keep
   the one with the highest tune Spearman (ties keep the current weight, so nothing changes
   without a strict gain);
3. repeat step 2 until a round changes nothing (at most ``rounds`` rounds).

Example:
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=200)
    >>> scores = {"a": truth + rng.normal(size=200), "b": truth + rng.normal(size=200), "noise": rng.normal(size=200)}
    >>> fit = fit_rank_weights(scores, truth)
    >>> sorted(fit.weights), fit.tune_spearman > max(fit.single_spearman.values())
    (['a', 'b'], True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from studentnas.bench.correlation import combine_ranks, spearman
from studentnas.core.errors import BadInputError

WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
MAX_ROUNDS = 4
MIN_TUNE_CELLS = 20


@dataclass(frozen=True)
class RankFit:
    """A fitted rank combination: ``weights`` (only the non-zero ones), its Spearman on the tune cells,
    each candidate proxy's own tune Spearman, and the number of tune cells it was fitted on."""

    weights: dict[str, float]
    tune_spearman: float
    single_spearman: dict[str, float]
    n_tune: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``fit[a:1+b:0.5]``: the label the summary uses for this combination."""
        return "fit[" + "+".join(f"{p}:{w:g}" for p, w in self.weights.items()) + "]"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "weights": dict(self.weights), "tune_spearman": self.tune_spearman,
                "single_spearman": dict(self.single_spearman), "n_tune": self.n_tune, "history": list(self.history),
                "grid": list(WEIGHT_GRID), "method": "coordinate ascent of rank-mean weights on tune cells"}


def _tune_spearman(scores: Mapping[str, np.ndarray], weights: Mapping[str, float], truth: np.ndarray) -> float:
    used = {p: w for p, w in weights.items() if w > 0}
    if not used:
        return -math.inf
    value = spearman(combine_ranks({p: scores[p] for p in used}, used), truth)
    return value if math.isfinite(value) else -math.inf


def fit_rank_weights(scores: Mapping[str, np.ndarray], truth: np.ndarray, grid: Sequence[float] = WEIGHT_GRID,
                     rounds: int = MAX_ROUNDS) -> RankFit:
    """Weights of a rank combination of ``scores`` (proxy -> one value per tune cell) that maximise the
    Spearman correlation with ``truth`` on these cells. See the module docstring for the procedure."""
    truth = np.asarray(truth, dtype=np.float64)
    names = sorted(scores)
    if not names:
        raise BadInputError("--fit needs at least one proxy; pass e.g. --fit nwot,synflow,meco")
    arrays = {p: np.asarray(scores[p], dtype=np.float64) for p in names}
    n = int(np.isfinite(truth).sum())
    if n < MIN_TUNE_CELLS:
        raise BadInputError(f"--fit needs at least {MIN_TUNE_CELLS} tune cells to fit weights on, got {n}; raise "
                            "--samples or lower --holdout-fraction")
    single = {p: spearman(arrays[p], truth) for p in names}
    finite = {p: v for p, v in single.items() if math.isfinite(v)}
    if not finite:
        raise BadInputError(f"--fit: none of {names} has a defined correlation on the tune cells (all failed?)")
    start = max(finite, key=lambda p: (finite[p], p))
    weights = {p: (1.0 if p == start else 0.0) for p in names}
    best = _tune_spearman(arrays, weights, truth)
    history = [{"round": 0, "tune_spearman": best}]
    for round_no in range(1, rounds + 1):
        changed = False
        for proxy in names:
            for w in grid:
                trial = {**weights, proxy: float(w)}
                value = _tune_spearman(arrays, trial, truth)
                if value > best + 1e-12:
                    best, weights, changed = value, trial, True
        history.append({"round": round_no, "tune_spearman": best})
        if not changed:
            break
    kept = {p: w for p, w in weights.items() if w > 0}
    return RankFit(weights=kept, tune_spearman=best, single_spearman=single, n_tune=n, history=history)
