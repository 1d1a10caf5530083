"""Choosing a search objective by evidence: single proxies and log-linear blends, fitted on tune students only.

A searcher needs one number per candidate, so a blend of proxies here is not a rank combination (whose value
depends on the other cells) but a **log-linear blend**: for members ``m`` with weights ``w_m`` (positive
scores only),

    blend(student) = sum_m w_m * ln(score_m(student))

It is scale-free: multiplying a member's scores by a constant (another space, image size or unit) shifts every
student's blend by the same amount, so the order a blend fitted on one space gives is meaningful on another.
``params:1+snip:0.5`` ranks like ``params * snip ** 0.5``.

:func:`choose_objective` reads the per-student rows of a ``studentnas bench proxies`` result (``split``,
``accuracy``, ``scores``, where ``scores`` holds ``macs`` for the cost bands), and

1. on the **tune** students only, scores every single proxy and every blend ``params:1+X:w`` (``w`` on
   :data:`BLEND_WEIGHTS`) by within-band pairwise accuracy (MACs within :data:`CHOICE_BAND`), ties broken by
   Kendall's tau, then fewer members;
2. reports the chosen objective beside every single proxy on the held-out **report** students, which the
   choice never read.

Example:
    >>> rows = [{"split": s, "accuracy": float(a), "scores": {"macs": m, "params": p, "snip": q}}
    ...         for s, a, m, p, q in [("tune", 1, 11, 1, 5), ("tune", 2, 10.5, 2, 4), ("tune", 3, 10, 3, 9),
    ...                               ("report", 1, 10, 1, 2), ("report", 3, 10.4, 2, 8), ("report", 2, 10.8, 3, 1)]]
    >>> blend_scores(rows, {"params": 1.0, "snip": 0.5})[:2].round(4).tolist()  # ln 1 + ln 5 / 2, ln 2 + ln 4 / 2
    [0.8047, 1.3863]
    >>> choice = choose_objective(rows, band=0.1)  # params orders the 3 tune pairs right, snip 2 of 3
    >>> choice["chosen"]["name"], choice["tune"]["snip"]["pairwise_10"], choice["report"]["snip"]["pairwise_10"]
    ('params', 0.6666666666666666, 0.6666666666666666)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from studentnas.bench.correlation import band_tag, parse_combination, summarize
from studentnas.core.errors import BadInputError

BLEND_WEIGHTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # params:1+X:8 is X with a touch of params
CHOICE_BAND = 0.1  # the choice ranks objectives by pairwise accuracy among students of MACs within 10 %
MIN_STUDENTS = 3  # per half
ANCHOR = "params"  # every blend holds #params at weight 1: the baseline every proxy must beat


def blend_name(weights: Mapping[str, float]) -> str:
    """``{"params": 1, "snip": 0.5}`` -> ``"params:1+snip:0.5"`` (a single member: its bare name).

    Example:
        >>> blend_name({"params": 1.0, "snip": 0.5}), blend_name({"nwot": 1.0})
        ('params:1+snip:0.5', 'nwot')
    """
    if len(weights) == 1:
        return next(iter(weights))
    return "+".join(f"{name}:{weight:g}" for name, weight in weights.items())


def parse_blend(text: str) -> dict[str, float]:
    """A blend's members and weights from its name (a bare proxy name is a one-member blend).

    Example:
        >>> parse_blend("params:1+snip:0.5"), parse_blend("params")
        ({'params': 1.0, 'snip': 0.5}, {'params': 1.0})
    """
    return parse_combination(text) if "+" in text else {text.strip(): 1.0}


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    values = [row.get("scores", {}).get(name) for row in rows]
    return np.array([float(v) if isinstance(v, (int, float)) else math.nan for v in values], dtype=np.float64)


def blend_scores(rows: Sequence[Mapping[str, Any]], weights: Mapping[str, float]) -> np.ndarray:
    """Each row's blend (module docstring); a single member is its raw score, and nan where a member is
    missing, not finite or (for a blend) not positive."""
    if len(weights) == 1:
        return _column(rows, next(iter(weights)))
    total = np.zeros(len(rows))
    for name, weight in weights.items():
        x = _column(rows, name)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total + weight * np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)
    return total


def candidates(rows: Sequence[Mapping[str, Any]], weights: Sequence[float] = BLEND_WEIGHTS) -> list[dict[str, float]]:
    """Every single proxy scored in ``rows``, then ``params:1+X:w`` for every other proxy ``X`` whose scores are
    all positive there (``macs`` left out: within a band it is nearly constant)."""
    names = sorted({name for row in rows for name in row.get("scores", {})})
    singles = [{name: 1.0} for name in names]
    if ANCHOR not in names:
        return singles
    blends = [{ANCHOR: 1.0, name: w} for name in names if name not in (ANCHOR, "macs")
              and np.all(_column(rows, name) > 0) for w in weights]
    return singles + blends


def _figures(rows: Sequence[Mapping[str, Any]], weights: Mapping[str, float], band: float) -> dict[str, Any]:
    truth = np.array([float(r["accuracy"]) if isinstance(r.get("accuracy"), (int, float)) else math.nan
                      for r in rows])
    return summarize(blend_scores(rows, weights), truth, costs=_column(rows, "macs"), bands=(band, 2 * band))


def _key(figures: Mapping[str, Any], band: float, size: int) -> tuple[float, float, int]:
    pair, tau = figures[f"pairwise_{band_tag(band)}"], figures["kendall"]
    return (pair if math.isfinite(pair) else -1.0, tau if math.isfinite(tau) else -1.0, -size)


def choose_objective(rows: Sequence[Mapping[str, Any]], band: float = CHOICE_BAND) -> dict[str, Any]:
    """Fit on the tune rows, report on the report rows (module docstring). Returns ``chosen`` (name, weights,
    tune and report figures), ``tune`` (every candidate's tune figures, best first) and ``report`` (the chosen
    objective and every single proxy on the report rows)."""
    tune = [r for r in rows if r.get("split") == "tune"]
    report = [r for r in rows if r.get("split") == "report"]
    if len(tune) < MIN_STUDENTS or len(report) < MIN_STUDENTS:
        raise BadInputError(f"choosing an objective needs at least {MIN_STUDENTS} tune and {MIN_STUDENTS} report "
                            f"students, got {len(tune)} and {len(report)}; benchmark more students")
    scored = [(weights, _figures(tune, weights, band)) for weights in candidates(tune)]
    scored.sort(key=lambda item: _key(item[1], band, len(item[0])), reverse=True)
    best, best_tune = scored[0]
    singles = {name for row in rows for name in row.get("scores", {})}
    on_report = {blend_name(w): _figures(report, w, band) for w in [best, *({n: 1.0} for n in sorted(singles))]}
    return {"band": band, "n_tune": len(tune), "n_report": len(report),
            "chosen": {"name": blend_name(best), "weights": best, "tune": best_tune,
                       "report": on_report[blend_name(best)]},
            "tune": {blend_name(w): f for w, f in scored}, "report": on_report}


def judge_objective(rows: Sequence[Mapping[str, Any]], objective: str,
                    band: float = CHOICE_BAND) -> dict[str, dict[str, Any]]:
    """A fixed objective (a proxy name or a blend name such as ``params:1+snip:0.5``) beside ``params`` on the
    report rows and on all rows of another benchmark (e.g. NB201), so a default chosen elsewhere is checked there.

    Example:
        >>> rows = [{"split": "report", "accuracy": float(a), "scores": {"macs": 10.0 + a / 10, "params": p}}
        ...         for a, p in [(1, 1), (2, 3), (3, 2)]]
        >>> judge_objective(rows, "params")["report"]["params"]["pairwise_10"]  # (1,2) (1,3) right, (2,3) wrong
        0.6666666666666666
    """
    weights = parse_blend(objective)
    missing = sorted({m for m in weights if not any(m in r.get("scores", {}) for r in rows)})
    if missing:
        raise BadInputError(f"objective {objective!r}: {missing} not scored in this benchmark; rerun `bench proxies` "
                            f"with --proxies including {','.join(missing)}")
    report = [r for r in rows if r.get("split") == "report"]
    out: dict[str, dict[str, Any]] = {}
    for label, subset in (("report", report), ("all", list(rows))):
        out[label] = {name: _figures(subset, parse_blend(name), band) for name in dict.fromkeys([objective, ANCHOR])
                      if subset}
    return out
