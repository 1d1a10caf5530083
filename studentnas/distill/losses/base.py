"""The contract between the distillation losses and the trainer: :class:`DistillLoss`, :class:`ModelOutputs`.

A loss is a :class:`torch.nn.Module` registered in :data:`LOSSES`. It declares what it consumes in the
class attribute ``inputs``, a tuple of the kinds below, and whether it reads the teacher at all
(``uses_teacher``; only ``ce`` does not):

============== ===================================================================================
kind           what the trainer puts in :class:`ModelOutputs` (student's and teacher's, same batch)
============== ===================================================================================
``logits``     B x K class logits
``labels``     B integer class labels (passed once, not per network)
``features``   the stage outputs, first to last (timm's ``forward_intermediates(x,
               intermediates_only=True)``): B x C x H x W maps or B x N x D tokens; tokens that keep
               their class/register tokens at the front should come with ``prefix_tokens`` (timm's
               ``model.num_prefix_tokens``), else :func:`studentnas.distill.connectors.to_map` guesses
``pre_logits`` B x D pooled embedding before the classifier (timm's ``forward_head(f, pre_logits=True)``)
``attn``       per transformer block, an :class:`AttentionQKV` of B x heads x N x d tensors
               (:func:`studentnas.distill.losses.minilm.capture_attention` records them from timm ViTs)
============== ===================================================================================

Two ways to call a loss:

* ``loss(s, t[, labels])``: the arithmetic on tensors, positional, one (student, teacher) pair per
  consumed kind in the order of ``inputs``, then the labels. This is what the docstrings and the
  hand-computed tests use.
* ``loss.forward_outputs(student, teacher, labels)``: what the trainer (and :class:`ComposedLoss`) calls;
  the loss picks what it needs from two :class:`ModelOutputs` (which stage, which layer) and a
  missing kind is a clear error.

Teacher tensors are targets: every loss detaches them. Losses with learned parts (FitNets and
DisWOT-semantic connectors) are built from one example batch with :meth:`DistillLoss.build`, which reads
the widths from the example outputs, and their parameters must go to the optimiser with the student's.

Example:
    >>> import torch
    >>> out = ModelOutputs(logits=torch.zeros(2, 3))
    >>> out.get("logits", "student", "kd").shape
    torch.Size([2, 3])
    >>> out.get("features", "teacher", "fitnet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: loss 'fitnet' needs the teacher's features, but they were not given; ...
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.registry import Registry

__all__ = ["INPUT_KINDS", "LOSSES", "AttentionQKV", "DistillLoss", "ModelOutputs", "pair_stages", "pick"]

LOSSES: Registry = Registry("loss")

INPUT_KINDS = ("logits", "labels", "features", "pre_logits", "attn")

_HOW = {
    "logits": "the model's output",
    "features": "timm's model.forward_intermediates(x, intermediates_only=True)",
    "pre_logits": "timm's model.forward_head(model.forward_features(x), pre_logits=True)",
    "attn": "studentnas.distill.losses.minilm.capture_attention(model)",
}


class AttentionQKV(NamedTuple):
    """Queries, keys and values of one self-attention layer, each B x heads x N x head_dim."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor


@dataclass
class ModelOutputs:
    """What one network produced on a batch; fields a loss does not consume may stay ``None``."""

    logits: torch.Tensor | None = None
    features: Sequence[torch.Tensor] | None = None
    pre_logits: torch.Tensor | None = None
    attn: Sequence[AttentionQKV] | None = None
    prefix_tokens: int | None = None  # class/register tokens at the front of 3-D features (None: guess)

    def get(self, kind: str, role: str, loss: str) -> Any:
        """The ``kind`` field, or a :class:`BadInputError` that names the loss and how to produce it."""
        if kind not in _HOW:
            raise ValueError(f"unknown input kind {kind!r}; expected one of {', '.join(_HOW)}")
        value = getattr(self, kind)
        if value is None or (isinstance(value, Sequence) and not isinstance(value, torch.Tensor) and not value):
            raise BadInputError(f"loss '{loss}' needs the {role}'s {kind}, but they were not given; fill "
                                f"ModelOutputs.{kind} from {_HOW[kind]}, or drop '{loss}'")
        return value


def pair_stages(n_s: int, n_t: int) -> list[tuple[int, int]]:
    """Stage index pairs for two stage lists: the longer list is subsampled evenly to the shorter one,
    keeping both last stages (pair i of k takes index ``ceil((i + 1) * n / k) - 1`` of a list of n).

    The same rule as the ``kd_at`` proxy, so the proxy scores what the ``at`` loss trains.

    >>> pair_stages(3, 5)           # an NB201 student (3 stages) and a timm ResNet teacher (stem + 4)
    [(0, 1), (1, 3), (2, 4)]
    >>> pair_stages(4, 4)
    [(0, 0), (1, 1), (2, 2), (3, 3)]
    """
    k = min(n_s, n_t)
    return [(-(-(i + 1) * n_s // k) - 1, -(-(i + 1) * n_t // k) - 1) for i in range(k)]


def pick(items: Sequence[Any], index: int | None, role: str, loss: str, what: str = "stage") -> Any:
    """``items[index]`` (``None``: the middle one, ``len // 2``), or a :class:`BadInputError` naming the
    valid range."""
    n = len(items)
    i = n // 2 if index is None else index
    if not -n <= i < n:
        raise BadInputError(f"loss '{loss}': {what} {index} does not exist, the {role} has {n} {what}s "
                            f"(valid: {-n}..{n - 1}); pick another {what}")
    return items[i]


def check_number(value: Any, what: str, loss: str, *, positive: bool = False, example: str = "") -> float:
    """``value`` as a float, refusing non-numbers, NaN, infinities, negatives (and zero when ``positive``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        rule = "a positive number" if positive else "a number >= 0"
        raise BadInputError(f"loss '{loss}': {what} must be {rule}, got {value!r}" + (f"; e.g. {example}"
                                                                                       if example else ""))
    return float(value)


class DistillLoss(nn.Module):
    """Base class of the registered losses (see the module docstring for the contract).

    Subclasses set ``name``, ``inputs`` and, if they ignore the teacher, ``uses_teacher = False``;
    implement ``forward`` on tensors; override :meth:`forward_outputs` when they pick a stage or layer
    and :meth:`build` when they size learned parts from example outputs.
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    uses_teacher: ClassVar[bool] = True

    @classmethod
    def parameter_names(cls) -> list[str]:
        """The keyword arguments of the constructor: what a config entry may set besides name and weight."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    @classmethod
    def build(cls, student: ModelOutputs | None = None, teacher: ModelOutputs | None = None,
              **params: Any) -> DistillLoss:
        """The loss for this student/teacher pair: ``cls(**params)``, with widths read from the example
        outputs where the loss has learned parts."""
        return cls(**params)

    def forward_outputs(self, student: ModelOutputs, teacher: ModelOutputs,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        """The loss from two :class:`ModelOutputs`: one (student, teacher) pair per consumed kind, then labels."""
        args: list[Any] = []
        for kind in self.inputs:
            if kind != "labels":
                args += [student.get(kind, "student", self.name), teacher.get(kind, "teacher", self.name)]
        if "labels" in self.inputs:
            args.append(self.check_labels(labels))
        return self(*args)

    def check_labels(self, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise BadInputError(f"loss '{self.name}' needs the batch's labels, but none were given; pass labels, "
                                f"or drop '{self.name}'")
        if labels.ndim != 1 or labels.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
            raise ValueError(f"loss '{self.name}' needs B integer class labels, got {labels.dtype} of shape "
                             f"{tuple(labels.shape)}")
        return labels
