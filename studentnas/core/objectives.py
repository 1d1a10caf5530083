"""Objectives of a search: proxy scores are maximised, cost metrics minimised.

An objective is named by a proxy (``nwot``, ``diswot``, ... read from ``Candidate.scores``) or by a
cost metric read from ``Candidate.cost``: ``macs``, ``params``, ``latency`` (alias ``latency_ms``)
or ``memory`` (alias ``peak_memory_mb``). Everything downstream (Pareto fronts, hypervolume,
multi-objective searchers) works on the *minimisation vector* of a candidate: ``-score`` for a
proxy, the cost itself for a metric, so "smaller is better" in every coordinate, as pymoo and
Optuna's NSGA-II expect.

Example:
    >>> from studentnas.core.arch import Arch
    >>> from studentnas.core.candidate import Candidate
    >>> from studentnas.core.cost import Cost
    >>> c = Candidate(Arch("nb201", {"e0": "none"}), Cost(macs=2e6, params=1e5), {"nwot": 7.5})
    >>> canonical("latency_ms"), direction("nwot"), direction("macs")
    ('latency', 'maximize', 'minimize')
    >>> minimisation_vector(c, ["nwot", "macs"])
    (-7.5, 2000000.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError

# objective name -> Cost.value() metric; cost metrics are minimised, everything else is a proxy score
COST_METRICS = {"macs": "macs", "flops": "macs", "params": "params", "latency": "latency", "latency_ms": "latency",
                "memory": "memory", "peak_memory_mb": "memory"}
MEASURED = {"latency", "memory"}  # metrics that need a built model, not the analytic cost


def canonical(name: str) -> str:
    """The canonical spelling: cost aliases (``latency_ms``, ``flops``, ...) map to ``Cost.value`` names."""
    key = name.strip()
    return COST_METRICS.get(key.lower(), key)


def is_cost(name: str) -> bool:
    """True for cost metrics (minimised), False for proxy scores (maximised)."""
    return canonical(name) in COST_METRICS.values()


def direction(name: str) -> str:
    """``'minimize'`` for cost metrics, ``'maximize'`` for proxy scores (Optuna's spelling)."""
    return "minimize" if is_cost(name) else "maximize"


def parse_objectives(spec: str | Sequence[str]) -> list[str]:
    """Canonical names from ``"diswot,macs"`` or a sequence; at least one proxy, no repeats."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [canonical(s) for s in items if s.strip()]
    if not names:
        raise BadInputError("no objective given; pass e.g. --objectives nwot,macs (a proxy and a cost metric)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadInputError(f"objective {repeated[0]!r} is named twice in {','.join(names)}; name each once")
    if all(is_cost(n) for n in names):
        raise BadInputError(f"objectives {','.join(names)} are all cost metrics; add a proxy score to maximise, "
                            f"e.g. nwot,{names[0]}")
    return names


def value(cand: Candidate, name: str) -> float:
    """The raw value of objective ``name`` for ``cand`` (a score, or a cost); NaN when missing."""
    name = canonical(name)
    if is_cost(name):
        v = cand.cost.value(name)
        return math.nan if v is None else float(v)
    return float(cand.scores.get(name, math.nan)) if cand.ok else math.nan


def minimisation_vector(cand: Candidate, objectives: Iterable[str]) -> tuple[float, ...] | None:
    """``-score`` for proxies and the cost for metrics; None when ``cand`` failed or a value is missing."""
    if not cand.ok:
        return None
    out = []
    for name in objectives:
        v = value(cand, name)
        if not math.isfinite(v):
            return None
        out.append(v if is_cost(name) else -v)
    return tuple(out)


def proxies_of(objectives: Iterable[str]) -> list[str]:
    """The proxy-score objectives, in order."""
    return [n for n in objectives if not is_cost(n)]


def costs_of(objectives: Iterable[str]) -> list[str]:
    """The cost-metric objectives, in order."""
    return [canonical(n) for n in objectives if is_cost(n)]
