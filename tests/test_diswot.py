"""DisWOT proxies (METHODS.md §1): hand-derived values, teacher work once, heterogeneous pairs."""

from __future__ import annotations

import copy
import math

import pytest
import timm
import torch
from torch import nn

import studentnas.scoring.similarity as similarity
from studentnas import get_proxy, get_space
from studentnas.core.errors import BadInputError
from studentnas.core.proxy import ProxyContext
from studentnas.scoring import passes as _passes
from studentnas.scoring import teacher_student as _teacher_student
from studentnas.scoring.similarity import batch_gram, class_gram_distance, ickd_distance, relation_distance
from studentnas.scoring.teacher_student import TinyNet, example_context, semantic_distance, semantic_mode, tiny_net
from studentnas.testing.proxies import LinearHead

SUITE = ("diswot", "diswot_semantic", "diswot_relation")


def test_relation_distance_on_2x2_features_by_hand() -> None:
    # A_s = [[1,0],[1,1]]: Gram [[1,1],[1,2]] -> rows [1,1]/sqrt2 and [1,2]/sqrt5; A_t = I: Gram I.
    # ||.||^2 = (1-1/sqrt2)^2 + 1/2 + 1/5 + (2/sqrt5-1)^2 = 4 - sqrt2 - 4/sqrt5; / B^2 = 4.
    s, t = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.eye(2)
    expected = 1 - math.sqrt(2) / 4 - 1 / math.sqrt(5)
    assert float(relation_distance(batch_gram(s), batch_gram(t))) == pytest.approx(expected, rel=1e-6)
    # flattening: the same samples as 1 x 2 x 1 maps or 2 x 1 x 1 maps give the same Gram
    assert torch.allclose(batch_gram(s.reshape(2, 1, 2, 1)), batch_gram(s.reshape(2, 2, 1, 1)))


def test_semantic_distance_by_hand() -> None:
    # K=1, C=2. g_s = [1,1]: both rows of rownorm(g g^T) are [1,1]/sqrt2. g_t = [1,-1]: rows [1,-1]/sqrt2 and
    # [-1,1]/sqrt2. Row differences [0, sqrt2] and [sqrt2, 0]: squared norm 2 + 2 = 4, / (K*C) = 2.
    g_s, g_t = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, -1.0]])
    assert semantic_distance(g_s, g_t) == pytest.approx(2.0, abs=1e-12)
    assert semantic_distance(g_s, g_s) == 0.0


def test_rank1_closed_form_equals_the_explicit_channel_correlation() -> None:
    gen = torch.Generator().manual_seed(0)
    g_s, g_t = torch.randn(5, 7, generator=gen, dtype=torch.float64), torch.randn(5, 7, generator=gen,
                                                                                   dtype=torch.float64)
    g_t[0, 3] = 0.0  # a zero entry gives a zero row in both forms
    explicit = (similarity.channel_correlation(g_s.unsqueeze(-1))
                - similarity.channel_correlation(g_t.unsqueeze(-1))).pow(2).sum() / (5 * 7)
    assert float(ickd_distance(g_s, g_t)) == pytest.approx(float(explicit), rel=1e-12)


def test_semantic_term_depends_only_on_direction_and_sign_pattern() -> None:
    # METHODS §1.3: row i of rownorm(g g^T) is sign(g_i) g/|g|, so scaling a class vector by any non-zero
    # factor (sign included) changes nothing; changing its direction does.
    gen = torch.Generator().manual_seed(1)
    g_s, g_t = (torch.randn(4, 6, generator=gen, dtype=torch.float64) for _ in range(2))
    base = semantic_distance(g_s, g_t)
    scaled = g_s * torch.tensor([[3.0], [-0.5], [1e-3], [-70.0]], dtype=torch.float64)
    assert semantic_distance(scaled, g_t) == pytest.approx(base, rel=1e-9)
    bent = g_s.clone()
    bent[0, 0] *= 2.0  # same sign pattern, new direction
    assert semantic_distance(bent, g_t) != pytest.approx(base, rel=1e-6)


def test_class_gram_fallback_by_hand_and_projection() -> None:
    # K=2: G_s = I (C=2) -> rownorm(G G^T) = I; G_t = [[1,0,0],[1,0,0]] (C=3) -> all entries 1/sqrt2.
    # ||I - J/sqrt2||^2 = 2(1-1/sqrt2)^2 + 2/2 = 4 - 2 sqrt2; / K = 2 - sqrt2.
    g_s, g_t = torch.eye(2), torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(class_gram_distance(g_s.double(), g_t.double())) == pytest.approx(2 - math.sqrt(2), rel=1e-12)
    assert semantic_mode(2, 3) == "class_gram" and semantic_mode(3, 3) == "ickd"
    assert semantic_distance(g_s, g_t) == pytest.approx(2 - math.sqrt(2), rel=1e-9)
    p = similarity.orthogonal_projection(3, 2, seed=0)
    assert torch.allclose(p.T @ p, torch.eye(2, dtype=torch.float64), atol=1e-12)
    proj = semantic_distance(g_s, g_t, fallback="projection", seed=0)
    assert proj == pytest.approx(float(ickd_distance(g_s.double(), g_t.double() @ p)), rel=1e-12)
    with pytest.raises(ValueError, match="needs equal widths"):
        semantic_distance(g_s, g_t, fallback="none")
    with pytest.raises(BadInputError, match="same number of classes"):
        semantic_distance(torch.ones(3, 2), torch.ones(2, 2))


