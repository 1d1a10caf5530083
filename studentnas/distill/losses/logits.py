"""Losses on the logits: cross-entropy with the labels, Hinton's KD and decoupled KD (METHODS.md §6.1, §6.5).

* ``ce`` (:class:`CELoss`): the student's cross-entropy with the labels (optional label smoothing). Not a
  distillation loss, but registered so that one weighted list states the whole objective
  ``L = gamma*CE + alpha*KD + beta*L_feat``, e.g. RepDistiller's KD recipe ``ce`` 0.1 + ``kd`` 0.9, T = 4.
* ``kd`` (:class:`KDLoss`): ``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``, summed over classes and averaged
  over the batch (``batchmean``). The T^2 factor keeps the gradient's scale independent of T.
* ``dkd`` (:class:`DKDLoss`): decoupled KD, ``T^2 * (alpha*TCKD + beta*NCKD)`` with TCKD the KL between the
  binary (target, rest) distributions and NCKD the KL between the distributions renormalised over the
  non-target classes. With alpha = 1, beta = 1 - p_t(target) per sample it would be classical KD.

Example:
    >>> import torch
    >>> z_s, z_t, y = torch.zeros(2, 3), torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.tensor([0, 1])
    >>> kd = KDLoss(T=1.0)(z_s, z_t)
    >>> dkd = DKDLoss(alpha=1.0, beta=1.0, T=1.0)(z_s, z_t, y)
    >>> bool(dkd > 0), bool(kd > 0)
    (True, True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from studentnas.distill.losses.base import LOSSES, DistillLoss, ModelOutputs, check_number
from studentnas.scoring.similarity import hinton_kd

__all__ = ["CELoss", "DKDLoss", "KDLoss"]


def _check_logits(name: str, z_s: torch.Tensor, z_t: torch.Tensor) -> None:
    if z_s.ndim != 2 or z_s.shape != z_t.shape:
        raise ValueError(f"loss '{name}': student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} "
                         "must both be B x K with the same K; give the student the teacher's number of classes")


@LOSSES.register()
class CELoss(DistillLoss):
    """Cross-entropy of the student's logits with the labels (no teacher); optional label smoothing.

    Example:
        >>> import torch, math
        >>> value = CELoss()(torch.zeros(4, 10), torch.tensor([0, 1, 2, 3]))   # uniform prediction
        >>> round(float(value), 6) == round(math.log(10), 6)
        True
    """

    name = "ce"
    inputs = ("logits", "labels")
    uses_teacher = False

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", self.name, example="0.1")
        if self.label_smoothing >= 1:
            raise ValueError(f"loss 'ce': label_smoothing must be below 1, got {label_smoothing}; e.g. 0.1")

    def forward(self, z_s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z_s, labels, label_smoothing=self.label_smoothing)

    def forward_outputs(self, student: ModelOutputs, teacher: ModelOutputs,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        return self(student.get("logits", "student", self.name), self.check_labels(labels))


@LOSSES.register()
class KDLoss(DistillLoss):
    """Hinton KD: ``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``, batch mean (METHODS §6.1).

    Args:
        T: the temperature (4 on CIFAR, 1-4 on ImageNet).

    Example:
        >>> import torch, math
        >>> z_t = torch.tensor([[math.log(3.0), 0.0]])          # p_t = (3/4, 1/4); the student is uniform
        >>> value = KDLoss(T=1.0)(torch.zeros(1, 2), z_t)         # 3/4 ln(3/2) + 1/4 ln(1/2)
        >>> round(float(value), 6) == round(0.75 * math.log(1.5) + 0.25 * math.log(0.5), 6)
        True
    """

    name = "kd"
    inputs = ("logits",)

    def __init__(self, T: float = 4.0):  # noqa: N803 - T is the name in the papers and in the configs
        super().__init__()
        self.T = check_number(T, "the temperature T", self.name, positive=True, example="T=4")

    def forward(self, z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
        _check_logits(self.name, z_s, z_t)
        return hinton_kd(z_s, z_t.detach().to(z_s.dtype), self.T)


def _binary_kl_terms(log_p: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) and log(1 - p(target)) per sample, from B x K log-probabilities (stable)."""
    log_gt = log_p.gather(1, target[:, None]).squeeze(1)
    mask = F.one_hot(target, log_p.shape[1]).bool()
    log_rest = torch.logsumexp(log_p.masked_fill(mask, float("-inf")), dim=1)
    return log_gt, log_rest


