"""KD losses (METHODS.md §6) on hand-made tensors whose values are worked out in the comments."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from studentnas.cli.main import main
from studentnas.core.errors import BadInputError
from studentnas.distill import LOSSES, DisWOTRelationLoss, DisWOTSemanticLoss
from studentnas.distill.connectors import Connector, align_spatial, map_to_tokens, to_map, tokens_to_map
from studentnas.distill.losses import (
    ATLoss,
    AttentionQKV,
    CELoss,
    DKDLoss,
    FitNetLoss,
    KDLoss,
    MiniLMLoss,
    ModelOutputs,
    RKDLoss,
    capture_attention,
    compose_losses,
)

SQRT2 = math.sqrt(2.0)


def test_registry_and_list_command(capsys: pytest.CaptureFixture) -> None:
    expected = ["at", "ce", "diswot_relation", "diswot_semantic", "dkd", "fitnet", "kd", "minilm", "rkd"]
    assert LOSSES.list() == expected
    assert LOSSES.get("diswot_semantic") is DisWOTSemanticLoss
    assert LOSSES.get("diswot_relation") is DisWOTRelationLoss
    inputs = {name: LOSSES.get(name).inputs for name in expected}
    assert inputs == {"at": ("features",), "ce": ("logits", "labels"), "diswot_relation": ("features",),
                      "diswot_semantic": ("features",), "dkd": ("logits", "labels"), "fitnet": ("features",),
                      "kd": ("logits",), "minilm": ("attn",), "rkd": ("pre_logits",)}
    with pytest.raises(BadInputError, match="unknown loss 'diswot_relatoin'. Did you mean 'diswot_relation'"):
        LOSSES.get("diswot_relatoin")
    assert main(["list", "losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == expected
    assert lines[expected.index("kd")].split(None, 1)[1].startswith("Hinton KD")


# --------------------------------------------------------------------------------------------- logits


def test_kd_by_hand() -> None:
    # T = 1: p_t = softmax(ln 3, 0) = (3/4, 1/4), p_s = (1/2, 1/2):
    # KL = 3/4 ln(3/4 / 1/2) + 1/4 ln(1/4 / 1/2) = 3/4 ln 1.5 - 1/4 ln 2 = 0.130812
    kl = 0.75 * math.log(1.5) - 0.25 * math.log(2.0)
    z_t = torch.tensor([[math.log(3.0), 0.0]])
    assert float(KDLoss(T=1)(torch.zeros(1, 2), z_t)) == pytest.approx(kl, rel=1e-6)
    # T = 2 on doubled logits: the same softened distributions, times T^2 = 4
    assert float(KDLoss(T=2)(torch.zeros(1, 2), 2 * z_t)) == pytest.approx(4 * kl, rel=1e-6)
    # batchmean: a second, identical pair (KL 0) halves it -- the mean over samples, not over B*K elements
    two_s, two_t = torch.zeros(2, 2), torch.cat([z_t, torch.zeros(1, 2)])
    assert float(KDLoss(T=1)(two_s, two_t)) == pytest.approx(kl / 2, rel=1e-6)
    # gradient: d/dz_s [T^2 KL(p_t || softmax(z_s/T))] = T (p_s - p_t) / B = (1/2 - 3/4, 1/2 - 1/4) / 2
    z_s = torch.zeros(2, 2, requires_grad=True)
    KDLoss(T=1)(z_s, two_t).backward()
    assert z_s.grad[0].tolist() == pytest.approx([-0.125, 0.125], abs=1e-7)
    assert z_s.grad[1].tolist() == pytest.approx([0.0, 0.0], abs=1e-7)


def test_ce_by_hand() -> None:
    # uniform logits over K = 4: CE = ln 4; with smoothing 0.1 the target is still uniform-scored: ln 4 too
    z, y = torch.zeros(3, 4), torch.tensor([0, 1, 3])
    assert float(CELoss()(z, y)) == pytest.approx(math.log(4), rel=1e-6)
    assert float(CELoss(label_smoothing=0.1)(z, y)) == pytest.approx(math.log(4), rel=1e-6)
    # logits (ln 3, 0), label 0: p = 3/4, CE = ln(4/3); smoothing e = 0.2 over K = 2:
    # (1 - e + e/2) (-ln 3/4) + e/2 (-ln 1/4) = 0.9 ln(4/3) + 0.1 ln 4
    z1 = torch.tensor([[math.log(3.0), 0.0]])
    assert float(CELoss(0.2)(z1, torch.tensor([0]))) == pytest.approx(0.9 * math.log(4 / 3) + 0.1 * math.log(4))
    assert CELoss.uses_teacher is False


def test_dkd_by_hand() -> None:
    # K = 3, target 0, T = 1. Student uniform: p_s = (1/3, 1/3, 1/3).
    # Teacher logits (0, ln 3, 0): p_t = (1/5, 3/5, 1/5).
    # TCKD = KL([1/5, 4/5] || [1/3, 2/3]) = 1/5 ln(3/5) + 4/5 ln(6/5)
    # NCKD = KL([3/4, 1/4] || [1/2, 1/2]) = 3/4 ln(3/2) + 1/4 ln(1/2)
    tckd = 0.2 * math.log(0.6) + 0.8 * math.log(1.2)
    nckd = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    # float64: TCKD is a small difference of logarithms (float32 rounds it at the 1e-6 level)
    z_s, z_t = torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[0.0, math.log(3.0), 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    t_part, n_part = DKDLoss(T=1).parts(z_s, z_t, y)
    assert (float(t_part), float(n_part)) == pytest.approx((tckd, nckd), rel=1e-6)
    assert float(DKDLoss(alpha=1, beta=8, T=1)(z_s, z_t, y)) == pytest.approx(tckd + 8 * nckd, rel=1e-6)
    # classical KD = TCKD + (1 - p_t(target)) NCKD = TCKD + 4/5 NCKD
    assert float(KDLoss(T=1)(z_s, z_t)) == pytest.approx(tckd + 0.8 * nckd, rel=1e-6)
    # T = 2 on doubled logits: same distributions, times T^2 = 4
    assert float(DKDLoss(alpha=0.5, beta=2, T=2)(z_s, 2 * z_t, y)) == pytest.approx(4 * (0.5 * tckd + 2 * nckd),
                                                                                     rel=1e-6)
    # a batch of two (second pair identical, KL 0) halves both parts
    two = DKDLoss(alpha=1, beta=1, T=1)(torch.zeros_like(z_t).repeat(2, 1), torch.cat([z_t, torch.zeros_like(z_t)]),
                                        torch.tensor([0, 2]))
    assert float(two) == pytest.approx((tckd + nckd) / 2, rel=1e-6)


def test_dkd_equals_kd_decomposition_on_random_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(6, 5, generator=gen,
                                                                                  dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=gen)
    # per sample KD_b = TCKD_b + (1 - p_t,b(y_b)) NCKD_b; check one sample at a time
    for b in range(6):
        zs, zt, yb = z_s[b:b + 1], z_t[b:b + 1], y[b:b + 1]
        tckd, nckd = DKDLoss(T=3).parts(zs, zt, yb)
        p_gt = F.softmax(zt / 3, dim=1)[0, yb[0]]
        assert float(KDLoss(T=3)(zs, zt)) == pytest.approx(9 * float(tckd + (1 - p_gt) * nckd), rel=1e-9)


# ------------------------------------------------------------------------------------------- connectors


def test_layouts() -> None:
    # 1 class token + 2 x 3 grid, D = 2; grid given, prefix inferred as 7 - 6 = 1
    tokens = torch.arange(14.0).reshape(1, 7, 2)
    m = tokens_to_map(tokens, grid=(2, 3))
    assert m.shape == (1, 2, 2, 3)
    assert m[0, 0].tolist() == [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]]   # channel 0 of patch tokens 1..6
    assert torch.equal(map_to_tokens(m), tokens[:, 1:])
    assert to_map(torch.randn(2, 196, 8)).shape == (2, 8, 14, 14)     # no class token
    assert to_map(torch.randn(2, 197, 8)).shape == (2, 8, 14, 14)     # class token dropped
    assert to_map(torch.randn(2, 5)).shape == (2, 5, 1, 1)
    with pytest.raises(BadInputError, match="pass prefix_tokens"):
        to_map(torch.randn(1, 34, 4))                                 # 34..26: no square
    # pooling when shrinking, bilinear when growing (a constant stays constant)
    assert align_spatial(torch.ones(1, 1, 4, 4) * 3, (2, 2)).tolist() == [[[[3.0, 3.0], [3.0, 3.0]]]]
    assert align_spatial(torch.ones(1, 1, 1, 1) * 3, (2, 3)).flatten().tolist() == [3.0] * 6


def _eval_connector(loss: FitNetLoss, weight: float) -> None:
    # connector = BN(conv(x)) with conv weight w and BN in eval mode with mean 0, var 1, eps 0: y = w x
    with torch.no_grad():
        loss.connector.conv.weight.fill_(weight)
    loss.connector.bn.eps = 0.0
    loss.eval()


def test_fitnet_by_hand() -> None:
    # student 1 x 1 x 2 x 2 map [[1, 3], [5, 7]], connector x 2 -> [[2, 6], [10, 14]], pooled to the teacher's
    # 1 x 1: 8. Teacher 5: MSE = (8 - 5)^2 = 9
    loss = FitNetLoss(student_channels=1, teacher_channels=1)
    _eval_connector(loss, 2.0)
    f_s = torch.tensor([[1.0, 3.0], [5.0, 7.0]]).reshape(1, 1, 2, 2)
    assert loss(f_s, torch.full((1, 1, 1, 1), 5.0)).item() == pytest.approx(9.0)
    # teacher as ViT tokens: class token 9 + 2 x 2 patches (1, 2, 3, 4), D = 1 -> map [[1, 2], [3, 4]];
    # student 1 x 1 map 1 -> x 2 = 2 -> upsampled to a constant 2 x 2 of 2s:
    # MSE = ((2-1)^2 + (2-2)^2 + (2-3)^2 + (2-4)^2) / 4 = 6 / 4
    f_t = torch.tensor([9.0, 1.0, 2.0, 3.0, 4.0]).reshape(1, 5, 1)
    assert loss(torch.ones(1, 1, 1, 1), f_t).item() == pytest.approx(1.5)
    # student as tokens without a class token (4 = 2 x 2 grid), teacher as the map: same numbers as the first case
    s_tokens = f_s.flatten(2).transpose(1, 2)
    assert loss(s_tokens, torch.full((1, 1, 1, 1), 5.0)).item() == pytest.approx(9.0)


def test_fitnet_build_and_gradients_for_a_vit_student_and_cnn_teacher() -> None:
    torch.manual_seed(0)
    # student: 3 ViT blocks of 1 + 4 x 4 tokens, D = 6; teacher: 4 CNN stages
    s_feats = [torch.randn(2, 17, 6, requires_grad=True) for _ in range(3)]
    t_feats = [torch.randn(2, c, r, r) for c, r in ((8, 16), (16, 8), (32, 4), (64, 2))]
    student, teacher = ModelOutputs(features=s_feats, prefix_tokens=1), ModelOutputs(features=t_feats)
    loss = FitNetLoss.build(student, teacher)               # middle stages: student 1 (D = 6), teacher 2 (32 ch)
    assert (loss.connector.in_channels, loss.connector.out_channels) == (6, 32)
    value = loss.forward_outputs(student, teacher)
    value.backward()
    assert s_feats[1].grad is not None and s_feats[1].grad.abs().sum() > 0
    assert s_feats[0].grad is None and s_feats[2].grad is None
    assert loss.connector.conv.weight.grad.abs().sum() > 0 and loss.connector.bn.weight.grad.abs().sum() > 0
    # explicit stages; an out-of-range stage names the valid range
    assert FitNetLoss.build(student, teacher, stage=-1, teacher_stage=0).connector.out_channels == 8
    with pytest.raises(BadInputError, match=r"stage 7 does not exist, the teacher has 4 stages \(valid: -4..3\)"):
        FitNetLoss.build(student, teacher, teacher_stage=7)
    with pytest.raises(BadInputError, match="sizes its connector from one batch"):
        FitNetLoss.build()


# ------------------------------------------------------------------------------------------ attention


def test_attention_transfer_by_hand() -> None:
    # student 1 x 2 x 1 x 2: channels (1, 0) and (1, 0) -> energy (2, 0) -> a_s = (1, 0)
    # teacher all ones, 3 channels -> energy (3, 3) -> a_t = (1, 1) / sqrt 2
    # mean over the 2 positions of (a_s - a_t)^2 = ((1 - 1/sqrt2)^2 + 1/2) / 2 = 1 - 1/sqrt2
    f_s = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    expected = 1 - 1 / SQRT2
    assert float(ATLoss()(f_s, torch.ones(1, 3, 1, 2))) == pytest.approx(expected, rel=1e-6)
    # the teacher at 2 x 2: its energy (all equal) is average-pooled to 1 x 2 -> the same a_t
    assert float(ATLoss()(f_s, torch.ones(1, 3, 2, 2))) == pytest.approx(expected, rel=1e-6)
    # p = 4: |F|^4 summed: (2, 0) again for the student -> same value
    assert float(ATLoss(p=4)(f_s, torch.ones(1, 3, 1, 2))) == pytest.approx(expected, rel=1e-6)
    # stage lists: 3 student stages vs 5 teacher stages pair as (0,1), (1,3), (2,4); only pair (1, 3) differs
    same = torch.ones(1, 3, 1, 2)
    s_list = [same, f_s, same]
    t_list = [same, same, same, same, same]
    assert float(ATLoss()(s_list, t_list)) == pytest.approx(expected, rel=1e-6)
    assert float(ATLoss(stages=[[0, 0], [2, 4]])(s_list, t_list)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(BadInputError, match="pairs"):
        ATLoss(stages=[1, 2])


# ----------------------------------------------------------------------------------------------- RKD


def test_rkd_distance_by_hand() -> None:
    # student: (0,0), (1,0), (0,1): distances 1, 1, sqrt2 (pairs 01, 02, 12); mu = (2 + sqrt2) / 3
    # teacher: (0,0), (1,0), (2,0): distances 1, 2, 1; mu = 4/3 -> psi_t = (3/4, 3/2, 3/4)
    e_s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    e_t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    mu_s = (2 + SQRT2) / 3
    diffs = [1 / mu_s - 0.75, 1 / mu_s - 1.5, SQRT2 / mu_s - 0.75]   # all below 1 in size: Huber = x^2 / 2
    expected = sum(0.5 * d * d for d in diffs) / 3                   # each unordered pair counted twice of 6
    rkd = RKDLoss(distance_weight=1.0, angle_weight=0.0)
    assert float(rkd(e_s, e_t)) == pytest.approx(expected, rel=1e-6)
    # scale-free: the teacher's geometry doubled costs the same; its own geometry costs nothing
    assert float(rkd(e_s, 2 * e_t)) == pytest.approx(expected, rel=1e-6)
    assert float(RKDLoss()(3 * e_t, e_t)) == pytest.approx(0.0, abs=1e-6)
    # weights: 25 distance + 50 angle; the angle term is 1.75 / 3 (RKDLoss docstring)
    assert float(RKDLoss()(e_s, e_t)) == pytest.approx(25 * expected + 50 * 1.75 / 3, rel=1e-6)


def test_rkd_gradients_are_finite_with_duplicate_samples() -> None:
    e_s = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [3.0, 1.0]], requires_grad=True)
    RKDLoss()(e_s, torch.randn(4, 7)).backward()
    assert torch.isfinite(e_s.grad).all() and e_s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 3 samples"):
        RKDLoss(distance_weight=0.0)(torch.randn(2, 3), torch.randn(2, 3))


# -------------------------------------------------------------------------------------------- DisWOT


def test_identical_features_give_zero() -> None:
    f = torch.randn(4, 6, 3, 3)
    assert float(DisWOTSemanticLoss()(f, f.clone())) == pytest.approx(0.0, abs=1e-12)
    assert float(DisWOTRelationLoss()(f, f.clone())) == 0.0


def test_relation_loss_on_a_2x2_gram_by_hand() -> None:
    # A_s = [[1,0],[1,1]] -> rownorm(A A^T) = [[1,1]/sqrt2, [1,2]/sqrt5]; A_t = I -> I.
    # ||.||_F^2 / B^2 = (4 - sqrt2 - 4/sqrt5) / 4.
    f_s = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).reshape(2, 2, 1, 1)
    f_t = torch.eye(2).reshape(2, 1, 2, 1)  # another width and shape: the Gram only sees flattened samples
    assert float(DisWOTRelationLoss()(f_s, f_t)) == pytest.approx((4 - math.sqrt(2) - 4 / math.sqrt(5)) / 4,
                                                                  rel=1e-6)


def test_semantic_loss_on_a_2x2_channel_correlation_by_hand() -> None:
    # one sample, C = 2, 2 positions. F_s = I -> F F^T = I. F_t = all ones -> F F^T = 2 J -> rows [1,1]/sqrt2.
    # ||I - J/sqrt2||_F^2 = 2 (1 - 1/sqrt2)^2 + 2 * 1/2 = 4 - 2 sqrt2; / (B*C) = 2 - sqrt2.
    f_s = torch.eye(2).reshape(1, 2, 2)
    f_t = torch.ones(1, 2, 1, 2)
    assert float(DisWOTSemanticLoss()(f_s, f_t)) == pytest.approx(2 - math.sqrt(2), rel=1e-6)
    # spatial sizes may differ: the teacher's 2 positions as 4 (duplicated) give the same correlation
    assert float(DisWOTSemanticLoss()(f_s, torch.ones(1, 2, 2, 2))) == pytest.approx(2 - math.sqrt(2), rel=1e-6)
    # through ModelOutputs, ViT tokens become maps: tokens (B=1, N=2, D=2) = class token (5, -3) + one patch
    # token (1, 1) on a 1 x 1 grid -> the map ones(1, 2, 1, 1) -> rows [1,1]/sqrt2 again, the same 2 - sqrt2
    student = ModelOutputs(features=[torch.eye(2).reshape(1, 2, 1, 2)])
    teacher = ModelOutputs(features=[torch.tensor([[[5.0, -3.0], [1.0, 1.0]]])], prefix_tokens=1)
    assert float(DisWOTSemanticLoss.build(student, teacher).forward_outputs(student, teacher)) == pytest.approx(
        2 - math.sqrt(2), rel=1e-6)


def test_gradients_reach_the_student_and_the_connector_only() -> None:
    torch.manual_seed(0)
    f_t = torch.randn(4, 8, 2, 2, requires_grad=True)
    f_s = torch.randn(4, 3, 5, 5, requires_grad=True)
    sem = DisWOTSemanticLoss(student_channels=3, teacher_channels=8)
    total = sem(f_s, f_t) + DisWOTRelationLoss()(f_s, f_t)
    total.backward()
    assert f_s.grad is not None and f_s.grad.abs().sum() > 0
    assert f_t.grad is None, "the teacher's features are targets"
    assert all(p.grad is not None for p in sem.connector.parameters())
    assert sum(p.numel() for p in DisWOTSemanticLoss(8, 8).parameters()) == 0  # equal widths: no connector


def test_width_mismatch_without_a_connector_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="student width 3 != teacher width 8.*student_channels=3, teacher_channels=8"):
        DisWOTSemanticLoss()(torch.randn(2, 3, 2, 2), torch.randn(2, 8, 2, 2))
    with pytest.raises(BadInputError, match="positive channel count"):
        DisWOTSemanticLoss(student_channels=0, teacher_channels=8)
    with pytest.raises(ValueError, match="batch sizes differ"):
        DisWOTRelationLoss()(torch.randn(2, 3), torch.randn(3, 3))


# -------------------------------------------------------------------------------------------- MiniLM


def test_minilm_by_hand() -> None:
    # B = 1, one head, N = 2 tokens, d = 1. Student q = k = (1, 0): scores [[1, 0], [0, 0]] ->
    # rows (e, 1)/(e + 1) and (1/2, 1/2). Teacher q = 0 -> both rows (1/2, 1/2).
    # KL row 0 = 1/2 ln((1/2)(e+1)/e) + 1/2 ln((1/2)(e+1)) = ln((e+1)/2) - 1/2; row 1 = 0; mean over 2 rows.
    one = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1)
    attention_kl = (math.log((math.e + 1) / 2) - 0.5) / 2
    s, t = AttentionQKV(one, one, one), AttentionQKV(torch.zeros_like(one), one, one)
    assert float(MiniLMLoss()(s, t)) == pytest.approx(attention_kl, rel=1e-6)
    # value relation: student v = (1, 0) -> the same rows as above; teacher v = 0 -> uniform: the same KL
    s2, t2 = AttentionQKV(one, one, one), AttentionQKV(one, one, torch.zeros_like(one))
    assert float(MiniLMLoss()(s2, t2)) == pytest.approx(attention_kl, rel=1e-6)
    # v2 relations on the first pair: qq (student (1,0).(1,0)) vs teacher q = 0 -> the same KL; kk and vv equal
    assert float(MiniLMLoss(relations=["qq", "kk", "vv"])(s, t)) == pytest.approx(attention_kl, rel=1e-6)


def test_minilm_relation_heads_when_head_counts_differ() -> None:
    torch.manual_seed(0)
    # teacher: 2 heads of width 1; student: 1 head of width 2 holding the teacher's two heads side by side.
    # Relation heads = gcd(1, 2) = 1: the teacher's heads are concatenated into one head of width 2, equal to
    # the student's -> every relation equal -> loss 0.
    t = AttentionQKV(*torch.randn(3, 2, 2, 5, 1))        # B = 2, heads = 2, N = 5, d = 1
    s = AttentionQKV(*(x.transpose(1, 2).reshape(2, 5, 1, 2).transpose(1, 2) for x in t))
    loss = MiniLMLoss(relations=["qk", "vv", "qq", "kk"])
    assert loss.heads_for(s, t) == 1
    assert float(loss(s, t)) == pytest.approx(0.0, abs=1e-6)
    # 4 vs 6 heads -> 2 relation heads; 3 relation heads do not split the student's 4 x 8 = 32 channels
    s4, t6 = AttentionQKV(*torch.randn(3, 2, 4, 5, 8)), AttentionQKV(*torch.randn(3, 2, 6, 5, 4))
    assert MiniLMLoss().heads_for(s4, t6) == 2
    with pytest.raises(BadInputError, match="width 32 does not split into 3 relation heads"):
        MiniLMLoss(relation_heads=3)(s4, t6)
    with pytest.raises(ValueError, match="same batch and tokens"):
        MiniLMLoss()(s4, AttentionQKV(*torch.randn(3, 2, 6, 7, 4)))


def test_minilm_on_real_timm_vits() -> None:
    import timm

    torch.manual_seed(0)
    kw = {"img_size": 16, "patch_size": 8, "num_classes": 3}
    teacher = timm.create_model("vit_tiny_patch16_224", embed_dim=24, depth=2, num_heads=3, **kw).eval()
    student = timm.create_model("vit_tiny_patch16_224", embed_dim=16, depth=1, num_heads=2, **kw)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad(), capture_attention(teacher) as t_attn:
        teacher(x)
    with capture_attention(student) as s_attn:
        student(x)
    assert [tuple(a.q.shape) for a in t_attn] == [(2, 3, 5, 8)] * 2 and tuple(s_attn[0].v.shape) == (2, 2, 5, 8)
    loss = compose_losses([{"name": "minilm", "relations": ["qk", "vv"]}])
    result = loss(ModelOutputs(attn=s_attn), ModelOutputs(attn=t_attn))
    result.total.backward()
    assert result.total.item() > 0
    assert student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    with pytest.raises(BadInputError, match="no self-attention layer"):
        with capture_attention(torch.nn.Conv2d(3, 3, 1)):
            pass


# ------------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("name", ["kd", "dkd", "at", "rkd", "fitnet", "diswot_semantic", "diswot_relation",
                                  "minilm"])
def test_gradcheck_against_finite_differences(name: str) -> None:
    gen = torch.Generator().manual_seed(1)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    labels = torch.tensor([0, 2, 1, 2])
    cases = {
        "kd": (KDLoss(T=2), rand(4, 3), rand(4, 3)),
        "dkd": (DKDLoss(alpha=1, beta=2, T=2), rand(4, 3), rand(4, 3)),
        "at": (ATLoss(), rand(4, 2, 3, 3), rand(4, 5, 2, 2)),
        "rkd": (RKDLoss(), rand(4, 3), rand(4, 6)),
        "fitnet": (FitNetLoss(2, 3), rand(4, 2, 2, 2), rand(4, 3, 1, 1)),
        "diswot_semantic": (DisWOTSemanticLoss(2, 3), rand(4, 2, 2, 2), rand(4, 3, 2, 2)),
        "diswot_relation": (DisWOTRelationLoss(), rand(4, 2, 2, 2), rand(4, 3, 2, 2)),
        "minilm": (MiniLMLoss(), rand(1, 2, 4, 3), AttentionQKV(*rand(3, 1, 3, 4, 2))),
    }
    loss, s, t = cases[name]
    loss = loss.double()
    if name == "minilm":
        def fn(q: torch.Tensor) -> torch.Tensor:
            return loss(AttentionQKV(q, q.flip(-1), q * 2), t)
    elif name == "dkd":
        def fn(x: torch.Tensor) -> torch.Tensor:
            return loss(x, t, labels)
    else:
        def fn(x: torch.Tensor) -> torch.Tensor:
            return loss(x, t)
    assert torch.autograd.gradcheck(fn, (s.requires_grad_(),), eps=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------------------ composition


def test_compose_weighted_sum_parts_and_connectors() -> None:
    torch.manual_seed(0)
    feats_s = [torch.randn(4, 4, 8, 8, requires_grad=True), torch.randn(4, 8, 4, 4, requires_grad=True)]
    feats_t = [torch.randn(4, 16, 8, 8), torch.randn(4, 32, 4, 4), torch.randn(4, 64, 2, 2)]
    z_s, z_t, y = torch.randn(4, 5, requires_grad=True), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    student = ModelOutputs(logits=z_s, features=feats_s, pre_logits=feats_s[-1].mean((2, 3)))
    teacher = ModelOutputs(logits=z_t, features=feats_t, pre_logits=feats_t[-1].mean((2, 3)))
    specs = [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "T": 4},
             {"name": "fitnet", "weight": 0.5}, {"name": "at", "weight": 1000}, {"name": "rkd", "weight": 2},
             {"name": "kd", "weight": 0.25, "T": 1}, {"name": "diswot_semantic", "weight": 3}, "diswot_relation",
             {"name": "dkd", "weight": 0.0}]
    loss = compose_losses(specs, student, teacher)
    assert loss.inputs == ("logits", "labels", "features", "pre_logits") and loss.uses_teacher
    assert list(loss.weights) == ["ce", "kd", "fitnet", "at", "rkd", "kd_2", "diswot_semantic", "diswot_relation",
                                  "dkd"]
    assert loss.config()[1] == {"name": "kd", "weight": 0.9, "T": 4}
    result = loss(student, teacher, y)
    with torch.no_grad():
        by_hand = (0.1 * F.cross_entropy(z_s, y) + 0.9 * KDLoss(T=4)(z_s, z_t) + 0.25 * KDLoss(T=1)(z_s, z_t)
                   + 1000 * ATLoss()(feats_s, feats_t) + 2 * RKDLoss()(student.pre_logits, teacher.pre_logits)
                   + DisWOTRelationLoss()(feats_s[-1], feats_t[-1]))
    fitnet, sem = result.parts["fitnet"], result.parts["diswot_semantic"]
    assert result.total.item() == pytest.approx(float(by_hand + 0.5 * fitnet + 3 * sem), rel=1e-6)
    assert float(result.parts["kd_2"]) == pytest.approx(KDLoss(T=1)(z_s, z_t).item(), rel=1e-6)
    assert all(not p.requires_grad for p in result.parts.values())
    # fitnet took the middle stages: student 1 (8 ch), teacher 1 (32 ch); diswot_semantic the last (8 -> 64)
    assert loss.losses["fitnet"].connector.conv.weight.shape == (32, 8, 1, 1)
    assert loss.losses["diswot_semantic"].connector[0].weight.shape == (64, 8, 1)
    result.total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())
    assert z_s.grad.abs().sum() > 0 and all(f.grad.abs().sum() > 0 for f in feats_s)


def test_compose_without_a_teacher_and_missing_inputs() -> None:
    ce = compose_losses(["ce"])
    assert not ce.uses_teacher and ce.inputs == ("logits", "labels")
    z = torch.zeros(2, 4)
    assert float(ce(ModelOutputs(logits=z), None, torch.tensor([0, 1])).total) == pytest.approx(math.log(4))
    kd = compose_losses([{"name": "kd", "T": 2}])
    with pytest.raises(BadInputError, match="losses kd need the teacher's outputs"):
        kd(ModelOutputs(logits=z))
    with pytest.raises(BadInputError, match="loss 'kd' needs the teacher's logits, but they were not given"):
        kd(ModelOutputs(logits=z), ModelOutputs(features=[torch.zeros(2, 1, 1, 1)]))
    with pytest.raises(BadInputError, match="loss 'ce' needs the batch's labels"):
        ce(ModelOutputs(logits=z))
    with pytest.raises(BadInputError, match="needs the student's features.*forward_intermediates"):
        compose_losses(["at"])(ModelOutputs(logits=z), ModelOutputs(features=[torch.zeros(2, 1, 1, 1)]))


@pytest.mark.parametrize(("specs", "needles"), [
    ([{"name": "fitnets"}], ["unknown loss 'fitnets'", "Did you mean 'fitnet'", "Known: at, ce"]),
    ([{"name": "kd", "T": 4, "tau": 2}], ["loss 'kd' has no parameter 'tau'", "Valid parameters: T"]),
    ([{"name": "dkd", "betta": 8}], ["no parameter 'betta'", "Did you mean 'beta'",
                                     "Valid parameters: alpha, beta, T"]),
    ([{"name": "kd", "T": 0}], ["loss 'kd': the temperature T must be a positive number, got 0"]),
    ([{"name": "kd", "weight": -1}], ["loss 'kd': weight must be a number >= 0, got -1"]),
    ([{"name": "kd", "weight": "high"}], ["weight must be a number >= 0, got 'high'"]),
    ([], ["losses must be a non-empty list"]),
    ({"name": "kd"}, ["losses must be a non-empty list"]),
    ([{"weight": 1}], ["loss entry 0 must be a loss name or a mapping with a 'name'"]),
    ([{"name": "fitnet"}], ["loss 'fitnet' sizes its connector from one batch"]),
    ([{"name": "minilm", "relations": ["qk", "vk"]}], ["relations must be distinct names from qk, vv, qq, kk"]),
    ([{"name": "at", "p": 0}], ["loss 'at': p must be a positive integer"]),
    ([{"name": "ce", "label_smoothing": -0.1}], ["label_smoothing must be a number >= 0"]),
])
def test_compose_bad_input(specs: object, needles: list[str]) -> None:
    with pytest.raises(BadInputError) as info:
        compose_losses(specs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_connector_rejects_bad_widths() -> None:
    with pytest.raises(BadInputError, match="positive channel count"):
        Connector(0, 4)
    with pytest.raises(ValueError, match=r"expected B x 3 x H x W"):
        Connector(3, 4)(torch.randn(2, 5, 2, 2))
