"""Passes shared by the teacher-aware proxies (``diswot.py``, ``kd_zero_cost.py``); not a plugin.

* :func:`scoring_mode`: run a network in train or eval mode, dropout off, and put every buffer
  (BatchNorm running statistics) and every module's mode back afterwards, so scoring never changes
  the network (the contract) and needs no deep copy per candidate.
* :func:`student_pass` / :func:`student_fc_grad`: one forward of the student (pre-pool features and
  logits) shared through ``ctx.shared`` by every DisWOT-family proxy of a suite, and the
  cross-entropy gradient of its classifier weight (a head-only backward: dCE/dW does not depend on
  anything before the head, so no full backward is needed).
* :func:`teacher_fc_grad` / :func:`teacher_gram`: the teacher's counterparts, cached once per
  calibration batch through ``ctx.cached`` from the teacher outputs the context already holds.
* :func:`semantic_distance` (DisWOT's d_sem of two classifier gradients, with its fallbacks when the
  widths differ) and :func:`relation_distance_to_teacher` (d_rel, shared per candidate): the two
  distances several teacher-aware proxies score.
* :class:`TinyNet` and :func:`example_context`: the tiny timm-like teacher of the example pairs.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    >>> before = net[1].running_mean.clone()
    >>> with scoring_mode(net, train=True):
    ...     _ = net(torch.randn(4, 2))
    >>> torch.equal(net[1].running_mean, before), net.training
    (True, True)
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.proxy import ProxyContext, scoring_mode
from studentnas.scoring import passes
from studentnas.scoring.similarity import (
    batch_gram,
    class_gram_distance,
    ickd_distance,
    orthogonal_projection,
    relation_distance,
)

STUDENT_PASS = "diswot_student_pass"
STUDENT_FC_GRAD = "diswot_student_fc_grad"
TEACHER_FC_GRAD = "diswot_teacher_fc_grad"
TEACHER_GRAM = "diswot_teacher_gram"
WEIGHTED = (nn.Conv2d, nn.Linear)  # the layers zero-cost measures sum over (METHODS §2.0)
RELATION_DISTANCE = "diswot_d_rel"
#: What d_sem compares when student and teacher widths differ (see :func:`semantic_distance`).
FALLBACKS = ("class_gram", "projection", "none")
DEFAULT_FALLBACK = "class_gram"  # METHODS §8: "K x K class-relation fallback"


def shared_for(ctx: ProxyContext, key: str, student: nn.Module, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per candidate view, student object and parameter state: the same per-candidate
    pass cache the zero-cost proxies use (:func:`studentnas.scoring.passes.shared`), so a suite that mixes
    both families keeps one table and one rule for when a pass is stale."""
    return passes.shared(ctx, key, student, compute)


def classifier_weight(model: nn.Module, role: str) -> torch.Tensor:
    """The K x C weight of ``model``'s final linear classifier (timm's ``get_classifier()``)."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise BadInputError(
            f"the {role} ({type(model).__name__}) has no linear classifier: DisWOT's semantic term reads the "
            f"K x C weight gradient of get_classifier(), got {type(head).__name__}; give the network a timm-style "
            "get_classifier() returning its final nn.Linear")
    if not weight.requires_grad:
        raise BadInputError(f"the {role}'s classifier weight does not require grad; the semantic term needs its "
                            "gradient, so leave it trainable")
    return weight


def check_timm_api(model: nn.Module, role: str) -> None:
    """The teacher-aware proxies need timm's ``forward_features`` / ``forward_head`` split."""
    missing = [m for m in ("forward_features", "forward_head") if not callable(getattr(model, m, None))]
    if missing:
        raise BadInputError(f"the {role} ({type(model).__name__}) lacks {', '.join(missing)}: DisWOT reads the "
                            "pre-pool feature map, so the network must follow timm's forward_features/forward_head "
                            "contract")


def _labels(ctx: ProxyContext, num_classes: int, role: str) -> torch.Tensor:
    labels = ctx.labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise BadInputError(f"calibration labels span [{int(labels.min())}, {int(labels.max())}] but the {role} "
                            f"has {num_classes} classes; give both networks the dataset's number of classes")
    return labels


