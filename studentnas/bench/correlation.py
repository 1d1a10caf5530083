"""Rank agreement between proxy scores and ground-truth accuracy, NaN-safe.

Every function takes two equally long 1-D arrays (``scores`` of a proxy, ``truth`` accuracies) and
ignores the cells where either value is not finite: a failed proxy evaluation is excluded, never
imputed. :func:`summarize` reports how many cells were used (``n``) and how many failed.

Ties are handled exactly rather than by an arbitrary sort order, which matters for the cost
baselines: ``params`` and ``macs`` take only a few dozen distinct values over NAS-Bench-201.

* Spearman's rho uses average ranks and Kendall's tau is tau-b (both from :mod:`scipy.stats`).
* The top-k hit rate and regret@k are *expectations over random tie-breaking*: a cell tied at the
  k-th place enters the top-k with probability (free slots) / (tied cells).

Example:
    >>> truth = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> round(spearman(np.array([1.0, 2.0, 3.0, 5.0, 4.0]), truth), 3), round(kendall(np.arange(5.0), truth), 6)
    (0.9, 1.0)
    >>> top_k_hit_rate(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), truth, k=2)
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from studentnas.core.errors import BadInputError

TOP_FRACTION = 0.1
BANDS = (0.1, 0.2)  # cost bands of the within-band pairwise accuracy: MACs within 10 % and 20 %


def _pair(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finite pairs of ``scores`` and ``truth`` as float arrays."""
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise BadInputError(f"scores {x.shape} and truth {y.shape} must be 1-D arrays of the same length")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _constant(x: np.ndarray) -> bool:
    return x.size == 0 or bool(np.all(x == x[0]))


def spearman(scores: np.ndarray, truth: np.ndarray) -> float:
    """Spearman's rank correlation on the finite pairs; nan with fewer than 2 pairs or a constant side.

    Example:
        >>> spearman(np.array([1.0, np.nan, 2.0, 3.0]), np.array([3.0, 0.0, 2.0, 1.0]))
        -1.0
    """
    x, y = _pair(scores, truth)
    if len(x) < 2 or _constant(x) or _constant(y):
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def kendall(scores: np.ndarray, truth: np.ndarray) -> float:
    """Kendall's tau-b on the finite pairs; nan with fewer than 2 pairs or a constant side.

    Example:
        >>> round(kendall(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])), 4)  # 5 of 6 pairs agree
        0.6667
    """
    x, y = _pair(scores, truth)
    if len(x) < 2 or _constant(x) or _constant(y):
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def top_k(n: int, fraction: float = TOP_FRACTION) -> int:
    """How many cells the top ``fraction`` of ``n`` holds: ``round(fraction * n)``, at least 1.

    Example:
        >>> top_k(200), top_k(1000), top_k(6)
        (20, 100, 1)
    """
    if not 0 < fraction <= 1:
        raise BadInputError(f"top fraction {fraction!r} must be in (0, 1], e.g. 0.1 for the top 10%")
    return max(1, math.floor(fraction * n + 0.5))


def inclusion_probability(values: np.ndarray, k: int) -> np.ndarray:
    """For each value, the probability that it is among the ``k`` largest when ties break at random.

    Example:
        >>> inclusion_probability(np.array([3.0, 2.0, 2.0, 2.0, 1.0]), 2).tolist()
        [1.0, 0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 0.0]
    """
    values = np.asarray(values, dtype=np.float64)
    k = min(k, len(values))
    if k <= 0:
        return np.zeros(len(values))
    threshold = np.sort(values)[::-1][k - 1]
    above, tied = values > threshold, values == threshold
    prob = above.astype(np.float64)
    prob[tied] = (k - int(above.sum())) / int(tied.sum())
    return prob


def top_k_hit_rate(scores: np.ndarray, truth: np.ndarray, k: int | None = None,
                   fraction: float = TOP_FRACTION) -> float:
    """The share of the truly best ``k`` cells that the proxy also ranks in its best ``k``.

    ``k`` defaults to :func:`top_k` of the number of finite pairs. Ties on either side count in
    expectation (random tie-breaking), so a constant proxy scores the chance level ``k / n``.

    Example:
        >>> truth = np.arange(10.0)
        >>> top_k_hit_rate(truth, truth, k=3), top_k_hit_rate(np.zeros(10), truth, k=3)
        (1.0, 0.3)
    """
    x, y = _pair(scores, truth)
    if len(x) == 0:
        return math.nan
    k = top_k(len(x), fraction) if k is None else min(int(k), len(x))
    return float(np.dot(inclusion_probability(x, k), inclusion_probability(y, k)) / k)


