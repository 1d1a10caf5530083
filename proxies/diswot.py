"""DisWOT (CVPR 2023, METHODS.md §1): how similar a random student is to the random teacher.

* ``diswot_semantic``: -d_sem (§1.3). Both networks in train mode, one cross-entropy on (images,
  labels) each; G = dCE/dW of the final linear classifier (K x C). Per class k, M_k = rownorm(g_k g_k^T);
  d_sem = sum_k ||M_s,k - M_t,k||_F^2 / (K*C) (the ICKD distance of ``studentnas.scoring.similarity``).
  When C_S != C_T ([our choice], METHODS §1.3 and §8), the fallback is, by default, ``"class_gram"``:
  the K x K class-relation Grams rownorm(G G^T), which need no channel match, compared as
  ||.||_F^2 / K (the same "mean squared distance of unit rows" scale as the ICKD form, [0, 4]).
  ``fallback="projection"`` instead projects the wider gradient to the narrower width with a fixed
  random orthogonal matrix (seeded by ``ctx.seed``) and keeps the ICKD form. The proxy's ``config()``
  records the fallback, and :func:`~studentnas.scoring.teacher_student.semantic_mode` says which form a
  pair of widths gets. In a space of mixed widths only some candidates match the teacher's width; so
  that one search ranks one quantity, the default (``always_fallback=None`` with the class-Gram
  fallback) scores EVERY candidate with the class-Gram form. ``always_fallback=False`` uses the
  paper's ICKD form wherever the widths match (right for same-width spaces such as DisWOT's CIFAR
  ResNets; the ``ickd`` proxy is that form alone).
  Note (§1.3): d_sem depends only on each class vector's direction and sign pattern.
* ``diswot_relation``: -d_rel (§1.4). The last pre-pool feature maps (``forward_features``; B x N x D
  tokens for a ViT) flattened per sample, B x B Gram row-normalised, ||A_t - A_s||_F^2 / B^2. Free of
  the channel count, the depth and the spatial size: a 7x7 teacher map and a 4x4 student map compare
  fine (each sample is one flattened vector; only the Gram of the batch is compared).
* ``diswot``: -(w_sem * d_sem + w_rel * d_rel), both weights 1 by default (the unweighted sum of the
  reference code; the paper's weighting is unconfirmed).
* ``bn_log_scale``: the legacy measure the DisWOT repository registers as 'diswot' (§1.6). It is
  NOT the teacher-student metric: it uses neither teacher nor labels (the BN half of Zen-score).

Teacher mode: a random teacher runs in train mode (BatchNorm batch statistics, as DisWOT's); a
trained one (``ctx.teacher_trained``) in eval mode, where its running statistics are meaningful.
Students always run in train mode. Dropout and drop-path are off; nothing the networks hold changes.

Cost: the teacher forward and its classifier gradient are computed once per calibration batch
(``ctx.cached``); per candidate, the three DisWOT proxies share ONE student forward plus a
head-only backward (``ctx.shared("diswot_student_pass")``). The bugs of the reference code
(§1.5: a relation term computed on sample 0's pooled vector; a new random teacher per candidate)
are not reproduced: the relation term is the batch Gram of the pre-pool maps, and the teacher is
the context's, fixed for the whole search.

Example:
    >>> from studentnas.scoring.teacher_student import example_context, tiny_net
    >>> teacher = tiny_net(0)
    >>> same, other = example_context(teacher)
    >>> DisWOTProxy().score(tiny_net(0), same)        # a copy of the teacher: distance 0, the maximum
    0.0
    >>> DisWOTProxy().score(tiny_net(1), other) < 0
    True
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.proxy import Proxy, ProxyContext, scoring_mode
from studentnas.core.registry import PROXIES
from studentnas.scoring.pairs import teacher_copy_pair
from studentnas.scoring.solo_passes import gaussian_init
from studentnas.scoring.teacher_student import (
    DEFAULT_FALLBACK,
    check_always_fallback,
    check_fallback,
    relation_distance_to_teacher,
    semantic_distance,
    shared_for,
    student_fc_grad,
    teacher_fc_grad,
)


def _check_weight(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise BadInputError(f"diswot: {name} must be a finite number >= 0, got {value!r}; the default is 1")
    return float(value)


def d_sem(student: nn.Module, ctx: ProxyContext, fallback: str, always_fallback: bool = False) -> float:
    """The semantic distance of ``student`` to the context's teacher, shared by a suite's proxies."""
    g_t = teacher_fc_grad(ctx)
    g_s = student_fc_grad(student, ctx)
    return shared_for(ctx, f"diswot_d_sem:{fallback}:{always_fallback}", student,
                      lambda: semantic_distance(g_s, g_t, fallback, ctx.seed, always_fallback))


@PROXIES.register()
class DisWOTSemanticProxy(Proxy):
    """-d_sem: the class-wise channel correlation of classifier gradients, student vs teacher.

    Args:
        fallback: what to compare when C_S != C_T: ``"class_gram"`` (default), ``"projection"``, or
            ``"none"`` (raise ``ValueError``, which the evaluator records as a failed candidate).
        always_fallback: score every candidate with the class-Gram form, also when C_S == C_T, so that
            a search over mixed widths compares one quantity (needs ``fallback="class_gram"``). The
            default ``None`` means True with the class-Gram fallback, False with the others; pass
            False for the paper's ICKD form on equal widths.

    Example:
        >>> from studentnas.scoring.teacher_student import example_context, tiny_net
        >>> same, _ = example_context(tiny_net(0))
        >>> DisWOTSemanticProxy().score(tiny_net(0), same)
        0.0
    """

    name = "diswot_semantic"
    needs = frozenset({"data", "labels", "teacher"})
    sign = "negated: d_sem is a distance to the teacher, so -d_sem is higher for a more teacher-like student"

    def __init__(self, fallback: str = DEFAULT_FALLBACK, always_fallback: bool | None = None):
        self.fallback = check_fallback(fallback)
        self.always_fallback = check_always_fallback(always_fallback, fallback)

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return 0.0 - d_sem(student, ctx, self.fallback, self.always_fallback)  # 0.0 - x: no -0.0

    @classmethod
    def example_pair(cls):  # noqa: ANN206 - see Proxy.example_pair
        return teacher_copy_pair()

    def config(self) -> dict:
        return {"name": self.name, "fallback": self.fallback, "always_fallback": self.always_fallback}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fallback={self.fallback!r}, always_fallback={self.always_fallback})"


@PROXIES.register()
class DisWOTRelationProxy(Proxy):
    """-d_rel: the row-normalised batch Gram of the pre-pool features, student vs teacher.

    Example:
        >>> from studentnas.scoring.teacher_student import example_context, tiny_net
        >>> same, _ = example_context(tiny_net(0))
        >>> DisWOTRelationProxy().score(tiny_net(0), same)
        0.0
    """

    name = "diswot_relation"
    needs = frozenset({"data", "teacher"})
    sign = "negated: d_rel is a distance to the teacher, so -d_rel is higher for a more teacher-like student"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return 0.0 - relation_distance_to_teacher(student, ctx)

    @classmethod
    def example_pair(cls):  # noqa: ANN206 - see Proxy.example_pair
        return teacher_copy_pair()


@PROXIES.register()
class DisWOTProxy(Proxy):
    """DisWOT = -(w_sem * d_sem + w_rel * d_rel), from the passes ``diswot_semantic`` and
    ``diswot_relation`` share (asking for all three costs one student forward).

    Args:
        w_sem, w_rel: the weights of the two distances (>= 0; both 1 by default).
        fallback, always_fallback: d_sem's form when C_S != C_T (see :class:`DisWOTSemanticProxy`).

    Example:
        >>> from studentnas.scoring.teacher_student import example_context, tiny_net
        >>> _, view = example_context(tiny_net(0))
        >>> DisWOTProxy(w_sem=0.0).score(tiny_net(1), view) == DisWOTRelationProxy().score(tiny_net(1), view)
        True
    """

    name = "diswot"
    needs = frozenset({"data", "labels", "teacher"})
    sign = "negated: a weighted sum of two distances to the teacher, so higher means more teacher-like"

    def __init__(self, w_sem: float = 1.0, w_rel: float = 1.0, fallback: str = DEFAULT_FALLBACK,
                 always_fallback: bool | None = None):
        self.w_sem, self.w_rel = _check_weight("w_sem", w_sem), _check_weight("w_rel", w_rel)
        self.fallback = check_fallback(fallback)
        self.always_fallback = check_always_fallback(always_fallback, fallback)

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        sem = d_sem(student, ctx, self.fallback, self.always_fallback) if self.w_sem else 0.0
        rel = relation_distance_to_teacher(student, ctx) if self.w_rel else 0.0
        return 0.0 - (self.w_sem * sem + self.w_rel * rel)

    @classmethod
    def example_pair(cls):  # noqa: ANN206 - see Proxy.example_pair
        return teacher_copy_pair()

    def config(self) -> dict:
        return {"name": self.name, "w_sem": self.w_sem, "w_rel": self.w_rel, "fallback": self.fallback,
                "always_fallback": self.always_fallback}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(w_sem={self.w_sem}, w_rel={self.w_rel}, fallback={self.fallback!r}, "
                f"always_fallback={self.always_fallback})")


@PROXIES.register()
class BNLogScaleProxy(Proxy):
    """The measure the DisWOT repository registers as 'diswot' (METHODS §1.6), which is NOT DisWOT.

    On a deep copy: conv/linear weights ~ N(0, 1) and biases 0, BatchNorm gamma 1, beta 0 and fresh
    running statistics; one train-mode forward of N(0, 1) noise of the batch's shape through
    ``forward_features`` (the whole network if it has none); score = sum over BatchNorm layers of
    log sqrt(mean_c running_var_c). Noise and weights come from ``ctx.seed``. No teacher, no labels:
    it is the BatchNorm half of Zen-score. A network without BatchNorm scores 0.

    Example:
        >>> from studentnas.core.proxy import ProxyContext
        >>> import torch
        >>> ctx = ProxyContext(torch.zeros(8, 3, 8, 8), torch.zeros(8, dtype=torch.long), 2)
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        >>> 0 < BNLogScaleProxy().score(net, ctx) < 1   # running_var = 0.9 + 0.1 * var, var ~ fan-in 3
        True
    """

    name = "bn_log_scale"
    needs = frozenset()
    sign = "none: larger BatchNorm scales (more expressive random features) are better, as in Zen-score"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        net = copy.deepcopy(student)
        gen = torch.Generator().manual_seed(ctx.seed)
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        gaussian_init(net, gen)
        with torch.no_grad():
            noise = torch.randn(ctx.images.shape, generator=gen).to(ctx.images.device,
                                                                     memory_format=_memory_format(ctx.images))
            with scoring_mode(net, train=True):
                forward = getattr(net, "forward_features", net)
                forward(noise)
                variances = [m.running_var.mean() for m in norms if m.running_var is not None]
        return float(sum(0.5 * torch.log(v).item() for v in variances))

    @classmethod
    def example_pair(cls):  # noqa: ANN206 - see Proxy.example_pair
        """A 3x3 conv (fan-in 27) and a 1x1 conv (fan-in 3) before one BatchNorm: with N(0, 1) weights and
        inputs the conv output's variance is about its fan-in, so running_var = 0.9 + 0.1 * var is larger
        after the 3x3 conv."""
        wide = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        narrow = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8))
        ctx = ProxyContext(torch.zeros(16, 3, 8, 8), torch.zeros(16, dtype=torch.long), 2)
        return (wide, ctx.for_candidate(None)), (narrow, ctx.for_candidate(None))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
