"""DisWOT's semantic and relational similarities as training losses (METHODS.md §6.7, §6.9).

Both are differentiable with respect to the student's features (and the connector); the teacher's
features are targets (detached). They compute exactly the quantities the DisWOT proxies score, through
``studentnas.scoring.similarity``:

* ``diswot_semantic`` (:class:`DisWOTSemanticLoss`): the inter-channel-correlation (ICKD) loss between
  final-stage feature maps. The proxy's class-gradient form would need a teacher backward every step,
  so, as METHODS §6.9 suggests, training uses the channel correlation of the feature maps themselves.
  When the channel counts differ, a trainable 1x1 connector (conv + BatchNorm) maps the student to
  the teacher's width; discard it at export.
* ``diswot_relation`` (:class:`DisWOTRelationLoss`): the similarity-preserving loss, the row-normalised
  B x B batch Gram of per-sample flattened features, ``||A_s - A_t||_F^2 / B^2``. No parameters; any
  channel count, spatial size or layout (maps or tokens).

Both read the last stage of ``ModelOutputs.features`` (the pre-pool map) unless ``stage`` says otherwise.
Suggested weights ([our choice], §6.9): beta_rel = 3000 (SP convention), beta_sem in [0.5, 10].

Example:
    >>> import torch
    >>> f_t = torch.randn(4, 8, 3, 3)
    >>> loss = DisWOTSemanticLoss(student_channels=6, teacher_channels=8)
    >>> f_s = torch.randn(4, 6, 5, 5, requires_grad=True)   # other width and size: the connector maps it
    >>> value = loss(f_s, f_t) + DisWOTRelationLoss()(f_s, f_t)
    >>> value.backward(); f_s.grad.abs().sum() > 0
    tensor(True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.distill.connectors import to_map
from studentnas.distill.losses.base import LOSSES, DistillLoss, ModelOutputs, pick
from studentnas.scoring.similarity import batch_gram, ickd_distance, relation_distance

__all__ = ["DisWOTRelationLoss", "DisWOTSemanticLoss"]


def _width(value: int | None, what: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise BadInputError(f"DisWOTSemanticLoss: {what} must be a positive channel count or None, got {value!r}; "
                            "pass the final-stage widths, e.g. student_channels=64, teacher_channels=2048")
    return value


def _stage(value: Any, loss: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInputError(f"loss '{loss}': stage must be a stage index (an int, -1 = the last stage), "
                            f"got {value!r}")
    return value


def _stage_map(outputs: ModelOutputs, stage: int, role: str, loss: str) -> torch.Tensor:
    feats = outputs.get("features", role, loss)
    feats = [feats] if isinstance(feats, torch.Tensor) else feats
    return to_map(pick(feats, stage, role, loss), outputs.prefix_tokens)


@LOSSES.register()
class DisWOTSemanticLoss(DistillLoss):
    """ICKD loss ``sum_b ||rownorm(F_s F_s^T) - rownorm(F_t F_t^T)||_F^2 / (B*C)`` on B x C x ... maps.

    Args:
        student_channels, teacher_channels: the widths of the two maps. When both are given and
            differ, a 1x1 conv + BatchNorm connector (trained with the student) maps the student to
            the teacher's width; otherwise the widths must already agree. :meth:`build` reads them
            from example outputs.
        stage: which entry of ``ModelOutputs.features`` both networks use (-1: the final stage).

    Spatial sizes may differ (the C x C correlation sums over positions). Called on tensors, a 3-D input
    is B x C x L; through :meth:`forward_outputs`, 3-D stage outputs are ViT tokens and become maps
    (D channels) first.
    """

    name = "diswot_semantic"
    inputs = ("features",)

    def __init__(self, student_channels: int | None = None, teacher_channels: int | None = None, stage: int = -1):
        super().__init__()
        c_s, c_t = _width(student_channels, "student_channels"), _width(teacher_channels, "teacher_channels")
        self.stage = _stage(stage, self.name)
        self.connector: nn.Module = nn.Identity()
        if c_s is not None and c_t is not None and c_s != c_t:
            self.connector = nn.Sequential(nn.Conv1d(c_s, c_t, 1, bias=False), nn.BatchNorm1d(c_t))

    @classmethod
    def build(cls, student: ModelOutputs | None = None, teacher: ModelOutputs | None = None,
              **params: Any) -> DisWOTSemanticLoss:
        if student is not None and teacher is not None:
            stage = _stage(params.get("stage", -1), cls.name)
            params.setdefault("student_channels", _stage_map(student, stage, "student", cls.name).shape[1])
            params.setdefault("teacher_channels", _stage_map(teacher, stage, "teacher", cls.name).shape[1])
        return cls(**params)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        if f_s.ndim < 2 or f_t.ndim < 2:
            raise ValueError(f"DisWOTSemanticLoss needs B x C x ... features, got {tuple(f_s.shape)} and "
                             f"{tuple(f_t.shape)}")
        s = self.connector(f_s.reshape(f_s.shape[0], f_s.shape[1], -1))
        if s.shape[1] != f_t.shape[1]:
            raise ValueError(f"DisWOTSemanticLoss: student width {s.shape[1]} != teacher width {f_t.shape[1]}; "
                             f"build it with student_channels={f_s.shape[1]}, teacher_channels={f_t.shape[1]} "
                             "to add a connector")
        return ickd_distance(s, f_t.detach().to(s.dtype).reshape(f_t.shape[0], f_t.shape[1], -1))

    def forward_outputs(self, student: ModelOutputs, teacher: ModelOutputs,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        return self(_stage_map(student, self.stage, "student", self.name),
                    _stage_map(teacher, self.stage, "teacher", self.name))


@LOSSES.register()
class DisWOTRelationLoss(DistillLoss):
    """Similarity-preserving loss ``||batch_gram(F_s) - batch_gram(F_t)||_F^2 / B^2`` (any shapes, same B).

    Args:
        stage: which entry of ``ModelOutputs.features`` both networks use (-1: the pre-pool map).
    """

    name = "diswot_relation"
    inputs = ("features",)

    def __init__(self, stage: int = -1):
        super().__init__()
        self.stage = _stage(stage, self.name)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        if f_s.shape[0] != f_t.shape[0]:
            raise ValueError(f"DisWOTRelationLoss: batch sizes differ ({f_s.shape[0]} vs {f_t.shape[0]}); feed the "
                             "teacher and the student the same batch")
        return relation_distance(batch_gram(f_s), batch_gram(f_t.detach().to(f_s.dtype)))

    def forward_outputs(self, student: ModelOutputs, teacher: ModelOutputs,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        feats_s = student.get("features", "student", self.name)
        feats_t = teacher.get("features", "teacher", self.name)
        feats_s = [feats_s] if isinstance(feats_s, torch.Tensor) else feats_s
        feats_t = [feats_t] if isinstance(feats_t, torch.Tensor) else feats_t
        # the batch Gram flattens each sample, so tokens need no conversion (prefix tokens included)
        return self(pick(feats_s, self.stage, "student", self.name), pick(feats_t, self.stage, "teacher", self.name))