@LOSSES.register()
class DKDLoss(DistillLoss):
    """Decoupled KD: ``T^2 * (alpha*TCKD + beta*NCKD)``, batch mean (METHODS §6.5).

    ``TCKD = KL([p_t(y), 1 - p_t(y)] || [p_s(y), 1 - p_s(y)])`` on the temperature-softened probabilities,
    ``NCKD = KL(p_t' || p_s')`` with ``p'`` the softmax of the logits without the target class y.

    Args:
        alpha: weight of TCKD (1 on CIFAR-100, 0.5 on ImageNet).
        beta: weight of NCKD (8 on CIFAR-100, 0.5 on ImageNet).
        T: the temperature (4 on CIFAR-100, 1 on ImageNet).

    The paper warms the loss weight up linearly over the first 20 epochs: that is a schedule on the
    term's weight, the trainer's job.

    Example:
        >>> import torch, math
        >>> z_t, y = torch.tensor([[0.0, math.log(3.0), 0.0]]), torch.tensor([0])   # p_t = (1/5, 3/5, 1/5)
        >>> value = DKDLoss(alpha=1.0, beta=0.0, T=1.0)(torch.zeros(1, 3), z_t, y)  # TCKD only, p_s uniform
        >>> round(float(value), 6) == round(0.2 * math.log(0.6) + 0.8 * math.log(1.2), 6)
        True
    """

    name = "dkd"
    inputs = ("logits", "labels")

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, T: float = 4.0):  # noqa: N803
        super().__init__()
        self.alpha = check_number(alpha, "alpha (the TCKD weight)", self.name, example="alpha=1")
        self.beta = check_number(beta, "beta (the NCKD weight)", self.name, example="beta=8")
        self.T = check_number(T, "the temperature T", self.name, positive=True, example="T=4")

    def parts(self, z_s: torch.Tensor, z_t: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(TCKD, NCKD), each a batch mean, without the T^2 factor and the weights."""
        _check_logits(self.name, z_s, z_t)
        if z_s.shape[1] < 2:
            raise ValueError(f"loss 'dkd' needs at least 2 classes, got {z_s.shape[1]}")
        if labels.shape[0] != z_s.shape[0]:
            raise ValueError(f"loss 'dkd': {labels.shape[0]} labels for a batch of {z_s.shape[0]}")
        b, k = z_s.shape
        log_s = F.log_softmax(z_s / self.T, dim=1)
        log_t = F.log_softmax(z_t.detach().to(z_s.dtype) / self.T, dim=1)
        gt_s, rest_s = _binary_kl_terms(log_s, labels)
        gt_t, rest_t = _binary_kl_terms(log_t, labels)
        tckd = (gt_t.exp() * (gt_t - gt_s) + rest_t.exp() * (rest_t - rest_s)).sum() / b
        others = ~F.one_hot(labels, k).bool()
        nt_s = F.log_softmax((z_s / self.T)[others].reshape(b, k - 1), dim=1)
        nt_t = F.log_softmax((z_t.detach().to(z_s.dtype) / self.T)[others].reshape(b, k - 1), dim=1)
        nckd = F.kl_div(nt_s, nt_t, reduction="batchmean", log_target=True)
        return tckd, nckd

    def forward(self, z_s: torch.Tensor, z_t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tckd, nckd = self.parts(z_s, z_t, labels)
        return self.T**2 * (self.alpha * tckd + self.beta * nckd)
