"""KD-aware zero-cost proxies (METHODS.md §1.8): hand-derived values, one shared pass, heterogeneous pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch
from torch import nn

from studentnas import get_proxy, get_space
from studentnas.core.errors import BadInputError
from studentnas.core.proxy import ProxyContext
from studentnas.proxies.kd_zero_cost import pair_stages
from studentnas.scoring.similarity import attention_distance, hinton_kd
from studentnas.scoring.teacher_student import example_context, tiny_net
from studentnas.testing.proxies import LinearHead

BACKWARD = ("kd_snip", "kd_grad_norm", "kd_fisher")
ALL = (*BACKWARD, "ickd", "kd_logits", "kd_sp", "kd_at")


def test_hinton_kd_on_known_logits() -> None:
    # p_s = softmax([ln 3, 0]) = [3/4, 1/4], p_t = [1/2, 1/2]: KL(p_t || p_s) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3).
    z_t = torch.zeros(1, 2, dtype=torch.float64)
    assert float(hinton_kd(torch.tensor([[math.log(3), 0.0]], dtype=torch.float64), z_t, tau=1.0)) == \
        pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    # at tau = 2 the logits [2 ln 3, 0] give the same distributions, and the loss is scaled by tau^2 = 4
    assert float(hinton_kd(torch.tensor([[2 * math.log(3), 0.0]], dtype=torch.float64), z_t, tau=2.0)) == \
        pytest.approx(2 * math.log(4 / 3), rel=1e-12)
    with pytest.raises(ValueError, match="same number of classes"):
        hinton_kd(torch.zeros(1, 3), torch.zeros(1, 2))


def test_kd_saliencies_by_hand() -> None:
    # x = [1, 0]; student W = [[ln 3, 0], [0, 0]] -> z_s = [ln 3, 0], p_s = [3/4, 1/4].
    # teacher W = 0 -> p_t = [1/2, 1/2].
    # tau = 1, B = 1: dL/dz = p_s - p_t = [1/4, -1/4]; g = dL/dz x^T = [[1/4, 0], [-1/4, 0]].
    # snip = |ln3 * 1/4| ; grad_norm = ||g||_F = sqrt(2)/4 ; fisher: a = z = [ln 3, 0], a*delta = [ln3/4, 0],
    # 1/2 (ln3/4)^2 broadcast over the 2 weights of that output channel -> (ln 3)^2 / 16.
    ctx = ProxyContext(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 2, teacher=LinearHead([[0, 0], [0, 0]]))
    student = LinearHead([[math.log(3), 0.0], [0.0, 0.0]])
    view = ctx.for_candidate(None)
    got = {name: get_proxy(name, tau=1.0).score(student, view) for name in BACKWARD}
    assert got["kd_snip"] == pytest.approx(math.log(3) / 4, rel=1e-6)
    assert got["kd_grad_norm"] == pytest.approx(math.sqrt(2) / 4, rel=1e-6)
    assert got["kd_fisher"] == pytest.approx(math.log(3) ** 2 / 16, rel=1e-6)
    assert get_proxy("kd_logits", tau=1.0).score(student, view) == pytest.approx(-0.5 * math.log(4 / 3), rel=1e-6)
    assert student.fc.weight.grad is None


def test_the_three_saliencies_share_one_backward_per_tau() -> None:
    calls = []
    teacher = tiny_net(0)
    student = tiny_net(1)
    student.stem.register_forward_hook(lambda *a: calls.append(1))
    view = example_context(teacher)[0]
    for name in BACKWARD:
        get_proxy(name).score(student, view)
    assert len(calls) == 1
    get_proxy("kd_snip", tau=2.0).score(student, view)  # another temperature is another pass
    assert len(calls) == 2
    with pytest.raises(BadInputError, match="tau must be"):
        get_proxy("kd_snip", tau=0)


def test_attention_transfer_by_hand_and_stage_pairing() -> None:
    # one sample, 1 channel, 2x2 maps: q_s = [1, 0, 0, 0] -> a_s = e1; q_t = [1, 1, 1, 1] -> a_t = 1/2.
    # mean over 4 positions of (a_s - a_t)^2 = (1/4 + 3 * 1/4) / 4 = 1/4.
    f_s = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    f_t = torch.ones(1, 3, 2, 2)
    assert float(attention_distance(f_s, f_t)) == pytest.approx(0.25, rel=1e-6)
    # a 4x4 teacher map is pooled to 2x2 first: ones stay ones
    assert float(attention_distance(f_s, torch.ones(1, 5, 4, 4))) == pytest.approx(0.25, rel=1e-6)
    assert pair_stages(3, 3) == [(0, 0), (1, 1), (2, 2)]
    assert pair_stages(5, 3) == [(1, 0), (3, 1), (4, 2)]


def test_ickd_equals_diswot_semantic_for_equal_widths_and_refuses_others() -> None:
    same_width = example_context(tiny_net(0))[0]
    student = tiny_net(2)
    paper_form = get_proxy("diswot_semantic", always_fallback=False)
    assert get_proxy("ickd").score(student, same_width) == paper_form.score(student, same_width)
    wider = example_context(tiny_net(0))[0]
    from studentnas.scoring.teacher_student import TinyNet

    with pytest.raises(ValueError, match=r"sees 16 channels and the teacher's 8"):
        get_proxy("ickd").score(TinyNet(width=8), wider)


def test_kd_sp_is_the_relation_term() -> None:
    view = example_context(tiny_net(0))[0]
    student = tiny_net(3)
    assert get_proxy("kd_sp").score(student, view) == get_proxy("diswot_relation").score(student, view) < 0


@pytest.fixture(scope="module")
def resnet_teacher() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=10)


def _ctx(teacher: nn.Module) -> ProxyContext:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=gen).contiguous(memory_format=torch.channels_last)
    return ProxyContext(images, torch.arange(8) % 10, 10, teacher=teacher)


def _scores(student: nn.Module, teacher: nn.Module, names: tuple[str, ...]) -> dict[str, float]:
    view = _ctx(teacher).for_candidate(None)
    return {name: get_proxy(name).score(student, view) for name in names}


@pytest.mark.parametrize("kind", ["nb201", "vit"])
def test_heterogeneous_students(kind: str, resnet_teacher: nn.Module) -> None:
    torch.manual_seed(5)
    if kind == "nb201":
        space = get_space("nb201")
        student = space.build(space.sample(np.random.default_rng(1)), num_classes=10)
        student = student.to(memory_format=torch.channels_last)
    else:
        student = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=10)
    names = tuple(n for n in ALL if n != "ickd")
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    t_before = {k: v.clone() for k, v in resnet_teacher.state_dict().items()}
    first, second = _scores(student, resnet_teacher, names), _scores(student, resnet_teacher, names)
    assert first == second, "KD proxies must be deterministic"
    assert all(math.isfinite(v) for v in first.values()), first
    assert all(first[n] > 0 for n in BACKWARD) and all(first[n] < 0 for n in ("kd_logits", "kd_sp", "kd_at"))
    with pytest.raises(ValueError, match="needs equal widths"):  # 64 or 192 channels vs the teacher's 512
        get_proxy("ickd").score(student, _ctx(resnet_teacher).for_candidate(None))
    for net, before in ((student, s_before), (resnet_teacher, t_before)):
        after = net.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in before.items())
        assert all(p.grad is None for p in net.parameters())


def test_teacher_work_is_done_once(resnet_teacher: nn.Module) -> None:
    calls = []
    handle = resnet_teacher.conv1.register_forward_hook(lambda *a: calls.append(1))
    try:
        ctx = _ctx(resnet_teacher)
        space, rng = get_space("nb201", C=8, N=1), np.random.default_rng(2)  # small students: the teacher is counted
        for i in range(5):
            torch.manual_seed(i)
            student = space.build(space.sample(rng), num_classes=10)
            view = ctx.for_candidate(None)
            for name in (*BACKWARD, "kd_logits", "kd_sp"):
                get_proxy(name).score(student, view)
            assert len(calls) == (1 if i == 0 else 2)
            get_proxy("kd_at").score(student, view)
            assert len(calls) == 2, "kd_at's stage maps are one more teacher forward, on the first candidate only"
    finally:
        handle.remove()
