"""Contract every ``Proxy`` must satisfy, and :class:`LinearHead`, a network whose proxy values can be
worked out by hand.

Example:
    >>> import math, torch, timm
    >>> from studentnas import get_proxy
    >>> from studentnas.core.cost import Cost
    >>> from studentnas.core.proxy import ProxyContext
    >>> ctx = ProxyContext(torch.randn(4, 3, 32, 32), torch.arange(4), 10)
    >>> score = check_proxy(get_proxy("nwot"), timm.create_model("resnet18", num_classes=10), ctx, Cost(1.0, 1.0))
    >>> math.isfinite(score)   # the checked score
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from studentnas.core.cost import Cost
from studentnas.core.proxy import NEEDS, Proxy, ProxyContext


class LinearHead(nn.Module):
    """features = the input; head = one bias-free linear layer with ``weight`` (classes x features), so
    gradients, KD losses and Gram matrices can be written down by hand. It has timm's classifier API.

    Example:
        >>> LinearHead([[1.0, 0.0], [0.0, 2.0]])(torch.tensor([[3.0, 1.0]]))
        tensor([[3., 2.]], grad_fn=<MmBackward0>)
    """

    def __init__(self, weight: torch.Tensor | list[list[float]]):
        super().__init__()
        w = torch.as_tensor(weight, dtype=torch.float32)
        self.fc = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(w)

    def get_classifier(self) -> nn.Module:
        """The linear head (timm's API)."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The input itself."""
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The logits, or ``x`` itself for ``pre_logits``."""
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits ``x @ weight.T``."""
        return self.fc(x)


def check_proxy(proxy: Proxy, student: nn.Module, ctx: ProxyContext, cost: Cost) -> float:
    """Finite, deterministic, oriented (``maximize``), documented, and the student is left untouched."""
    assert proxy.name, "a proxy needs a name"
    assert proxy.direction == "maximize", "scores must be oriented so that higher is better"
    assert proxy.sign, f"proxy {proxy.name} must document its sign fix in `sign`"
    assert proxy.needs <= NEEDS, f"proxy {proxy.name} needs unknown inputs {set(proxy.needs) - NEEDS}"
    before = {k: v.clone() for k, v in student.state_dict().items()}
    view = ctx.for_candidate(cost)
    first = proxy.score(student, view)
    second = proxy.score(student, view)
    assert isinstance(first, float) and math.isfinite(first), f"{proxy.name} gave a non-finite score {first}"
    assert math.isclose(first, second, rel_tol=1e-6, abs_tol=1e-9), f"{proxy.name} is not deterministic"
    after = student.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"{proxy.name} changed the student's '{key}'"
    return first


def check_proxy_order(proxy: Proxy) -> tuple[float, float]:
    """Higher is better: on the proxy's own hand-made pair, the better network scores higher."""
    (better, ctx_b), (worse, ctx_w) = type(proxy).example_pair()
    high, low = proxy.score(better, ctx_b), proxy.score(worse, ctx_w)
    assert math.isfinite(high) and math.isfinite(low), f"{proxy.name}: example pair scores {high}, {low}"
    assert high > low, f"{proxy.name}: the better network of its example pair scored {high} <= {low}"
    return high, low