def regret_at_k(scores: np.ndarray, truth: np.ndarray, k: int | None = None, fraction: float = TOP_FRACTION) -> float:
    """Best accuracy overall minus the best accuracy among the proxy's top ``k`` (in accuracy points).

    The expected value under random tie-breaking of the proxy's scores at the k-th place: of ``m``
    tied cells competing for ``r`` slots, the j-th best (by truth) is the best one picked with
    probability C(m-j, r-1) / C(m, r).

    Example:
        >>> truth = np.array([90.0, 80.0, 70.0, 60.0])
        >>> regret_at_k(np.array([1.0, 2.0, 3.0, 4.0]), truth, k=1), regret_at_k(np.zeros(4), truth, k=1)
        (30.0, 15.0)
    """
    x, y = _pair(scores, truth)
    if len(x) == 0:
        return math.nan
    k = top_k(len(x), fraction) if k is None else min(int(k), len(x))
    threshold = np.sort(x)[::-1][k - 1]
    sure, tied = y[x > threshold], np.sort(y[x == threshold])[::-1]
    base = float(sure.max()) if sure.size else -math.inf
    slots, m = k - sure.size, tied.size
    expected, prob = 0.0, slots / m  # prob: P(the j-th best tied cell is the best one picked), j = 1
    for j, value in enumerate(tied, start=1):
        expected += prob * max(base, float(value))
        if j >= m - slots + 1:
            break
        prob *= (m - j - slots + 1) / (m - j)
    return float(y.max()) - expected


