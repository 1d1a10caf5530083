"""Cost proxies: ``params`` and ``macs`` of the candidate, in millions.

They are the baselines every proxy must beat (no earlier proxy beats #params consistently on
NAS-Bench-201). Values come from the space's analytic ``cost()``, so they cost nothing.

Example:
    >>> import torch
    >>> from studentnas.cost import Cost
    >>> from studentnas.proxy import ProxyContext
    >>> ctx = ProxyContext(torch.zeros(1, 3, 8, 8), torch.zeros(1), 10).for_candidate(Cost(4.1e9, 25.6e6))
    >>> ParamsProxy().score(None, ctx), MacsProxy().score(None, ctx)
    (25.6, 4100.0)
"""

from __future__ import annotations

from torch import nn

from studentnas.proxy import Proxy, ProxyContext
from studentnas.registry import PROXIES


@PROXIES.register("params")
class ParamsProxy(Proxy):
    """Number of parameters in millions."""

    name = "params"
    needs = frozenset({"cost"})
    sign = "none: as an accuracy predictor a bigger network scores higher"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return ctx.cost.params / 1e6


@PROXIES.register("macs")
class MacsProxy(Proxy):
    """Multiply-accumulates (papers' FLOPs) of one image, in millions."""

    name = "macs"
    needs = frozenset({"cost"})
    sign = "none: as an accuracy predictor a bigger network scores higher"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return ctx.cost.macs / 1e6