def _head_ce_grad(model: nn.Module, features: torch.Tensor, ctx: ProxyContext, train: bool,
                  role: str) -> torch.Tensor:
    """dCE/dW of the classifier weight, from the pre-pool ``features`` through ``forward_head`` only."""
    weight = classifier_weight(model, role)
    labels = _labels(ctx, weight.shape[0], role)
    with scoring_mode(model, train=train), torch.enable_grad():
        loss = F.cross_entropy(model.forward_head(features.detach()), labels)
        (grad,) = torch.autograd.grad(loss, [weight])
    return grad.detach()


@dataclass(frozen=True)
class StudentPass:
    """The student's pre-pool features and logits on the calibration batch (train mode, no grad)."""

    features: torch.Tensor
    logits: torch.Tensor


def student_pass(student: nn.Module, ctx: ProxyContext) -> StudentPass:
    """One student forward in train mode (BatchNorm batch statistics), shared by the suite's proxies."""

    def compute() -> StudentPass:
        check_timm_api(student, "student")
        with scoring_mode(student, train=True), torch.no_grad():
            feats = student.forward_features(ctx.images)
            logits = student.forward_head(feats)
        return StudentPass(features=feats, logits=logits)

    return shared_for(ctx, STUDENT_PASS, student, compute)


def student_fc_grad(student: nn.Module, ctx: ProxyContext) -> torch.Tensor:
    """The student's K x C_S classifier-weight gradient of the cross-entropy on (images, labels)."""
    feats = student_pass(student, ctx).features
    return shared_for(ctx, STUDENT_FC_GRAD, student, lambda: _head_ce_grad(student, feats, ctx, True, "student"))


def teacher_fc_grad(ctx: ProxyContext) -> torch.Tensor:
    """The teacher's K x C_T classifier-weight gradient, once per calibration batch, on a deep copy.

    It reuses the cached teacher features (one teacher forward in all); the copy runs the head in the
    mode the teacher outputs were computed in (train for a random teacher, eval for a trained one).
    """
    outputs = ctx.teacher_outputs()  # outside `cached`, so its time is not counted twice

    def compute() -> torch.Tensor:
        teacher = copy.deepcopy(ctx.teacher)
        check_timm_api(teacher, "teacher")
        return _head_ce_grad(teacher, outputs.features, ctx, not ctx.teacher_trained, "teacher")

    return ctx.cached(TEACHER_FC_GRAD, compute)


def teacher_gram(ctx: ProxyContext) -> torch.Tensor:
    """The teacher's B x B row-normalised batch Gram of its pre-pool features (float64), cached."""
    outputs = ctx.teacher_outputs()
    return ctx.cached(TEACHER_GRAM, lambda: batch_gram(outputs.features.double()))


def check_classes(g_s: torch.Tensor, g_t: torch.Tensor) -> None:
    """Teacher and student must have the same K (DisWOT compares class-wise gradients)."""
    if g_s.shape[0] != g_t.shape[0]:
        raise BadInputError(f"DisWOT compares class-wise gradients, so teacher and student need the same number of "
                            f"classes; got teacher K={g_t.shape[0]}, student K={g_s.shape[0]}; build the student "
                            f"with num_classes={g_t.shape[0]}")


def check_fallback(fallback: str) -> str:
    """``fallback`` if it is one of :data:`FALLBACKS`; a :class:`BadInputError` naming them otherwise."""
    if fallback not in FALLBACKS:
        raise BadInputError(f"diswot: fallback must be one of {list(FALLBACKS)} (what d_sem does when student and "
                            f"teacher widths differ), got {fallback!r}; the default is '{DEFAULT_FALLBACK}'")
    return fallback


def check_always_fallback(always_fallback: bool | None, fallback: str) -> bool:
    """Whether every candidate gets the fallback form; ``None`` (the default) means: always the class-Gram
    form when that is the fallback."""
    if always_fallback is None:
        return fallback == "class_gram"
    if not isinstance(always_fallback, bool):
        raise BadInputError(f"diswot: always_fallback must be True or False, got {always_fallback!r}")
    if always_fallback and fallback != "class_gram":
        raise BadInputError(f"diswot: always_fallback=True scores every candidate with the class-Gram form, so it "
                            f"needs fallback='class_gram', got fallback={fallback!r}; change one of the two")
    return always_fallback


