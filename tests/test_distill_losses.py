"""DisWOT's similarities as training losses (METHODS.md §6.7, §6.9) on hand-made tensors."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import studentnas.distill as distill
import studentnas.distill.losses as losses
from studentnas.distill import LOSSES, DisWOTRelationLoss, DisWOTSemanticLoss
from studentnas.errors import BadInputError


def test_doctests() -> None:
    for module in (distill, losses):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_registry() -> None:
    assert LOSSES.get("diswot_semantic") is DisWOTSemanticLoss
    assert LOSSES.get("diswot_relation") is DisWOTRelationLoss
    with pytest.raises(BadInputError, match="unknown loss 'diswot_relatoin'. Did you mean 'diswot_relation'"):
        LOSSES.get("diswot_relatoin")


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
