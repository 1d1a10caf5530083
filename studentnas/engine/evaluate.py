"""Evaluating one candidate: build the student (seeded by arch id), check measured budgets, score it.

Each student is initialised from a seed derived from the run seed and the arch id, so a student
scores the same in every process and order: a resumed or distributed run reproduces the scores of an
uninterrupted one, and ``studentnas export`` rebuilds the exact weights that were scored.

Example:
    >>> student_seed(0, "1907c76d9e67") == student_seed(0, "1907c76d9e67")
    True
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import torch
from torch import nn

from studentnas.core.arch import Arch
from studentnas.core.budget import Budget
from studentnas.core.candidate import FAILED, INFEASIBLE, OK, Candidate
from studentnas.core.cost import Cost
from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.space import SearchSpace
from studentnas.hardware.memory import estimate_peak_memory_mb


def student_seed(seed: int, arch_id: str) -> int:
    """The torch seed a student of ``arch_id`` is initialised with in a run of ``seed``."""
    return int(hashlib.sha256(f"{seed}:{arch_id}".encode()).hexdigest()[:15], 16)


def build_student(space: SearchSpace, arch: Arch, seed: int, num_classes: int, in_chans: int) -> nn.Module:
    """``space.build`` under the arch's derived seed (the global torch RNG is restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(student_seed(seed, arch.id))
        return space.build(arch, num_classes=num_classes, in_chans=in_chans)


class LocalEvaluator:
    """Scores candidates in this process with the given proxies, against one shared context."""

    def __init__(self, space: SearchSpace, proxies: Sequence[Proxy], ctx: ProxyContext, budget: Budget,
                 seed: int, num_classes: int):
        self.space = space
        self.proxies = list(proxies)
        self.ctx = replace(ctx, suite=tuple(p.name for p in self.proxies))
        self.ctx.require(self.proxies)  # a proxy that needs labels or a teacher the context lacks: fail now
        self.budget = budget
        self.seed = seed
        self.num_classes = num_classes
        self._latency = None  # a LatencyMeter, made on first use

    def _measure(self, arch: Arch, student: nn.Module, cost: Cost) -> Cost:
        needs = self.budget.needs_measurement
        values = {}
        if "latency" in needs:  # batch-1 CPU latency, cached per (arch, device) on disk
            if self._latency is None:
                from studentnas.hardware.latency import LatencyMeter

                self._latency = LatencyMeter()
            values["latency_ms"] = self._latency.measure(self.space, arch, self.ctx.input_size, self.num_classes,
                                                         model=student)
        if "memory" in needs:
            values["peak_memory_mb"] = estimate_peak_memory_mb(student, self.ctx.input_size)
        return cost.with_measurements(**values) if values else cost

    def evaluate(self, arch: Arch, cost: Cost) -> Candidate:
        """Build, measure and score ``arch``. Proxy errors and non-finite scores give a failed candidate."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        student = build_student(self.space, arch, self.seed, self.num_classes, self.ctx.input_size[0])
        student = student.to(memory_format=torch.channels_last)  # ~1.5x faster CPU convolutions
        timings["build"] = time.perf_counter() - start
        if self.budget.needs_measurement:
            t0 = time.perf_counter()
            cost = self._measure(arch, student, cost)
            timings["measure"] = time.perf_counter() - t0
            if not self.budget.satisfied(cost):
                return Candidate.now(arch=arch, cost=cost, status=INFEASIBLE,
                                     reason="; ".join(self.budget.violations(cost)),
                                     seconds=time.perf_counter() - start, timings=timings)
        ctx = self.ctx.for_candidate(cost)
        scores: dict[str, float] = {}
        status, reason = OK, ""
        for proxy in self.proxies:
            t0 = time.perf_counter()
            try:
                value = proxy.score(student, ctx)
            except (RuntimeError, ValueError, ArithmeticError, torch.linalg.LinAlgError) as err:
                status, reason = FAILED, f"proxy {proxy.name} raised {type(err).__name__}: {err}"
                break
            finally:
                timings[f"proxy:{proxy.name}"] = time.perf_counter() - t0
            if not math.isfinite(value):
                status, reason = FAILED, f"proxy {proxy.name} returned {value}"
                break
            scores[proxy.name] = value
        return Candidate.now(arch=arch, cost=cost, scores=scores if status == OK else {}, status=status,
                             reason=reason, seconds=time.perf_counter() - start, timings=timings)


class Pool(Protocol):
    """Where the search loop sends candidates: :class:`InProcessPool` here, or
    :class:`studentnas.engine.parallel.RayPool` on Ray workers."""

    teacher_seconds: float

    def submit(self, arch: Arch, cost: Cost) -> None: ...

    def next_finished(self) -> Candidate: ...

    def cancel_queued(self) -> list[str]: ...

    def close(self) -> None: ...


class InProcessPool:
    """A :class:`Pool` that scores each submitted candidate in this process, in submission order.

    Example:
        >>> import numpy as np
        >>> from studentnas import Budget, get_proxy, get_space
        >>> space = get_space("nb201")
        >>> ctx = ProxyContext(images=torch.randn(4, 3, 16, 16), labels=torch.arange(4), num_classes=10)
        >>> pool = InProcessPool(LocalEvaluator(space, [get_proxy("params")], ctx, Budget.parse("1GMACs"), 0, 10))
        >>> arch = space.sample(np.random.default_rng(0))
        >>> pool.submit(arch, space.cost(arch, (3, 16, 16), 10))
        >>> pool.next_finished().id == arch.id
        True
    """

    def __init__(self, evaluator: LocalEvaluator):
        self.evaluator = evaluator
        self._queue: deque[tuple[Arch, Cost]] = deque()

    @property
    def teacher_seconds(self) -> float:
        return self.evaluator.ctx.teacher_seconds

    def submit(self, arch: Arch, cost: Cost) -> None:
        self._queue.append((arch, cost))

    def next_finished(self) -> Candidate:
        arch, cost = self._queue.popleft()
        return self.evaluator.evaluate(arch, cost)

    def cancel_queued(self) -> list[str]:
        dropped = [arch.id for arch, _ in self._queue]
        self._queue.clear()
        return dropped

    def close(self) -> None:
        pass
