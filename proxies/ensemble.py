"""``zc_ensemble``: a documented combination of zero-cost proxies, as one proxy a searcher can maximise.

A rank combination (``studentnas bench proxies --fit``) scores a cell by its ranks *among the other
cells of a sample*, which a searcher cannot use: it needs one number per candidate. This proxy
replaces "rank among the sample" by "percentile against a fixed reference sample": for each member
proxy ``m`` with weight ``w_m`` it computes the member's score ``s_m`` and its empirical CDF
``F_m(s_m)`` over the member's scores on the reference cells (its rank among them / their count),
and returns

    zc_ensemble = sum_m w_m * F_m(s_m) / sum_m w_m          (in [0, 1]; higher is better)

On the reference cells this equals the fitted rank combination exactly (both are weighted mean
ranks), and any other candidate gets the rank it would have had among them. Outside the reference
range the CDF is extended linearly with a tiny slope, so the order stays strict.

The members, weights and reference scores live in a calibration JSON, written by
``scripts/fit_ensemble.py`` from a ``studentnas bench proxies`` run using its **tune cells only**
(the report cells stay held out). The shipped calibration (``assets/zc_ensemble_nb201.json``) was
fitted on NB201 CIFAR-10 tune cells; it is meaningful for NB201-like cells at 32x32. For another
space, fit your own and pass it: ``get_proxy("zc_ensemble", calibration="my.json")``.

Members share their passes (one candidate view), so the ensemble costs about the sum of its
members' distinct passes, not more.

Example:
    >>> cal = Calibration(weights={"params": 1.0}, reference={"params": [1.0, 2.0, 3.0, 4.0]})
    >>> cal.percentile("params", 2.0), cal.percentile("params", 2.5), cal.percentile("params", 4.0)
    (0.5, 0.625, 1.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.registry import PROXIES

SHIPPED = "zc_ensemble_nb201.json"
_TAIL_SLOPE = 1e-3  # percentile per reference range beyond the ends, keeps the order strict


@dataclass(frozen=True)
class Calibration:
    """Member weights and each member's sorted reference scores (plus where they came from)."""

    weights: dict[str, float]
    reference: dict[str, list[float]]
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = sorted(set(self.weights) - set(self.reference))
        if not self.weights or missing or any(w <= 0 for w in self.weights.values()):
            raise BadInputError(f"ensemble calibration: needs positive weights and reference scores for every member "
                                f"(missing: {missing}); regenerate it with scripts/fit_ensemble.py")
        for name in self.weights:
            PROXIES.get(name)  # unknown member -> error with suggestions
            values = np.sort(np.asarray(self.reference[name], dtype=np.float64))
            if values.size < 2 or not np.isfinite(values).all():
                raise BadInputError(f"ensemble calibration: member '{name}' needs >= 2 finite reference scores")
            object.__setattr__(self, "reference", {**self.reference, name: values.tolist()})

    def percentile(self, name: str, value: float) -> float:
        """``value``'s normalised rank among ``name``'s n reference scores, as ``combine_ranks`` ranks:
        a reference value gets its (average, 1-based) rank / n, so the largest gets 1; a value between
        two reference values gets the midpoint of theirs, (below + 0.5) / n; beyond the ends the
        scale continues linearly with a tiny slope, so the order stays strict."""
        ref = np.asarray(self.reference[name])
        n, lo, hi = ref.size, ref[0], ref[-1]
        span = (hi - lo) or 1.0
        if value > hi:
            return 1.0 + _TAIL_SLOPE * (value - hi) / span
        if value < lo:
            return (0.5 - _TAIL_SLOPE * (lo - value) / span) / n
        below = int(np.searchsorted(ref, value, side="left"))
        upto = int(np.searchsorted(ref, value, side="right"))
        return (below + upto + 1) / 2 / n if upto > below else (below + 0.5) / n

    @classmethod
    def load(cls, path: str | Path | None = None) -> Calibration:
        """The calibration at ``path``, or the shipped NB201 one."""
        try:
            if path is None:
                text = resources.files("studentnas").joinpath("assets", SHIPPED).read_text(encoding="utf-8")
            else:
                text = Path(path).read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, json.JSONDecodeError) as err:
            raise BadInputError(f"ensemble calibration '{path or SHIPPED}' is unreadable ({type(err).__name__}); "
                                "write one with scripts/fit_ensemble.py") from None
        return cls(weights={k: float(v) for k, v in data["weights"].items()}, reference=data["reference"],
                   source=data.get("source", {}))


@PROXIES.register()
class ZeroCostEnsembleProxy(Proxy):
    """Weighted mean percentile of member zero-cost proxies against NB201 reference cells (fitted on tune cells)."""

    name = "zc_ensemble"
    needs = frozenset({"data", "labels", "cost"})
    sign = "none: a weighted mean of percentiles of members that are each oriented higher-is-better"

    def __init__(self, calibration: str | Path | Calibration | None = None):
        self.calibration = calibration if isinstance(calibration, Calibration) else Calibration.load(calibration)
        self.members = {name: PROXIES.get(name)() for name in self.calibration.weights}

    def member_scores(self, student: nn.Module, ctx: ProxyContext) -> dict[str, float]:
        """Each member's own score, through one candidate view (members share passes)."""
        view = replace(ctx, suite=tuple(dict.fromkeys([*ctx.suite, *self.members])))  # same pass cache
        return {name: proxy.score(student, view) for name, proxy in self.members.items()}

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        cal = self.calibration
        scores = self.member_scores(student, ctx)
        total = sum(w * cal.percentile(name, scores[name]) for name, w in cal.weights.items())
        return total / sum(cal.weights.values())

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "weights": dict(self.calibration.weights), "source": self.calibration.source}

    @classmethod
    def example_pair(cls):  # noqa: ANN206 - see Proxy.example_pair
        from studentnas import get_space

        space = get_space("nb201")
        conv = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                                 "nor_conv_3x3~2|")
        skip = space.from_string("|skip_connect~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|")
        generator = torch.Generator().manual_seed(0)
        ctx = ProxyContext(torch.randn(16, 3, 32, 32, generator=generator), torch.arange(16) % 10, 10)
        pairs = []
        for arch in (conv, skip):
            torch.manual_seed(0)
            net = space.build(arch, num_classes=10)
            pairs.append((net, ctx.for_candidate(space.cost(arch, (3, 32, 32), 10))))
        return pairs[0], pairs[1]