def test_semantic_proxy_reads_the_cross_entropy_classifier_gradient() -> None:
    # dCE/dW = (softmax(z) - onehot(y))^T x / B for a linear head.
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(6, 3, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2])
    w_s, w_t = torch.randn(3, 3, generator=gen), torch.randn(3, 3, generator=gen)
    ctx = ProxyContext(x, y, 3, teacher=LinearHead(w_t)).for_candidate(None)

    def grad(w: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(x @ w.T, dim=1) - nn.functional.one_hot(y, 3)).T @ x / 6

    score = get_proxy("diswot_semantic", always_fallback=False).score(LinearHead(w_s), ctx)
    assert score == pytest.approx(-float(ickd_distance(grad(w_s).double(), grad(w_t).double())), rel=1e-6)
    relation = get_proxy("diswot_relation").score(LinearHead(w_s), ctx.for_candidate(None))
    assert relation == 0.0  # both feature maps are the input itself


def test_weighted_sum_and_options() -> None:
    student = tiny_net(1)
    _, view = example_context(tiny_net(0))
    sem = get_proxy("diswot_semantic").score(student, view)
    rel = get_proxy("diswot_relation").score(student, view)
    assert sem < 0 and rel < 0
    assert get_proxy("diswot").score(student, view) == pytest.approx(sem + rel, rel=1e-12)
    assert get_proxy("diswot", w_sem=2.0, w_rel=0.5).score(student, view) == pytest.approx(2 * sem + 0.5 * rel)
    assert get_proxy("diswot").config() == {"name": "diswot", "w_sem": 1.0, "w_rel": 1.0, "fallback": "class_gram",
                                            "always_fallback": True}
    # by default the class-Gram form even for equal widths (the tiny nets all end at 8 channels), so a
    # search over mixed widths ranks one quantity; always_fallback=False gives the paper's ICKD form
    g_s, g_t = _teacher_student.student_fc_grad(student, view), _teacher_student.teacher_fc_grad(view)
    assert sem == pytest.approx(-float(class_gram_distance(g_s.double(), g_t.double())), rel=1e-12)
    paper = get_proxy("diswot_semantic", always_fallback=False).score(student, view)
    assert paper == pytest.approx(-float(ickd_distance(g_s.double(), g_t.double())), rel=1e-12)
    assert get_proxy("diswot", fallback="projection").config()["always_fallback"] is False
    with pytest.raises(BadInputError, match="needs fallback='class_gram'"):
        get_proxy("diswot", fallback="projection", always_fallback=True)
    with pytest.raises(BadInputError, match="fallback must be one of"):
        get_proxy("diswot", fallback="pca")
    with pytest.raises(BadInputError, match="w_rel must be"):
        get_proxy("diswot", w_rel=-1.0)


def test_one_context_reused_for_two_students_never_mixes_their_passes() -> None:
    ctx = ProxyContext(torch.randn(8, 3, 8, 8), torch.arange(8) % 4, 4, teacher=tiny_net(0))
    a, b = tiny_net(1), tiny_net(2)
    first = get_proxy("diswot").score(a, ctx)
    assert get_proxy("diswot").score(b, ctx) != first
    assert get_proxy("diswot").score(a, ctx) == first
    with torch.no_grad():
        a.fc.weight.mul_(-1.0)  # changed in place: the version counter moves, the pass is recomputed
    assert get_proxy("diswot_semantic").score(a, ctx) != get_proxy("diswot_semantic").score(b, ctx)
    assert get_proxy("diswot").score(a, ctx) != first


def test_class_count_mismatch_is_a_clear_error() -> None:
    ctx = example_context(tiny_net(0))[0]
    with pytest.raises(BadInputError, match="same number of classes.*num_classes=4"):
        get_proxy("diswot").score(TinyNet(num_classes=5), ctx)


