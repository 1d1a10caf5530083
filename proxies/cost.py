"""Cost proxies: ``params`` and ``macs`` of the candidate, in millions.

They are the baselines every proxy must beat (no earlier proxy beats #params consistently on
NAS-Bench-201). Values come from the space's analytic ``cost()``, so they cost nothing.

Example:
    >>> import torch
    >>> from studentnas.core.cost import Cost
    >>> from studentnas.core.proxy import ProxyContext
    >>> ctx = ProxyContext(torch.zeros(1, 3, 8, 8), torch.zeros(1), 10).for_candidate(Cost(4.1e9, 25.6e6))
    >>> ParamsProxy().score(None, ctx), MacsProxy().score(None, ctx)
    (25.6, 4100.0)
"""

from __future__ import annotations

import torch
from torch import nn

from studentnas.core.cost import Cost
from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.registry import PROXIES


def _cost_pair() -> tuple[tuple[nn.Module, ProxyContext], tuple[nn.Module, ProxyContext]]:
    """A wider linear model (more params and MACs) and a narrower one; bigger is 'better' for cost proxies."""
    ctx = ProxyContext(torch.zeros(2, 8), torch.zeros(2, dtype=torch.long), 2)
    wide, narrow = nn.Linear(8, 4), nn.Linear(8, 2)
    return (wide, ctx.for_candidate(Cost(macs=32, params=36))), (narrow, ctx.for_candidate(Cost(macs=16, params=18)))


class _CostProxy(Proxy):
    """The candidate's ``Cost`` field of the same name as the proxy, in millions."""

    needs = frozenset({"cost"})
    sign = "none: as an accuracy predictor a bigger network scores higher"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return getattr(ctx.cost, self.name) / 1e6

    @classmethod
    def example_pair(cls):  # noqa: ANN206 - see Proxy.example_pair
        return _cost_pair()


@PROXIES.register()
class ParamsProxy(_CostProxy):
    """Number of parameters in millions."""

    name = "params"


@PROXIES.register()
class MacsProxy(_CostProxy):
    """Multiply-accumulates (papers' FLOPs) of one image, in millions."""

    name = "macs"
