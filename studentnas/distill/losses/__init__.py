"""Distillation losses for the final training stage, the ``LOSSES`` registry and :func:`compose_losses`.

May import: ``core``, ``scoring`` (the similarities the proxies use too) and ``distill.connectors``.

Every loss is a :class:`torch.nn.Module` (a :class:`DistillLoss`) registered in :data:`LOSSES` (``studentnas
list losses``), which declares what it consumes in ``inputs`` (see :mod:`.base` for the contract with the
trainer and :class:`ModelOutputs`). One module per family:

============================ ================ ===================================================== ===========
name                         inputs           what                                                  weight [1]
============================ ================ ===================================================== ===========
``ce``                       logits, labels   cross-entropy with the labels (label smoothing)       gamma
``kd``                       logits           Hinton KD, ``T^2 KL(p_t^T || p_s^T)``, batch mean      alpha, T=4
``dkd``                      logits, labels   decoupled KD ``T^2 (alpha TCKD + beta NCKD)``          1 (a=1, b=8)
``fitnet``                   features         FitNets hint, MSE after a learned connector           100
``at``                       features         attention transfer, normalised ``sum_c |F|^2`` maps    1000
``rkd``                      pre_logits       relational KD, 25 distance + 50 angle (Huber)         1
``diswot_semantic``          features         DisWOT inter-channel correlation (ICKD)               0.5-10
``diswot_relation``          features         DisWOT / SP batch-Gram relation                       3000
``minilm``                   attn             MiniLM attention + value-relation KL                  1
============================ ================ ===================================================== ===========

[1] RepDistiller / paper conventions (METHODS.md §6), with ``ce`` at 1 for the feature losses and
``ce`` 0.1 + ``kd`` 0.9 for KD alone.

Example:
    >>> import torch
    >>> sorted(LOSSES.list())
    ['at', 'ce', 'diswot_relation', 'diswot_semantic', 'dkd', 'fitnet', 'kd', 'minilm', 'rkd']
    >>> student = ModelOutputs(logits=torch.randn(4, 10), features=[torch.randn(4, 8, 8, 8)])
    >>> teacher = ModelOutputs(logits=torch.randn(4, 10), features=[torch.randn(4, 32, 4, 4)])
    >>> loss = compose_losses([{"name": "ce"}, {"name": "kd", "T": 4}, {"name": "fitnet", "weight": 100}],
    ...                       student, teacher)
    >>> loss.inputs, sum(p.numel() for p in loss.parameters())   # the connector: 8 x 32 conv + BN(32)
    (('logits', 'labels', 'features'), 320)
    >>> result = loss(student, teacher, torch.tensor([0, 1, 2, 3]))
    >>> sorted(result.parts)
    ['ce', 'fitnet', 'kd']
"""

from studentnas.distill.losses.base import INPUT_KINDS, LOSSES, AttentionQKV, DistillLoss, ModelOutputs, pair_stages
from studentnas.distill.losses.compose import ComposedLoss, LossResult, LossTerm, compose_losses, parse_loss_specs
from studentnas.distill.losses.diswot import DisWOTRelationLoss, DisWOTSemanticLoss
from studentnas.distill.losses.features import ATLoss, FitNetLoss
from studentnas.distill.losses.logits import CELoss, DKDLoss, KDLoss
from studentnas.distill.losses.minilm import MiniLMLoss, capture_attention
from studentnas.distill.losses.relational import RKDLoss

__all__ = [
    "INPUT_KINDS", "LOSSES", "ATLoss", "AttentionQKV", "CELoss", "ComposedLoss", "DKDLoss", "DisWOTRelationLoss",
    "DisWOTSemanticLoss", "DistillLoss", "FitNetLoss", "KDLoss", "LossResult", "LossTerm", "MiniLMLoss",
    "ModelOutputs", "RKDLoss", "capture_attention", "compose_losses", "pair_stages", "parse_loss_specs",
]
