"""The students of a KD ground truth (``studentnas bench kd``): ``--seeds``, ``--band`` and ``--student`` parsed,
N students drawn to cover the band evenly in MACs, and which of them get a CE-only baseline.

Sampling: the band ``[lo, hi]`` (shares of the teacher's MACs) is cut into N equal bins. Archs are drawn with
the space's sampler (seeded by ``--seed``); one above the band is walked down with the space's budget repair
(:meth:`~studentnas.core.space.SearchSpace.shrink`), and every arch met inside the band joins the pool (uniform
samples alone rarely land in a low band). Each bin takes the first pool arch whose MACs fall in it; a bin the
pool misses takes the unused in-band arch nearest its centre, so N students come back whenever the pool holds
N. Same seed, same students.

Example:
    >>> parse_seeds("0,1"), parse_band("10%:40%"), parse_band("0.1:0.4")
    ([0, 1], (0.1, 0.4), (0.1, 0.4))
    >>> parse_seeds("zero")
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --seeds 'zero': seeds are comma-separated non-negative integers, e.g. --seeds 0,1
    >>> ce_picks(["a", "b", "c", "d", "e"], 2), ce_picks(["a", "b"], 0)
    (['a', 'e'], [])
"""  # noqa: E501

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from studentnas.core.arch import Arch
from studentnas.core.errors import BadInputError
from studentnas.core.space import SearchSpace

DRAWS_PER_STUDENT, DRAWS_MIN = 12, 120  # sampler draws per requested student (at least DRAWS_MIN)


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1``: distinct non-negative integers, in the given order."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p.isdigit() for p in parts):
        raise BadInputError(f"--seeds {text!r}: seeds are comma-separated non-negative integers, e.g. --seeds 0,1")
    seeds = [int(p) for p in parts]
    if len(set(seeds)) != len(seeds):
        raise BadInputError(f"--seeds {text!r} repeats a seed; give each once, e.g. --seeds 0,1")
    return seeds


def _share(text: str, whole: str) -> float:
    text = text.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise BadInputError(f"--band {whole!r}: {text!r} is not a share of the teacher's MACs; "
                            "e.g. --band 10%:40% or --band 0.1:0.4") from None


def parse_band(text: str) -> tuple[float, float]:
    """``--band LO:HI`` as shares of the teacher's MACs (``10%:40%`` or ``0.1:0.4``), 0 < LO < HI."""
    if text.count(":") != 1:
        raise BadInputError(f"--band {text!r} is not LO:HI; e.g. --band 10%:40%")
    lo, hi = (_share(t, text) for t in text.split(":"))
    if not 0 < lo < hi:
        raise BadInputError(f"--band {text!r}: need 0 < LO < HI (shares of the teacher's MACs); e.g. --band 10%:40%")
    return lo, hi


def parse_student(space: SearchSpace, text: str) -> Arch:
    """``--student``: an arch as JSON (``{"space": ..., "genes": {...}}`` or the genes alone) or the space's text
    form (e.g. an NB201 cell string), checked against ``space`` (the error names the gene)."""
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            arch = Arch.from_dict(data) if "genes" in data else Arch(space.name, data)
        elif hasattr(space, "from_string"):
            arch = space.from_string(text)
        else:
            raise ValueError("not JSON")
    except (ValueError, TypeError, KeyError) as err:
        raise BadInputError(f"--student {text!r}: not an arch of space '{space.name}' ({err}); pass its JSON, "
                            f"e.g. --student '{json.dumps(space.smallest().to_dict())}'") from None
    try:
        return space.validate(arch)
    except BadInputError as err:
        raise BadInputError(f"--student {text!r}: {err}") from None


def sample_band(space: SearchSpace, macs_of: Callable[[Arch], float], teacher_macs: float,
                band: tuple[float, float], n: int, seed: int) -> list[Arch]:
    """``n`` distinct archs spread evenly in MACs over ``band`` (see the module docstring); a band no arch fits
    is a :class:`BadInputError` that says what the space spans."""
    if n == 0:
        return []
    lo, hi = band[0] * teacher_macs, band[1] * teacher_macs
    rng = np.random.default_rng(seed)
    cheapest = space.cheapest(macs_of)
    pool: dict[str, tuple[Arch, float]] = {}
    seen: list[float] = []
    for _ in range(max(DRAWS_MIN, DRAWS_PER_STUDENT * n)):
        arch = space.sample(rng)
        seen.append(macs_of(arch))
        path = [arch, *space.shrink(arch, rng, macs_of, cheapest)] if seen[-1] > hi else [arch]
        for step in path:
            macs = macs_of(step)
            if macs < lo:
                break
            if macs <= hi and step.id not in pool:
                pool[step.id] = (step, macs)
    inside = list(pool.values())
    if not inside:
        macs = [*seen, macs_of(cheapest)]
        low, top = min(macs), max(macs)
        raise BadInputError(f"--band {band[0] * 100:g}%:{band[1] * 100:g}%: no arch of space '{space.name}' has "
                            f"MACs in [{lo / 1e6:.2f}, {hi / 1e6:.2f}] M ({len(seen)} sampled and the cheapest span "
                            f"{low / 1e6:.2f}-{top / 1e6:.2f} M, {low / teacher_macs:.0%}-{top / teacher_macs:.0%} "
                            "of the teacher); widen or move the band")
    edges = np.linspace(lo, hi, n + 1)
    chosen: list[Arch] = []
    used: set[str] = set()
    for i in range(n):
        fits = [a for a, m in inside if edges[i] <= m <= edges[i + 1] and a.id not in used]
        if not fits:
            centre = (edges[i] + edges[i + 1]) / 2
            rest = sorted(((abs(m - centre), a.id, a) for a, m in inside if a.id not in used), key=lambda t: t[:2])
            fits = [rest[0][2]] if rest else []
        if fits:
            chosen.append(fits[0])
            used.add(fits[0].id)
    return chosen


def ce_picks(ids_by_macs: Sequence[str], n: int) -> list[str]:
    """``n`` of the students (sorted by MACs) spread evenly over the list: the CE-only baselines."""
    if n <= 0:
        return []
    if n > len(ids_by_macs):
        raise BadInputError(f"--ce-only {n} exceeds the {len(ids_by_macs)} students; pass --ce-only "
                            f"{len(ids_by_macs)} or fewer")
    picks = np.unique(np.round(np.linspace(0, len(ids_by_macs) - 1, n)).astype(int))
    return [ids_by_macs[i] for i in picks]
