"""``Budget``: hardware constraints parsed from strings such as ``5GFLOPs`` or ``60%params``.

Grammar (one constraint per string, spaces allowed, units case-insensitive)::

    <number>[K|M|G|T](FLOPs|MACs|params)   5GFLOPs, 5 GFLOPs, 5e9FLOPs, 800MMACs, 25Mparams
    <number>ms                             30ms   batch-1 latency on this machine
    <number>(KB|MB|GB|KiB|MiB|GiB)         200MB  peak inference memory
    <number>%(params|MACs|FLOPs|latency|memory)   60%params  a share of the teacher's cost

FLOPs are multiply-accumulates (docs/architecture.md): ``5GFLOPs`` and ``5GMACs`` are the same budget.
Several strings make a budget whose constraints must all hold.

Example:
    >>> b = Budget.parse(["5GFLOPs", "25Mparams"])
    >>> from studentnas.core.cost import Cost
    >>> b.satisfied(Cost(macs=4.1e9, params=24.5e6)), b.satisfied(Cost(macs=4.1e9, params=26e6))
    (True, False)
    >>> round(b.slack(Cost(macs=4e9, params=20e6)), 3)
    0.2
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError

GRAMMAR = (
    "accepted forms: <number>[K|M|G|T]<FLOPs|MACs|params> (5GFLOPs, 800MMACs, 25Mparams), "
    "<number>ms (30ms), <number><KB|MB|GB> (200MB), <number>%<params|MACs|latency|memory> (60%params)"
)

_PREFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}  # case-insensitive: milli-FLOPs make no sense
_MEMORY = {"kb": 1e-3, "mb": 1.0, "gb": 1e3, "kib": 1024 / 1e6, "mib": 2**20 / 1e6, "gib": 2**30 / 1e6}
_COUNT_UNITS = {"flops": "macs", "flop": "macs", "macs": "macs", "mac": "macs", "params": "params", "param": "params"}
_SHARE_UNITS = {**_COUNT_UNITS, "latency": "latency", "ms": "latency", "memory": "memory", "mem": "memory"}
_UNIT_NAMES = {"macs": "MACs", "params": "params", "latency": "ms latency", "memory": "MB peak memory"}

_TOKEN = re.compile(r"^\s*(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<rest>.*?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric <= limit``. ``share`` is set for budgets relative to the teacher until resolved."""

    metric: str  # macs | params | latency | memory
    limit: float  # absolute: MACs, params, ms, MB
    text: str
    share: float | None = None  # e.g. 0.6 for 60%params

    @property
    def is_relative(self) -> bool:
        return self.share is not None and math.isnan(self.limit)

    def describe(self) -> str:
        if self.is_relative:
            return f"{self.metric} <= {self.share:.0%} of the teacher"
        value = {"macs": f"{self.limit / 1e9:.3g} GMACs", "params": f"{self.limit / 1e6:.3g} M params",
                 "latency": f"{self.limit:.3g} ms", "memory": f"{self.limit:.4g} MB"}[self.metric]
        return f"{self.metric} <= {value}"


def _parse_one(text: str) -> Constraint:
    match = _TOKEN.match(text)
    if not match:
        raise BadInputError(f"budget '{text}': no number at the start; {GRAMMAR}")
    number, rest = float(match["num"]), match["rest"]
    if not math.isfinite(number) or number <= 0:
        raise BadInputError(f"budget '{text}': the number must be positive and finite; {GRAMMAR}")
    if rest.startswith("%"):
        unit = rest[1:].strip().lower()
        if unit not in _SHARE_UNITS:
            raise BadInputError(f"budget '{text}': unknown share unit '%{rest[1:].strip()}'; {GRAMMAR}")
        return Constraint(_SHARE_UNITS[unit], math.nan, text.strip(), share=number / 100)
    low = rest.lower()
    if low == "ms":
        return Constraint("latency", number, text.strip())
    if low in _MEMORY:
        return Constraint("memory", number * _MEMORY[low], text.strip())
    compact = re.sub(r"\s+", "", rest)  # "1.5K params" == "1.5Kparams"
    head, tail = compact[:1].upper(), compact[1:].lower()
    prefix, unit = (head, tail) if head in _PREFIX and tail in _COUNT_UNITS else ("", low)
    if unit not in _COUNT_UNITS:
        raise BadInputError(f"budget '{text}': unknown unit '{rest or '(none)'}'; {GRAMMAR}")
    return Constraint(_COUNT_UNITS[unit], number * _PREFIX[prefix], text.strip())


@dataclass(frozen=True)
class Budget:
    """All constraints a student must satisfy. Build it with :meth:`parse`."""

    constraints: tuple[Constraint, ...]

    @classmethod
    def parse(cls, texts: str | Iterable[str]) -> Budget:
        """Parse one budget string or several (every constraint must then hold)."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items:
            raise BadInputError(f"no budget given; pass --budget, e.g. --budget 5GFLOPs ({GRAMMAR})")
        return cls(tuple(_parse_one(t) for t in items))

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.constraints]

    @property
    def metrics(self) -> set[str]:
        return {c.metric for c in self.constraints}

    @property
    def needs_measurement(self) -> set[str]:
        """Metrics that need a built model: latency and memory."""
        return self.metrics & {"latency", "memory"}

    def resolve(self, teacher_cost: Cost) -> Budget:
        """Turn ``60%params``-style shares into absolute limits using the teacher's cost."""
        out = []
        for c in self.constraints:
            if c.is_relative:
                base = teacher_cost.value(c.metric)
                if base is None:
                    raise BadInputError(f"budget '{c.text}' is relative to the teacher's {c.metric}, "
                                        "which was not measured; give an absolute budget instead")
                c = replace(c, limit=base * c.share)
            out.append(c)
        return Budget(tuple(out))

    def _values(self, cost: Cost) -> list[tuple[Constraint, float]]:
        out = []
        for c in self.constraints:
            if c.is_relative:
                raise ValueError(f"budget '{c.text}' is relative; call resolve(teacher_cost) first")
            value = cost.value(c.metric)
            if value is None:
                raise ValueError(f"budget '{c.text}' needs {c.metric}, which this cost has not measured")
            out.append((c, value))
        return out

    def satisfied(self, cost: Cost) -> bool:
        """True when every constraint holds for ``cost``."""
        return all(value <= c.limit for c, value in self._values(cost))

    def slack(self, cost: Cost) -> float:
        """The smallest relative headroom ``(limit - value) / limit`` over constraints; < 0 when violated."""
        return min((c.limit - value) / c.limit for c, value in self._values(cost))

    def violations(self, cost: Cost) -> list[str]:
        """Human-readable list of violated constraints."""
        return [f"{c.describe()} (has {value:.4g})" for c, value in self._values(cost) if value > c.limit]

    def describe(self) -> str:
        return " and ".join(c.describe() for c in self.constraints)

    def slug(self) -> str:
        """A filesystem-friendly form, e.g. ``5GFLOPs_25Mparams``."""
        return "_".join(re.sub(r"[^A-Za-z0-9.]+", "", t.replace("%", "pct")) for t in self.texts)