def semantic_mode(c_s: int, c_t: int, fallback: str = DEFAULT_FALLBACK, always_fallback: bool = False) -> str:
    """Which d_sem form student/teacher widths ``c_s``/``c_t`` get: ``"ickd"`` or the fallback's name.

    >>> semantic_mode(512, 2048), semantic_mode(2048, 2048), semantic_mode(2048, 2048, always_fallback=True)
    ('class_gram', 'ickd', 'class_gram')
    """
    check_always_fallback(always_fallback, check_fallback(fallback))
    return "ickd" if c_s == c_t and not always_fallback else fallback


@functools.lru_cache(maxsize=16)
def _projection(c_in: int, c_out: int, seed: int) -> torch.Tensor:
    return orthogonal_projection(c_in, c_out, seed)


def semantic_distance(g_s: torch.Tensor, g_t: torch.Tensor, fallback: str = DEFAULT_FALLBACK,
                      seed: int = 0, always_fallback: bool = False) -> float:
    """DisWOT's d_sem between the K x C_S student and K x C_T teacher classifier gradients.

    Equal widths (and ``always_fallback`` false): the ICKD distance of the per-class channel Grams.
    Otherwise the ``fallback``: ``"class_gram"`` compares the K x K class-relation Grams (no channel
    match needed), ``"projection"`` projects the wider gradient to the narrower width with a fixed random
    orthogonal matrix (seeded by ``seed``) and keeps the ICKD form, ``"none"`` raises ``ValueError``.

    >>> g = torch.eye(3)
    >>> semantic_distance(g, g), semantic_distance(g, g[:, :2]) > 0
    (0.0, True)
    """
    check_classes(g_s, g_t)
    mode = semantic_mode(g_s.shape[1], g_t.shape[1], fallback, always_fallback)
    if mode == "ickd":
        return float(ickd_distance(g_s.double(), g_t.double()))
    if mode == "class_gram":
        return float(class_gram_distance(g_s.double(), g_t.double()))
    if mode == "projection":
        s, t = g_s.double(), g_t.double()
        if s.shape[1] > t.shape[1]:
            s = s @ _projection(s.shape[1], t.shape[1], seed).to(s.device)
        else:
            t = t @ _projection(t.shape[1], s.shape[1], seed).to(t.device)
        return float(ickd_distance(s, t))
    raise ValueError(f"the student's classifier sees {g_s.shape[1]} channels and the teacher's {g_t.shape[1]}: the "
                     "ICKD form of the semantic term needs equal widths (fallback='none'); use diswot_semantic with "
                     "fallback='class_gram' or 'projection' for networks of different widths")


def relation_distance_to_teacher(student: nn.Module, ctx: ProxyContext) -> float:
    """DisWOT's d_rel (the similarity-preserving loss): the distance of the row-normalised batch Grams of the
    student's and the teacher's pre-pool features, computed once per candidate for every proxy that reads it."""
    gram_t = teacher_gram(ctx)
    feats = student_pass(student, ctx).features
    return shared_for(ctx, RELATION_DISTANCE, student,
                      lambda: float(relation_distance(batch_gram(feats.double()), gram_t)))


class TinyNet(nn.Module):
    """A two-stage conv net with timm's API (``forward_features``, ``forward_head``, ``get_classifier``,
    ``feature_info``): the tiny teacher of the example pairs and the tests."""

    def __init__(self, width: int = 4, num_classes: int = 4, in_chans: int = 3):
        super().__init__()
        self.num_classes, self.num_features = num_classes, 2 * width
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(2 * width), nn.ReLU())
        self.fc = nn.Linear(2 * width, num_classes)
        self.feature_info = [dict(num_chs=width, reduction=1, module="stem"),
                             dict(num_chs=2 * width, reduction=2, module="stage")]

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def tiny_net(seed: int, width: int = 4, num_classes: int = 4) -> TinyNet:
    """A :class:`TinyNet` initialised from ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyNet(width=width, num_classes=num_classes)


def example_context(teacher: nn.Module, num_classes: int = 4) -> tuple[ProxyContext, ProxyContext]:
    """Two candidate views (one per network of a pair) of an 8-image 8x8 batch with ``teacher``."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 8, 8, generator=gen)
    ctx = ProxyContext(images, torch.arange(8) % num_classes, num_classes, teacher=teacher)
    return ctx.for_candidate(None), ctx.for_candidate(None)
