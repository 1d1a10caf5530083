"""``Proxy`` (a training-free score of a student) and ``ProxyContext`` (what every score may use).

Sign convention, in one place: **every proxy returns a score where higher predicts a better
student**. A proxy whose natural quantity is a distance or a loss returns its negative; cost proxies
(``params``, ``macs``) return the count itself, because as accuracy predictors bigger scores higher
(NASLib's convention). Each proxy class states its own fix in ``sign``.

A ``ProxyContext`` holds the calibration batch, the teacher and two caches:

* :meth:`ProxyContext.cached`: teacher-derived tensors (logits, features, relation matrices),
  filled once per calibration batch and shared by every candidate, so teacher work is paid once;
* :meth:`ProxyContext.shared`: per-candidate passes (one forward/backward of the student) that
  several proxies of a suite read, so a suite pays for each kind of pass once. Each
  :meth:`ProxyContext.for_candidate` view starts with an empty one.

Example:
    >>> import torch
    >>> ctx = ProxyContext(images=torch.zeros(4, 3, 8, 8), labels=torch.arange(4), num_classes=4)
    >>> ctx.cached("answer", lambda: 42), ctx.cached("answer", lambda: 0)
    (42, 42)
"""

from __future__ import annotations

import contextlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from timm.layers import DropPath
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError

NEEDS = frozenset({"data", "labels", "teacher", "cost"})


@contextlib.contextmanager
def scoring_mode(model: nn.Module, train: bool) -> Iterator[nn.Module]:
    """``model`` in train (BatchNorm batch statistics) or eval mode with dropout and drop-path off;
    buffers and per-module modes are restored on exit, whatever happens inside."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        model.train(train)
        for m in model.modules():
            if isinstance(m, (_DropoutNd, DropPath)):
                m.eval()
        yield model
    finally:
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
        for m, mode in modes:
            m.training = mode




@dataclass
class TeacherOutputs:
    """Teacher tensors on the calibration batch (no grad): logits, the pre-pool feature map and the
    pooled pre-logits feature vector."""

    logits: torch.Tensor
    features: torch.Tensor
    pre_logits: torch.Tensor


@dataclass
class ProxyContext:
    """Everything a proxy may read. Make one per search; :meth:`for_candidate` gives per-candidate views
    that share the teacher cache."""

    images: torch.Tensor
    labels: torch.Tensor | None  # None when the data has no labels: proxies that need them refuse up front
    num_classes: int
    teacher: nn.Module | None = None
    teacher_trained: bool = False
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cost: Cost | None = None
    suite: tuple[str, ...] = ()  # names of the proxies scored together, so passes can skip unread work
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _timing: dict[str, float] = field(default_factory=lambda: {"teacher_seconds": 0.0}, repr=False)
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def teacher_seconds(self) -> float:
        """Seconds spent computing cached teacher tensors so far."""
        return self._timing["teacher_seconds"]

    def missing(self, proxy: Proxy | type[Proxy]) -> list[str]:
        """What ``proxy`` needs that this context lacks: a subset of ``["labels", "teacher"]``."""
        have = {"labels": self.labels is not None, "teacher": self.teacher is not None}
        return [need for need, present in have.items() if need in proxy.needs and not present]

    def require(self, proxies: Iterable[Proxy | type[Proxy]]) -> None:
        """Raise ``BadInputError`` naming every proxy whose needs this context cannot meet, before any work.

        Example:
            >>> from studentnas import get_proxy
            >>> ctx = ProxyContext(torch.zeros(2, 3, 8, 8), None, 10)
            >>> ctx.require([get_proxy("synflow")])  # data-free: fine
            >>> try:
            ...     ctx.require([get_proxy("nwot"), get_proxy("snip")])
            ... except BadInputError as err:
            ...     print(str(err)[:64])
            proxy 'snip' needs labels, but the calibration data has none; pa
        """
        fixes = {"labels": "the calibration data has none; pass --data with labelled images (a class-per-folder "
                           "ImageFolder, cifar10:PATH, fashion-mnist)",
                 "teacher": "none was given; pass --teacher NAME (a timm model, optionally with "
                            "--teacher-checkpoint PATH)"}
        for proxy in proxies:
            for need in self.missing(proxy):
                raise BadInputError(f"proxy '{proxy.name}' needs {'a teacher' if need == 'teacher' else need}, but "
                                    f"{fixes[need]}, or drop '{proxy.name}'")

    def for_candidate(self, cost: Cost) -> ProxyContext:
        """A view for one candidate: same batch, teacher and teacher cache, that candidate's cost, and an
        empty per-candidate pass cache."""
        return replace(self, cost=cost, _shared={})

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per candidate view: lets the proxies of a suite share one pass.

        Keys name the pass and everything it depends on (e.g. ``"ce_backward"``); ``compute`` must not
        change the student (work on a copy).
        """
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per context (and its views); the time is counted as teacher work."""
        if key not in self._cache:
            start = time.perf_counter()
            self._cache[key] = compute()
            self._timing["teacher_seconds"] += time.perf_counter() - start
        return self._cache[key]

    def teacher_outputs(self) -> TeacherOutputs:
        """Teacher logits and features on the calibration batch, computed once.

        A trained teacher runs in eval mode; a randomly initialised one in train mode, so that its
        BatchNorm layers use batch statistics (as DisWOT's random teacher does). The teacher is left
        untouched: its buffers (BatchNorm running statistics) and module modes are restored.
        """
        if self.teacher is None:
            raise BadInputError("this proxy needs a teacher, but the context has none; pass --teacher")

        def compute() -> TeacherOutputs:
            with scoring_mode(self.teacher, train=not self.teacher_trained) as teacher, torch.no_grad():
                feats = teacher.forward_features(self.images)
                pre = teacher.forward_head(feats, pre_logits=True)
                logits = teacher.forward_head(feats)
            return TeacherOutputs(logits=logits, features=feats, pre_logits=pre)

        return self.cached("teacher_outputs", compute)


class Proxy(ABC):
    """A training-free score of a student network; higher is better (see the module docstring).

    Subclasses set ``name``, ``needs`` (a subset of ``{"data", "labels", "teacher", "cost"}``) and
    ``sign`` (one sentence: how the raw quantity was oriented so that higher is better), and
    implement :meth:`_score`. :meth:`score` must not change the student's parameters.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    direction: ClassVar[str] = "maximize"
    sign: ClassVar[str] = ""

    def score(self, student: nn.Module, ctx: ProxyContext) -> float:
        """The score of ``student``; may be nan/inf, which the evaluator records as a failure."""
        if "cost" in self.needs and ctx.cost is None:
            raise ValueError(f"proxy '{self.name}' needs the candidate's cost; use ctx.for_candidate(cost)")
        ctx.require([self])
        return float(self._score(student, ctx))

    @abstractmethod
    def _score(self, student: nn.Module, ctx: ProxyContext) -> float: ...

    @classmethod
    def example_pair(cls) -> tuple[tuple[nn.Module, ProxyContext], tuple[nn.Module, ProxyContext]]:
        """A hand-made ``((better, ctx), (worse, ctx))`` pair whose order is known from the proxy's
        definition; the contract suite checks that the better one scores higher. Contexts are
        candidate views (``for_candidate``). Every registered proxy must provide one."""
        raise NotImplementedError(f"proxy '{cls.name}' has no example_pair; the contract suite needs one")

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def signed_log(value: float) -> float:
    """NASLib's post-processing for heavy-tailed scores: log(v) for v>0, -log(-v) for v<0, 0 for 0."""
    if value > 0:
        return math.log(value)
    if value < 0:
        return -math.log(-value)
    return 0.0
