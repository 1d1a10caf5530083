"""``Candidate``: one evaluated architecture (arch + cost + scores + status), one JSON line each.

Example:
    >>> from studentnas.core.arch import Arch
    >>> from studentnas.core.cost import Cost
    >>> c = Candidate(Arch("nb201", {"e0": "skip_connect"}), Cost(1e6, 2e5), {"nwot": 10.5})
    >>> Candidate.from_json(c.to_json()) == c
    True
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from studentnas.core.arch import Arch
from studentnas.core.cost import Cost

OK = "ok"
FAILED = "failed"
INFEASIBLE = "infeasible"  # over a measured budget (latency/memory); never reported


def worker_name() -> str:
    """``host:pid`` of this process, recorded with each candidate."""
    return f"{socket.gethostname()}:{os.getpid()}"


def ray_worker_name() -> str:
    """``host:pid@node_ip/node_id`` (12 hex digits of the Ray node id) inside a Ray worker or driver that
    joined Ray; plain ``host:pid`` otherwise. Recorded by search candidates, distill trials and BLD."""
    try:
        import ray
    except ImportError:
        return worker_name()
    if not ray.is_initialized():
        return worker_name()
    node = ray.get_runtime_context().get_node_id()[:12]
    return f"{worker_name()}@{ray.util.get_node_ip_address()}/{node}"


@dataclass(frozen=True)
class Candidate:
    """An evaluated architecture. ``status`` is ``ok``, ``failed`` (with ``reason``) or ``infeasible``."""

    arch: Arch
    cost: Cost
    scores: Mapping[str, float] = field(default_factory=dict)
    status: str = OK
    reason: str = ""
    seconds: float = 0.0
    timings: Mapping[str, float] = field(default_factory=dict)
    worker: str = ""
    created_at: float = 0.0

    @property
    def id(self) -> str:
        return self.arch.id

    @property
    def ok(self) -> bool:
        return self.status == OK

    def score(self, name: str) -> float:
        """The score ``name``; -inf for candidates that are not ok (so they never rank first)."""
        return self.scores.get(name, -math.inf) if self.ok else -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "arch": self.arch.to_dict(),
            "cost": self.cost.to_dict(),
            "scores": dict(self.scores),
            "status": self.status,
            "reason": self.reason,
            "seconds": self.seconds,
            "timings": dict(self.timings),
            "worker": self.worker,
            "created_at": self.created_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(
            arch=Arch.from_dict(data["arch"]),
            cost=Cost.from_dict(data["cost"]),
            scores=dict(data.get("scores", {})),
            status=data.get("status", OK),
            reason=data.get("reason", ""),
            seconds=float(data.get("seconds", 0.0)),
            timings=dict(data.get("timings", {})),
            worker=data.get("worker", ""),
            created_at=float(data.get("created_at", 0.0)),
        )

    @classmethod
    def from_json(cls, line: str) -> Candidate:
        return cls.from_dict(json.loads(line))

    @classmethod
    def now(cls, **kwargs: Any) -> Candidate:
        """A candidate stamped with this worker and the current time."""
        return cls(worker=worker_name(), created_at=time.time(), **kwargs)
