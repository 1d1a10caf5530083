"""Every registered space, proxy and searcher passes the shipped contract suites."""

from __future__ import annotations

import pytest
import timm
import torch

from studentnas import PROXIES, SEARCHERS, SPACES, get_space
from studentnas.core.cost import Cost
from studentnas.core.proxy import ProxyContext
from studentnas.testing import check_proxy, check_proxy_order, check_searcher, check_space

SMALL_INPUT = {"resnet": (3, 64, 64), "nb201": (3, 32, 32), "puzzle": (3, 32, 32)}


def _space_config(name: str) -> dict:
    """Spaces that cannot be made without arguments: the puzzle space needs a teacher (its untrained library)."""
    if name == "puzzle":
        from studentnas.puzzle.samples import teacher_spec

        spec = teacher_spec("resnet18", None, image_size=32, num_classes=10)
        return {"teacher": spec.to_dict(), "library": {"widths": [0.5], "merge_widths": [1.0]}}
    return {}


@pytest.mark.parametrize("name", SPACES.list())
def test_space_contract(name: str) -> None:
    check_space(get_space(name, **_space_config(name)), input_size=SMALL_INPUT.get(name), n=4)


@pytest.mark.parametrize("name", PROXIES.list())
def test_proxy_contract(name: str) -> None:
    torch.manual_seed(0)
    teacher = timm.create_model("resnet18", num_classes=10)
    student = timm.create_model("resnet18", num_classes=10)
    ctx = ProxyContext(torch.randn(8, 3, 32, 32), torch.arange(8) % 10, 10, teacher=teacher)
    check_proxy(PROXIES.get(name)(), student, ctx, Cost(macs=1.8e9, params=11.7e6))


@pytest.mark.parametrize("name", PROXIES.list())
def test_proxy_scores_its_known_better_network_higher(name: str) -> None:
    check_proxy_order(PROXIES.get(name)())


@pytest.mark.parametrize("name", SEARCHERS.list())
@pytest.mark.parametrize("space", ["nb201", "resnet"])
def test_searcher_contract(name: str, space: str) -> None:
    check_searcher(SEARCHERS.get(name), get_space(space))
