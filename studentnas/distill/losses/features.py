"""Losses on intermediate feature maps: FitNets hints and attention transfer (METHODS.md §6.2, §6.3).

* ``fitnet`` (:class:`FitNetLoss`): ``MSE(r(F_s), F_t)`` on one stage of each network, with r a learned
  :class:`~studentnas.distill.connectors.Connector` (1x1 conv + BN to the teacher's width, then pooling or
  bilinear interpolation to the teacher's H x W). Tokens are turned into maps first, so any pairing of
  CNNs and ViTs works. One-stage variant: beta = 100 on the middle stage.
* ``at`` (:class:`ATLoss`): attention transfer. Per stage, the spatial attention map
  ``a(F) = normalise(flatten(sum_c |F_c|^p))`` (p = 2), and the loss is the mean over positions of
  ``(a_s - a_t)^2``, summed over paired stages (RepDistiller's form, beta = 1000). The channel sum is
  computed as a channel mean (:func:`studentnas.scoring.similarity.attention_energy`, shared with the ``kd_at``
  proxy): the constant factor 1/C cancels in the normalisation. No parameters; channel counts may
  differ, and when the sizes differ the larger attention map is average-pooled to the smaller.

Example:
    >>> import torch
    >>> f_s = [torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]     # student stages
    >>> f_t = [torch.randn(2, 32, 8, 8), torch.randn(2, 64, 4, 4)]    # teacher stages
    >>> fitnet = FitNetLoss(student_channels=16, teacher_channels=64)
    >>> value = fitnet(f_s[1], f_t[1]) + 1000 * ATLoss()(f_s, f_t)
    >>> value.shape
    torch.Size([])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from studentnas.core.errors import BadInputError
from studentnas.distill.connectors import Connector, to_map
from studentnas.distill.losses.base import LOSSES, DistillLoss, ModelOutputs, pair_stages, pick
from studentnas.scoring.similarity import attention_distance

__all__ = ["ATLoss", "FitNetLoss"]


def _stage_index(value: Any, what: str, loss: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise BadInputError(f"loss '{loss}': {what} must be a stage index (an int, negative counts from the end) "
                            f"or null for the middle stage, got {value!r}")
    return value


def _maps(outputs: ModelOutputs, role: str, loss: str) -> list[torch.Tensor]:
    feats = outputs.get("features", role, loss)
    if isinstance(feats, torch.Tensor):
        feats = [feats]
    return [to_map(f, outputs.prefix_tokens) for f in feats]


@LOSSES.register()
class FitNetLoss(DistillLoss):
    """FitNets hint: ``MSE(connector(F_s), F_t)`` on one stage pair; the connector is learned.

    The 1x1 conv + BN connector also aligns the spatial size and the token/map layout (METHODS §6.2).

    Args:
        student_channels, teacher_channels: the widths of the two stages (:meth:`build` reads them from
            example outputs; for tokens, the embedding width).
        stage: the student's stage index in ``ModelOutputs.features``; ``None`` = the middle stage
            (``len // 2``, RepDistiller's ``hint_layer=2`` on 3-stage CIFAR ResNets).
        teacher_stage: the teacher's stage index; ``None`` = the teacher's middle stage.

    The connector trains with the student and is discarded at export.

    Example:
        >>> import torch
        >>> loss = FitNetLoss(student_channels=4, teacher_channels=6)
        >>> f_s = torch.randn(2, 4, 8, 8, requires_grad=True)
        >>> f_t = torch.randn(2, 17, 6)      # ViT teacher: class token + 4 x 4 patches, D = 6
        >>> loss(f_s, f_t).backward()        # 4 -> 6 channels, 8 x 8 pooled to 4 x 4
        >>> loss.connector.conv.weight.grad.shape
        torch.Size([6, 4, 1, 1])
    """

    name = "fitnet"
    inputs = ("features",)

    def __init__(self, student_channels: int, teacher_channels: int, stage: int | None = None,
                 teacher_stage: int | None = None):
        super().__init__()
        self.connector = Connector(student_channels, teacher_channels)
        self.stage = _stage_index(stage, "stage", self.name)
        self.teacher_stage = _stage_index(teacher_stage, "teacher_stage", self.name)

    @classmethod
    def build(cls, student: ModelOutputs | None = None, teacher: ModelOutputs | None = None,
              **params: Any) -> FitNetLoss:
        if "student_channels" not in params or "teacher_channels" not in params:
            if student is None or teacher is None:
                raise BadInputError("loss 'fitnet' sizes its connector from one batch: give compose_losses the "
                                    "student's and teacher's ModelOutputs, or set student_channels and "
                                    "teacher_channels")
            stage = _stage_index(params.get("stage"), "stage", cls.name)
            teacher_stage = _stage_index(params.get("teacher_stage"), "teacher_stage", cls.name)
            params.setdefault("student_channels", pick(_maps(student, "student", cls.name), stage, "student",
                                                       cls.name).shape[1])
            params.setdefault("teacher_channels", pick(_maps(teacher, "teacher", cls.name), teacher_stage,
                                                       "teacher", cls.name).shape[1])
        return cls(**params)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        s, t = to_map(f_s), to_map(f_t).detach()
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"loss 'fitnet': batch sizes differ ({s.shape[0]} vs {t.shape[0]}); feed both "
                             "networks the same batch")
        if s.shape[1] != self.connector.in_channels or t.shape[1] != self.connector.out_channels:
            raise ValueError(f"loss 'fitnet': its connector maps {self.connector.in_channels} -> "
                             f"{self.connector.out_channels} channels, got student {s.shape[1]} and teacher "
                             f"{t.shape[1]}; build it with FitNetLoss.build on this pair's outputs")
        return F.mse_loss(self.connector(s, size=tuple(t.shape[-2:])), t.to(s.dtype))

    def forward_outputs(self, student: ModelOutputs, teacher: ModelOutputs,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        s = pick(_maps(student, "student", self.name), self.stage, "student", self.name)
        t = pick(_maps(teacher, "teacher", self.name), self.teacher_stage, "teacher", self.name)
        return self(s, t)


@LOSSES.register()
class ATLoss(DistillLoss):
    """Attention transfer: MSE of the L2-normalised spatial maps ``sum_c |F_c|^p``, summed over stage pairs.

    Zagoruyko & Komodakis; METHODS §6.3.

    Args:
        p: the exponent of the attention map (2 in the paper).
        stages: ``None`` pairs all stages (the longer list is subsampled evenly to the shorter,
            both last stages kept: :func:`~studentnas.distill.losses.base.pair_stages`); otherwise a list
            of ``[student_index, teacher_index]`` pairs.

    Example:
        >>> import torch, math
        >>> f_s = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])    # 1 x 2 x 1 x 2: energy (2, 0) -> a_s = (1, 0)
        >>> f_t = torch.ones(1, 3, 1, 2)                          # energy (3, 3) -> a_t = (1, 1)/sqrt 2
        >>> value = ATLoss()(f_s, f_t)                            # ((1 - 1/sqrt2)^2 + 1/2) / 2 = 1 - 1/sqrt2
        >>> round(float(value), 6) == round(1 - 1 / math.sqrt(2), 6)
        True
    """

    name = "at"
    inputs = ("features",)

    def __init__(self, p: int = 2, stages: Sequence[Sequence[int]] | None = None):
        super().__init__()
        if not isinstance(p, int) or isinstance(p, bool) or p < 1:
            raise BadInputError(f"loss 'at': p must be a positive integer exponent, got {p!r}; e.g. p=2")
        self.p = p
        self.stages = None if stages is None else [self._pair(pair) for pair in stages]

    @staticmethod
    def _pair(pair: Any) -> tuple[int, int]:
        ok = isinstance(pair, Sequence) and len(pair) == 2 and all(isinstance(i, int) and not isinstance(i, bool)
                                                                   for i in pair)
        if not ok:
            raise BadInputError(f"loss 'at': stages must be [student_index, teacher_index] pairs, got {pair!r}; "
                                "e.g. stages=[[1, 2], [2, 4]], or null to pair all stages")
        return int(pair[0]), int(pair[1])

    def forward(self, f_s: torch.Tensor | Sequence[torch.Tensor],
                f_t: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        s = [f_s] if isinstance(f_s, torch.Tensor) else list(f_s)
        t = [f_t] if isinstance(f_t, torch.Tensor) else list(f_t)
        if not s or not t:
            raise ValueError(f"loss 'at' got no stage maps (student {len(s)}, teacher {len(t)})")
        pairs = self.stages if self.stages is not None else pair_stages(len(s), len(t))
        total = s[0].new_zeros(())
        for i, j in pairs:
            a = pick(s, i, "student", self.name)
            b = pick(t, j, "teacher", self.name)
            total = total + attention_distance(to_map(a), to_map(b).detach().to(a.dtype), self.p)
        return total

    def forward_outputs(self, student: ModelOutputs, teacher: ModelOutputs,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        return self(_maps(student, "student", self.name), _maps(teacher, "teacher", self.name))
