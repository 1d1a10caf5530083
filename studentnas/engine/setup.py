"""Everything a search does before its run directory is touched: check every argument, pick the
search space, resolve and range-check the budget, load the teacher and draw the calibration batch
into :class:`SearchInputs` (the driver, :func:`studentnas.engine.search.search`, runs them as a
:class:`~studentnas.engine.search.SearchJob`).

Bad input never leaves a half-written run directory: :func:`validate_search` runs the cheap checks,
:func:`prepare_search` the heavy loading, and only then does the driver create the run directory.

Example:
    >>> static_budget(Budget.parse(["2GFLOPs", "30ms"])).metrics
    {'macs'}
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studentnas.core import objectives as obj
from studentnas.core.budget import Budget, Constraint
from studentnas.core.console import warn
from studentnas.core.cost import Cost, describe_cost
from studentnas.core.errors import BadInputError
from studentnas.core.registry import PROXIES, SEARCHERS, SPACES
from studentnas.core.space import SearchSpace
from studentnas.data import images as data_mod
from studentnas.data.teachers import Teacher, check_teacher_name, load_teacher
from studentnas.engine.rundir import RunDir
from studentnas.hardware.counting import measured_cost
from studentnas.hardware.memory import estimate_peak_memory_mb
from studentnas.runfiles.paths import check_writable_dir
from studentnas.runfiles.provenance import provenance

DEFAULT_PROXY = "nwot"
DEFAULT_SEARCHER = "evolution"
DEFAULT_CANDIDATES = 200
DEFAULT_BATCH_SIZE = 16  # >= 16 keeps BatchNorm batch statistics meaningful (METHODS.md §1.9)


def pick_space(name: str | None, teacher: Teacher) -> SearchSpace:
    """The named space (centred on the teacher where it can be), or the first space that fits the teacher."""
    if name is not None:
        cls = SPACES.get(name)
        return cls.for_teacher(teacher.model) if cls.matches_teacher(teacher.model) else cls()
    for candidate in SPACES.list():
        cls = SPACES.get(candidate)
        if cls.matches_teacher(teacher.model):
            return cls.for_teacher(teacher.model)
    raise BadInputError(f"no search space is derived from a {type(teacher.model).__name__} teacher "
                        f"('{teacher.name}'); pass --space NAME (known: {', '.join(SPACES.list())})")


def check_budget_range(budget: Budget, space: SearchSpace, input_size: tuple[int, int, int], num_classes: int,
                       teacher_cost: Cost) -> None:
    """Reject budgets below the smallest student (per metric, and for MACs and params together: the
    space's :meth:`~studentnas.core.space.SearchSpace.minimal_archs` bound it from below); warn about
    budgets above the teacher."""
    low = space.min_cost(input_size, num_classes)
    for c in budget.constraints:
        if c.metric not in ("macs", "params"):
            continue
        minimum, top = low.value(c.metric), teacher_cost.value(c.metric)
        unit, scale = ("GFLOPs", 1e9) if c.metric == "macs" else ("Mparams", 1e6)
        if c.limit < minimum:
            raise BadInputError(
                f"budget '{c.text}' is below the smallest student of space '{space.name}' at "
                f"{'x'.join(map(str, input_size))}: {minimum / scale:.4g} {unit} (papers' units); "
                f"raise it to at least {minimum / scale:.4g}{unit}")
        if c.limit > top:
            warn(f"budget '{c.text}' is above the teacher's own {c.metric} ({top / scale:.4g} {unit}); "
                  "students may be as large as the teacher")
    static = static_budget(budget)
    if static is not None and len(static.metrics) > 1:
        costs = [space.cost(a, input_size, num_classes) for a in space.minimal_archs()]
        if not any(static.satisfied(c) for c in costs):
            nearest = max(costs, key=static.slack)
            raise BadInputError(
                f"budget {' + '.join(repr(c.text) for c in static.constraints)}: no student of space "
                f"'{space.name}' at {'x'.join(map(str, input_size))} meets every limit at once; the closest has "
                f"{describe_cost(nearest)}, over {'; '.join(static.violations(nearest))}; raise one of the limits")


def static_budget(budget: Budget) -> Budget | None:
    """The part of the budget that analytic costs can check (MACs, params), or None if there is none."""
    static: tuple[Constraint, ...] = tuple(c for c in budget.constraints if c.metric in ("macs", "params"))
    return Budget(static) if static else None


@dataclass(kw_only=True)
class SearchInputs:
    """What :func:`prepare_search` loads before the run directory is touched: the teacher, the space, the
    resolved budget, the calibration batch, run.json's content and how long each part took."""

    teacher: Teacher
    space: SearchSpace
    input_size: tuple[int, int, int]
    budget: Budget
    batch: torch.Tensor
    labels: torch.Tensor
    config: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _teacher_measurements(cost: Cost, model: torch.nn.Module, input_size: tuple[int, int, int], budget: Budget,
                          objectives: Sequence[str] | None) -> Cost:
    """The teacher's cost plus its measured latency / peak memory where a budget share (``50%latency``)
    or an objective needs them, so shares resolve and reports can mark the teacher."""
    wanted = {c.metric for c in budget.constraints if c.is_relative} | set(obj.costs_of(objectives or []))
    values: dict[str, float] = {}
    if "latency" in wanted:
        from studentnas.hardware.latency import LatencyMeter

        values["latency_ms"] = LatencyMeter().measure_model(model, input_size)
    if "memory" in wanted:
        values["peak_memory_mb"] = estimate_peak_memory_mb(model, input_size)
    return cost.with_measurements(**values) if values else cost


def _objective_proxies(objectives: str | Sequence[str] | None,
                       proxy: str | Sequence[str] | None) -> tuple[list[str] | None, list[str]]:
    """``--objectives`` and the proxies to score: the objectives' proxies first, then the other
    ``--proxy`` names; with neither, the default proxy."""
    given = [p.strip() for p in ((proxy.split(",") if isinstance(proxy, str) else proxy) or []) if p.strip()]
    if objectives is None or (isinstance(objectives, str) and not objectives.strip()):
        return None, given or ([] if proxy is not None else [DEFAULT_PROXY])
    names = obj.parse_objectives(objectives)
    if len(names) < 2:
        raise BadInputError(f"--objectives needs two or more objectives for a front, got {names[0]!r}; e.g. "
                            f"--objectives {names[0]},macs (or use --proxy {names[0]} for a single-proxy search)")
    scored = obj.proxies_of(names)
    return names, scored + [p for p in given if p not in scored]


@dataclass(frozen=True)
class _MeasuredObjective(Constraint):
    """Not a limit (it is infinite): makes the evaluator measure an objective's metric for every candidate."""

    def describe(self) -> str:
        return f"{self.metric} measured (an objective)"


def _with_measured_objectives(budget: Budget, objectives: Sequence[str] | None) -> Budget:
    """``budget`` plus an always-satisfied constraint for each measured objective (latency, memory)
    that the budget does not already measure: the evaluator measures what the budget names."""
    extra = sorted(set(obj.costs_of(objectives or [])) & obj.MEASURED - budget.metrics)
    return Budget(budget.constraints + tuple(_MeasuredObjective(m, math.inf, f"{m} objective") for m in extra))


def validate_search(teacher: str, budget: str | Sequence[str], space: str | None, proxy: str | Sequence[str] | None,
                    searcher: str, candidates: int, batch_size: int, image_size: int | None,
                    time_limit: float | None, data: str | None, out: str | Path | None, resume: bool,
                    objectives: str | Sequence[str] | None = None
                    ) -> tuple[Budget, list[str], RunDir, list[str] | None]:
    """Cheap checks of every argument: nothing heavy is loaded before these pass."""
    parsed = Budget.parse(budget)
    objective_names, names = _objective_proxies(objectives, proxy)
    if not names:
        raise BadInputError(f"no proxy given; pass --proxy NAME[,NAME...] (known: {', '.join(PROXIES.list())})")
    for name in names:
        PROXIES.get(name)
    SEARCHERS.get(searcher)
    if space is not None:
        SPACES.get(space)
    if candidates < 1:
        raise BadInputError(f"--candidates must be >= 1, got {candidates}")
    if batch_size < 2:
        raise BadInputError(f"--batch-size must be >= 2 (proxies compare samples), got {batch_size}")
    if image_size is not None and not 8 <= image_size <= 1024:
        raise BadInputError(f"--image-size must be between 8 and 1024 pixels, got {image_size}")
    if time_limit is not None and time_limit <= 0:
        raise BadInputError(f"--time-limit must be positive, got {time_limit} s")
    data_mod.check_data_spec(data)
    check_teacher_name(teacher)
    run_dir = RunDir(out if out is not None else Path("runs") / f"{teacher}-{parsed.slug()}")
    check_writable_dir(run_dir.path, "--out", example=f"runs/{teacher}-{parsed.slug()}")
    if run_dir.exists and not resume:
        raise BadInputError(f"'{run_dir.path}' already holds a run; pass --resume to continue it, "
                            "or --out DIR for a new one")
    if not run_dir.exists and run_dir.path.exists() and any(run_dir.path.iterdir()):
        raise BadInputError(f"'{run_dir.path}' exists and is not a run directory; pass an empty or new --out")
    return parsed, names, run_dir, objective_names


def prepare_search(teacher: str, parsed: Budget, proxy_names: list[str], *, space: str | None,
                   searcher: str, candidates: int, time_limit: float | None, data: str | None, image_size: int | None,
                   batch_size: int, seed: int, teacher_checkpoint: str | Path | None, pretrained: bool,
                   objectives: list[str] | None = None) -> SearchInputs:
    """Load the teacher, derive the space, resolve and range-check the budget, draw the calibration batch."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # a random-init teacher is the same in every run of this seed
        teach = load_teacher(teacher, teacher_checkpoint, pretrained)
    timings["teacher_load"] = time.perf_counter() - t0
    chans, height, width = teach.input_size
    input_size = (chans, image_size or height, image_size or width)
    the_space = pick_space(space, teach)
    t0 = time.perf_counter()
    teacher_cost = _teacher_measurements(measured_cost(teach.model, input_size), teach.model, input_size, parsed,
                                         objectives)
    timings["teacher_cost"] = time.perf_counter() - t0
    resolved = parsed.resolve(teacher_cost)
    check_budget_range(resolved, the_space, input_size, teach.num_classes, teacher_cost)
    t0 = time.perf_counter()
    images = data_mod.load_images(data, split="train", limit=batch_size, seed=seed)  # decode only what we use
    batch, labels = data_mod.calibration_batch(images, batch_size, input_size, teach.mean, teach.std, seed)
    timings["data"] = time.perf_counter() - t0
    config: dict[str, Any] = {
        "teacher": teach.name, "teacher_checkpoint": teach.checkpoint, "teacher_checkpoint_sha256":
        teach.checkpoint_sha256, "pretrained": pretrained, "teacher_cost": teacher_cost.to_dict(),
        "budget": parsed.texts, "budget_resolved": resolved.describe(), "space": the_space.config(),
        "proxies": proxy_names, "searcher": searcher, "data": data, "data_source": images.source,
        "input_size": list(input_size), "batch_size": batch_size, "num_classes": teach.num_classes,
        "candidates": candidates, "time_limit": time_limit, "status": "running",
        "objectives": objectives, "front_objectives": objectives or [proxy_names[0], "macs"],
        **provenance(seed=seed),  # versions, argv, seed, threads (the driver sets threads to the scoring count)
    }
    return SearchInputs(teacher=teach, space=the_space, input_size=input_size,
                        budget=_with_measured_objectives(resolved, objectives),
                        batch=batch.contiguous(memory_format=torch.channels_last), labels=labels, config=config,
                        timings=timings)
