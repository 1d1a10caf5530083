"""What identifies a ``studentnas puzzle`` run: its options (the CLI flags) and the identity check on resume.

A run directory records the settings that its cached work depends on (teacher, family, data, library
options, sample counts, BLD settings, seed) in ``RUN/puzzle/config.json``; a rerun with other settings
is refused (or starts over with ``fresh``), so cached activations, BLD weights and scores are never
mixed across settings. Budgets, the MIP's options and the global KD may change between calls.
:func:`start_run` checks all of it, library options and the budget's feasibility included, before a
file is written.

Example:
    >>> opts = PuzzleOptions(teacher="resnet18", budget=["50%macs"], out="runs/p1")
    >>> opts.bld_samples, opts.mip_candidates, opts.metric
    (1024, 5, 'kl')
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studentnas.core.budget import Budget
from studentnas.core.errors import BadInputError
from studentnas.puzzle.bld import BLDConfig
from studentnas.puzzle.library import Entry, Library
from studentnas.puzzle.samples import TeacherSpec
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.runfiles.provenance import versions


@dataclass
class PuzzleOptions:
    """Settings of one ``studentnas puzzle`` call (the CLI flags)."""

    teacher: str
    budget: list[str]
    out: str
    data: str | None = None
    teacher_checkpoint: str | None = None
    image_size: int | None = None
    library: dict[str, Any] = field(default_factory=dict)  # family options (widths, noop, merge, ...)
    bld_samples: int = 1024
    score_samples: int = 500
    test_samples: int = 2000
    bld: BLDConfig = field(default_factory=BLDConfig)
    metric: str = "kl"
    max_noops: int | None = None
    random_baselines: int = 5
    mip_candidates: int = 5  # diverse MIP solutions re-scored as whole students; 1 = the plain optimum
    mip_diversity: float = 0.1
    gkd_epochs: int = 1
    gkd_steps: int = 200  # language models
    workers: int = 1
    ray_address: str | None = None
    mip_only: bool = False
    fresh: bool = False
    seed: int = 0
    quiet: bool = False


def run_identity(opts: PuzzleOptions, spec: TeacherSpec, family: str) -> dict[str, Any]:
    """The settings a run's cached work depends on (what ``config.json`` records)."""
    return {"teacher": spec.to_dict(), "family": family, "data": opts.data, "library": opts.library,
            "bld_samples": opts.bld_samples, "score_samples": opts.score_samples, "bld": asdict(opts.bld),
            "seed": opts.seed}


def check_identity(root: Path, identity: dict[str, Any], fresh: bool) -> None:
    """Refuse to resume ``root`` under another ``identity`` (``fresh`` starts over instead). Writes nothing."""
    path = root / "config.json"
    if fresh or not path.is_file():
        return
    old = json.loads(path.read_text()).get("identity")
    new = json.loads(json.dumps(identity))
    if old != new:
        keys = sorted(k for k in set(old or {}) | set(new) if (old or {}).get(k) != new.get(k))
        raise BadInputError(f"{root} holds a Puzzle run with other settings ({', '.join(keys)} differ); rerun "
                            "with the same settings to resume, --fresh to start over, or another --out")


#: Library cost key -> (budget grammar unit, scale), to word a budget's fix.
_UNITS = {"macs": ("MMACs", 1e6), "params": ("Mparams", 1e6), "latency_ms": ("ms", 1.0), "memory_mb": ("MB", 1.0)}


def _at_least(value: float, scale: float, digits: int = 3) -> float:
    """``value / scale`` rounded up to ``digits`` significant digits (a budget that surely admits it)."""
    x = value / scale
    step = 10.0 ** (math.floor(math.log10(x)) - digits + 1) if x > 0 else 1.0
    return math.ceil(x / step - 1e-9) * step


def check_feasible(library: Library, budget: Budget, max_noops: int | None = None) -> None:
    """Refuse ``budget`` when no selection of ``library``'s entries meets it by the cost tables alone (the
    cheapest cover), so an impossible budget is bad input before any BLD or scoring. Quality is ignored.

    Example:
        >>> from studentnas.puzzle.library import LayerInfo, Replacement
        >>> lib = Library("toy", [LayerInfo(0, "b0", "basic", (4,), (4,))],
        ...               [Entry(Replacement(0, 1, k), {"macs": m}) for k, m in [("teacher", 8e6), ("linear", 2e6)]])
        >>> check_feasible(lib, Budget.parse(["50%macs"]))
        >>> check_feasible(lib, Budget.parse(["10%macs"]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        studentnas.core.errors.BadInputError: budget '10%macs' cannot be met: ... 2 MMACs (25% of the teacher's ...); \
raise it to at least 25%macs
    """
    from studentnas.puzzle import mip
    from studentnas.puzzle.mip_model import solve

    limits = mip.limits_from_budget(budget, library)

    def unscored(key: str | None) -> Library:  # quality = the key's cost: the MIP's optimum is the cheapest cover
        return Library(library.family, library.layers, [
            Entry(e.replacement, e.costs, {"kl": e.costs.get(key, math.nan) if key else 0.0}, e.status)
            for e in library.entries], library.fixed_costs, library.meta)

    for c in budget.constraints:
        key = mip.BUDGET_KEYS[c.metric]
        limit = library.teacher_cost(key) * float(c.share) if c.is_relative else float(c.limit)
        least = solve(unscored(key), {}, metric="kl", max_noops=max_noops).costs[key]
        if least <= limit * (1 + 1e-9):
            continue
        unit, scale = _UNITS[key]
        teacher = library.teacher_cost(key)
        share = least / teacher if teacher > 0 else math.nan
        fix = (f"{_at_least(share * 100, 1, 2):g}%{c.metric}" if c.is_relative else
               f"{_at_least(least, scale):g}{unit}")
        raise BadInputError(f"budget '{c.text}' cannot be met: the cheapest student this library builds has "
                            f"{least / scale:.4g} {unit} ({share * 100:.3g}% of the teacher's "
                            f"{teacher / scale:.4g} {unit}; by the library's cost tables, before any training; "
                            f"nothing was written); raise it to at least {fix}")
    try:
        solve(unscored(None), limits, metric="kl", max_noops=max_noops)
    except BadInputError as err:
        texts = " + ".join(f"'{t}'" for t in budget.texts)
        raise BadInputError(f"budget {texts} cannot be met by any student of this library: {err} (checked on "
                            "the library's cost tables before any training; nothing was written)") from None


def start_run(root: Path, identity: dict[str, Any], fresh: bool, build_library: Callable[[], Library],
              budget: Budget, max_noops: int | None = None) -> Library:
    """Check a run before anything is written, then record it; returns its library.

    Refuses another run's settings in ``root`` (:func:`check_identity`), reads ``root/library.json`` or
    calls ``build_library()`` (bad library options raise there), and checks ``budget`` against the
    library's costs (:func:`check_feasible`). Only then is ``root`` cleared (``fresh``) and ``config.json``
    (and a newly built ``library.json``) written, so bad input never leaves a run that blocks the rerun.
    """
    check_identity(root, identity, fresh)
    path = root / "library.json"
    cached = not fresh and path.is_file()
    library = Library.from_dict(json.loads(path.read_text())) if cached else build_library()
    check_feasible(library, budget, max_noops)
    if fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / "config.json", {"identity": identity, "versions": versions()})
    if not cached:
        write_json_atomic(path, library.to_dict())
    return library
