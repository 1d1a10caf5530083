"""Proxies on networks small enough to score by hand."""

from __future__ import annotations

import math

import torch
from torch import nn

from studentnas import get_proxy
from studentnas.core.cost import Cost
from studentnas.core.proxy import ProxyContext, signed_log


def two_layer() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
        net[2].weight.copy_(torch.tensor([[-1.0, 2.0]]))
    return net


def test_synflow_by_hand() -> None:
    # |W1| = [[1,2],[3,4]], |W2| = [1,2], x = ones: h = [3,7], R = 1*3 + 2*7 = 17.
    # dR/dW2 = h -> sum |W2*g| = 3 + 14 = 17; dR/dW1[i,j] = W2[i] -> sum |W1*g| = 1+2+6+8 = 17. Total 34.
    net = two_layer()
    ctx = ProxyContext(images=torch.zeros(4, 2), labels=torch.zeros(4), num_classes=1)
    assert math.isclose(get_proxy("synflow").score(net, ctx), math.log(34.0), rel_tol=1e-12)
    assert net[0].weight[0, 1].item() == -2.0, "synflow must not change the student's weights"


def test_nwot_by_hand() -> None:
    # identity layer then ReLU; inputs (1,1), (1,-1), (-1,-1) give codes 11, 10, 00 over 2 units.
    # K_ij = agreements: [[2,1,0],[1,2,1],[0,1,2]], det = 2*3 - 1*2 = 4.
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    ctx = ProxyContext(images=x, labels=torch.zeros(3), num_classes=2)
    assert math.isclose(get_proxy("nwot").score(net, ctx), math.log(4.0), rel_tol=1e-12)


def test_cost_proxies_read_the_candidate_cost() -> None:
    ctx = ProxyContext(torch.zeros(2, 3, 8, 8), torch.zeros(2), 10).for_candidate(Cost(macs=4.1e9, params=25.557032e6))
    assert get_proxy("params").score(None, ctx) == 25.557032
    assert get_proxy("macs").score(None, ctx) == 4100.0


def test_signed_log_follows_naslib() -> None:
    assert signed_log(math.e) == 1.0 and signed_log(-math.e) == -1.0 and signed_log(0.0) == 0.0


def test_teacher_outputs_are_computed_once_and_shared_by_candidate_views() -> None:
    import timm

    teacher = timm.create_model("resnet18", num_classes=10)
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    ctx = ProxyContext(torch.randn(4, 3, 32, 32), torch.arange(4), 10, teacher=teacher)
    first = ctx.for_candidate(Cost(1, 1)).teacher_outputs()
    second = ctx.for_candidate(Cost(2, 2)).teacher_outputs()
    assert first is second and first.logits.shape == (4, 10) and first.features.shape == (4, 512, 1, 1)
    assert ctx.teacher_seconds > 0