def test_teacher_work_is_done_once_and_the_suite_shares_one_student_forward() -> None:
    torch.manual_seed(0)
    teacher = timm.create_model("resnet18", num_classes=10)
    teacher_calls, student_calls = [], []
    teacher.conv1.register_forward_hook(lambda *a: teacher_calls.append(1))
    ctx = ProxyContext(torch.randn(8, 3, 32, 32), torch.arange(8) % 10, 10, teacher=teacher)
    space, rng = get_space("nb201"), __import__("numpy").random.default_rng(0)
    proxies = [get_proxy(name) for name in SUITE]
    seconds = []
    for i in range(5):
        torch.manual_seed(i)
        student = space.build(space.sample(rng), num_classes=10).to(memory_format=torch.channels_last)
        handle = student.stem.register_forward_hook(lambda *a: student_calls.append(1))
        view = ctx.for_candidate(None)
        scores = [p.score(student, view) for p in proxies]
        handle.remove()
        assert all(math.isfinite(s) and s <= 0 for s in scores)
        assert scores[0] == pytest.approx(scores[1] + scores[2], rel=1e-12)
        assert len(student_calls) == i + 1, "the three DisWOT proxies must share one student forward"
        seconds.append(ctx.teacher_seconds)
    assert len(teacher_calls) == 1, "the teacher runs once per calibration batch"
    assert seconds[0] > 0 and seconds[1:] == [seconds[0]] * 4


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def _check_untouched(net: nn.Module, before: dict[str, torch.Tensor], training: bool) -> None:
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert all(p.grad is None for p in net.parameters()) and net.training == training


@pytest.fixture(scope="module")
def resnet_teacher() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=10)


def _hetero_ctx(teacher: nn.Module) -> ProxyContext:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=gen).contiguous(memory_format=torch.channels_last)
    return ProxyContext(images, torch.arange(8) % 10, 10, teacher=teacher)


def test_resnet_teacher_with_nb201_student(resnet_teacher: nn.Module) -> None:
    space = get_space("nb201")
    arch = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                             "skip_connect~2|")
    torch.manual_seed(3)
    student = space.build(arch, num_classes=10).to(memory_format=torch.channels_last)  # 64 ch at 8x8 vs 512 at 1x1
    ctx, s_before, t_before = _hetero_ctx(resnet_teacher), _state(student), _state(resnet_teacher)
    student.eval()
    scores = {name: get_proxy(name).score(student, ctx.for_candidate(None)) for name in SUITE}
    again = {name: get_proxy(name).score(student, _hetero_ctx(resnet_teacher).for_candidate(None)) for name in SUITE}
    assert scores == again, "scores must be deterministic"
    assert all(math.isfinite(v) and v < 0 for v in scores.values())
    projected = get_proxy("diswot_semantic", fallback="projection").score(student, ctx.for_candidate(None))
    assert math.isfinite(projected) and projected != scores["diswot_semantic"]
    _check_untouched(student, s_before, training=False)
    _check_untouched(resnet_teacher, t_before, training=True)


def test_resnet_teacher_with_vit_student(resnet_teacher: nn.Module) -> None:
    torch.manual_seed(4)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=10)
    ctx, before = _hetero_ctx(resnet_teacher), _state(vit)
    view = ctx.for_candidate(None)
    scores = [get_proxy(name).score(vit, view) for name in SUITE]
    assert all(math.isfinite(v) and v < 0 for v in scores)
    assert scores[0] == pytest.approx(scores[1] + scores[2], rel=1e-12)
    student_pass = _passes.shared(view, "diswot_student_pass", vit, lambda: pytest.fail("the pass must be cached"))
    assert student_pass.features.shape == (8, 17, 192)  # tokens, flattened per sample
    _check_untouched(vit, before, training=True)


def test_a_copy_of_the_teacher_scores_the_maximum_zero(resnet_teacher: nn.Module) -> None:
    ctx = _hetero_ctx(resnet_teacher)
    for name in SUITE:
        assert get_proxy(name).score(copy.deepcopy(resnet_teacher), ctx.for_candidate(None)) == 0.0


def test_bn_log_scale_by_hand() -> None:
    # BN after an identity 1x1 conv (N(0,1) weights are drawn, so check the formula on the actual running_var):
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ctx = ProxyContext(torch.zeros(16, 3, 4, 4), torch.zeros(16, dtype=torch.long), 2)
    score = get_proxy("bn_log_scale").score(net, ctx.for_candidate(None))
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 1, 1, generator=gen)
    noise = torch.randn(16, 3, 4, 4, generator=gen)
    out = nn.functional.conv2d(noise, w)
    running_var = 0.9 + 0.1 * out.var(dim=(0, 2, 3), unbiased=True)
    assert score == pytest.approx(0.5 * math.log(float(running_var.mean())), rel=1e-5)
    assert torch.equal(net[1].running_var, torch.ones(4)), "the student is scored on a copy"
    flat = ProxyContext(torch.zeros(16, 3), torch.zeros(16, dtype=torch.long), 2)
    assert get_proxy("bn_log_scale").score(nn.Linear(3, 2), flat.for_candidate(None)) == 0.0  # no BatchNorm