def band_pairs(costs: np.ndarray, band: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, of cells whose costs are within ``band`` of each other: the larger
    is at most ``(1 + band)`` times the smaller (``band=0.1``: MACs within 10 %). Non-finite costs pair with none.

    Example:
        >>> i, j = band_pairs(np.array([100.0, 105.0, 111.0, 200.0]), 0.1)
        >>> list(zip(i.tolist(), j.tolist()))
        [(0, 1), (1, 2)]
    """
    c = np.asarray(costs, dtype=np.float64)
    i, j = np.triu_indices(len(c), k=1)
    lo, hi = np.minimum(c[i], c[j]), np.maximum(c[i], c[j])
    keep = np.isfinite(lo) & np.isfinite(hi) & (hi <= (1.0 + band) * lo)
    return i[keep], j[keep]


def pairwise_accuracy(scores: np.ndarray, truth: np.ndarray, costs: np.ndarray, band: float) -> tuple[float, int]:
    """How often the proxy orders a pair of similar-cost cells as the ground truth does, and how many pairs.

    The figure that matters under a budget, where every candidate sits near the budget's edge: among the pairs
    of :func:`band_pairs` (costs within ``band``) whose accuracies differ, the share the proxy puts in the same
    order (a tie in the proxy counts one half, a coin's worth). Pairs with a non-finite score or accuracy are
    left out; nan when no pair is left.

    Example:
        >>> truth = np.array([70.0, 71.0, 72.0, 90.0])
        >>> costs = np.array([100.0, 104.0, 108.0, 300.0])
        >>> pairwise_accuracy(np.array([1.0, 3.0, 2.0, 0.0]), truth, costs, 0.1)  # (0,1) (0,2) right, (1,2) wrong
        (0.6666666666666666, 3)
        >>> pairwise_accuracy(np.zeros(4), truth, costs, 0.1)  # a constant proxy is a coin
        (0.5, 3)
    """
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    i, j = band_pairs(costs, band)
    keep = np.isfinite(x[i]) & np.isfinite(x[j]) & np.isfinite(y[i]) & np.isfinite(y[j]) & (y[i] != y[j])
    i, j = i[keep], j[keep]
    if not len(i):
        return math.nan, 0
    agree = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return float(np.mean((agree + 1.0) / 2.0)), int(len(i))


def summarize(scores: np.ndarray, truth: np.ndarray, fraction: float = TOP_FRACTION, costs: np.ndarray | None = None,
              bands: Sequence[float] = BANDS) -> dict[str, float | int]:
    """Every figure of one proxy against one ground truth, as a JSON-ready dict.

    Keys: ``spearman``, ``kendall``, ``top_hit`` (top-``fraction`` hit rate), ``regret_top`` (regret
    at the same k), ``regret_at_1``, ``regret_at_5``, ``k``, ``n`` (finite pairs used) and ``n_failed``
    (cells whose score is not finite); with ``costs`` (e.g. MACs), per band of ``bands`` (``0.1``: 10 %)
    ``pairwise_10`` and ``pairs_10``: :func:`pairwise_accuracy` and its pair count. Floats are nan when
    undefined.

    Example:
        >>> s = summarize(np.array([1.0, 2.0, np.nan, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]))
        >>> s["spearman"], s["n"], s["n_failed"], s["k"]
        (1.0, 3, 1, 1)
    """
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    n = int((np.isfinite(x) & np.isfinite(y)).sum())
    out: dict[str, float | int] = {
        "spearman": spearman(x, y),
        "kendall": kendall(x, y),
        "top_hit": top_k_hit_rate(x, y, fraction=fraction) if n else math.nan,
        "regret_top": regret_at_k(x, y, fraction=fraction) if n else math.nan,
        "regret_at_1": regret_at_k(x, y, k=1) if n else math.nan,
        "regret_at_5": regret_at_k(x, y, k=5) if n else math.nan,
        "k": top_k(n, fraction) if n else 0,
        "n": n,
        "n_failed": int((~np.isfinite(x) & np.isfinite(y)).sum()),
    }
    if costs is not None:
        for band in bands:
            tag = band_tag(band)
            out[f"pairwise_{tag}"], out[f"pairs_{tag}"] = pairwise_accuracy(x, y, costs, band)
    return out


def band_tag(band: float) -> str:
    """``0.1`` -> ``"10"``: the suffix of a band's keys in :func:`summarize`."""
    return f"{100 * band:g}"


# ------------------------------------------------------------------------------------------ combinations


def parse_combination(text: str) -> dict[str, float]:
    """``"nwot+synflow"`` or ``"nwot:2+synflow:1"`` -> ``{proxy: weight}`` (weight 1 when omitted).

    Example:
        >>> parse_combination("nwot+synflow:0.5")
        {'nwot': 1.0, 'synflow': 0.5}
    """
    weights: dict[str, float] = {}
    for part in str(text).split("+"):
        name, _, weight = part.strip().partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            value = math.nan
        if not name or not math.isfinite(value) or value <= 0 or name in weights:
            raise BadInputError(
                f"combination {text!r}: each part must be PROXY or PROXY:WEIGHT with a positive weight and no "
                "proxy twice; write e.g. nwot+synflow or nwot:2+synflow:1"
            )
        weights[name] = value
    if len(weights) < 2:
        raise BadInputError(f"combination {text!r} names fewer than two proxies; write e.g. nwot+synflow")
    return weights


def combine_ranks(scores: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """The weighted mean of per-proxy normalised ranks: a rank-level ensemble of proxies.

    Each proxy's finite scores are turned into average ranks divided by their count (so in (0, 1],
    higher = better) and the ranks are averaged with ``weights`` (equal when None). A cell where any
    proxy failed gets nan. Ranks are an unsupervised transform: nothing is fitted to accuracies,
    so a combination with fixed weights can be reported on any split. The value of a cell depends on
    the other cells of the set, so compare combined scores only within one set.

    Example:
        >>> combine_ranks({"a": np.array([1.0, 2.0, 3.0]), "b": np.array([30.0, 10.0, 20.0])}).tolist()
        [0.6666666666666666, 0.5, 0.8333333333333333]
    """
    if not scores:
        raise BadInputError("combine_ranks needs at least one proxy's scores")
    weights = {name: 1.0 for name in scores} if weights is None else dict(weights)
    missing = sorted(set(weights) - set(scores))
    if missing:
        raise BadInputError(f"combine_ranks: no scores for {missing}; scored proxies: {sorted(scores)}")
    total = None
    for name, weight in weights.items():
        x = np.asarray(scores[name], dtype=np.float64)
        finite = np.isfinite(x)
        ranks = np.full(x.shape, np.nan)
        ranks[finite] = stats.rankdata(x[finite]) / max(1, int(finite.sum()))
        total = weight * ranks if total is None else total + weight * ranks
    return total / sum(weights.values())
