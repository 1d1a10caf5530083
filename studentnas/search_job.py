"""``search()``: the training-free student search, the Python twin of ``studentnas search``.

Order of work, chosen so that bad input never leaves a half-written run directory: every
argument is validated and the teacher, space, budget and data are loaded *before* the run
directory is created. Then candidates are proposed by the searcher (only archs within the
analytic budget), built, scored, and appended to the journal one by one.

Resume replays the journal through a fresh searcher with the same seed: each ``ask`` that returns
an already-journalled arch is answered from the journal instead of being evaluated. Searchers are
deterministic given their seed and tells, so the resumed run asks exactly the archs the
uninterrupted run would have, and ends with the same Pareto front; no finished candidate is lost
or evaluated twice.

Example (a tiny run, about 20 seconds on 2 cores)::

    >>> import studentnas as sn, tempfile
    >>> run = sn.search(teacher="resnet18", budget="0.3GFLOPs", candidates=3, image_size=64,
    ...                 batch_size=8, out=tempfile.mkdtemp() + "/r", quiet=True)  # doctest: +SKIP
    >>> len(run.candidates)  # doctest: +SKIP
    3
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studentnas import data as data_mod
from studentnas import objectives as obj
from studentnas.arch import Arch
from studentnas.budget import Budget, Constraint
from studentnas.candidate import Candidate
from studentnas.cost import Cost, estimate_peak_memory_mb, measured_cost
from studentnas.errors import BadInputError, SearchExhaustedError
from studentnas.evaluate import InProcessPool, LocalEvaluator, Pool
from studentnas.latency_table import LatencyEstimator
from studentnas.parallel import check_parallel
from studentnas.pareto import front as pareto_front_of
from studentnas.pareto import hypervolume
from studentnas.progress import Progress
from studentnas.proxy import Proxy, ProxyContext
from studentnas.registry import PROXIES, SEARCHERS, SPACES
from studentnas.run import Run, RunDir, config_differences
from studentnas.searchers.base import Searcher
from studentnas.space import SearchSpace
from studentnas.teacher import Teacher, check_teacher_name, load_teacher

DEFAULT_PROXY = "nwot"
DEFAULT_SEARCHER = "evolution"
DEFAULT_CANDIDATES = 200
DEFAULT_BATCH_SIZE = 16  # >= 16 keeps BatchNorm batch statistics meaningful (METHODS.md §1.9)
# run.json fields that must match for --resume; `candidates` and `time_limit` may change (to extend a run).
IDENTITY_FIELDS = ("teacher", "teacher_checkpoint_sha256", "pretrained", "budget", "space", "proxies", "searcher",
                   "data", "input_size", "batch_size", "seed", "objectives")


def _warn(message: str) -> None:
    print(f"studentnas: warning: {message}", file=sys.stderr, flush=True)


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


def describe_cost(cost: Cost, metrics: Sequence[str] = ("macs", "params")) -> str:
    """``cost`` in the units budgets use, e.g. ``0.00548 GFLOPs, 0.1712 Mparams``."""
    units = {"macs": ("GFLOPs", 1e9), "params": ("Mparams", 1e6), "latency": ("ms", 1.0), "memory": ("MB", 1.0)}
    parts = []
    for metric in metrics:
        value = cost.value(metric)
        if value is not None and metric in units:
            unit, scale = units[metric]
            parts.append(f"{value / scale:.4g} {unit}")
    return ", ".join(parts)


def check_budget_range(budget: Budget, space: SearchSpace, input_size: tuple[int, int, int], num_classes: int,
                       teacher_cost: Cost) -> None:
    """Reject budgets below the smallest student (per metric, and for MACs and params together: the
    space's :meth:`~studentnas.space.SearchSpace.minimal_archs` bound it from below); warn about
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
            _warn(f"budget '{c.text}' is above the teacher's own {c.metric} ({top / scale:.4g} {unit}); "
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


def _versions() -> dict[str, str]:
    import timm

    from studentnas import __version__

    return {"studentnas": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


@dataclass
class _Job:
    """Everything a search needs, validated and loaded before the run directory is touched."""

    proxy_names: list[str]
    proxies: list[Proxy]
    searcher_cls: type[Searcher]
    run_dir: RunDir
    teacher: Teacher
    space: SearchSpace
    input_size: tuple[int, int, int]
    budget: Budget
    batch: torch.Tensor
    labels: torch.Tensor
    config: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    objectives: list[str] | None = None  # --objectives, or None: the searcher's single proxy objective

    @property
    def front_objectives(self) -> list[str]:
        """What pareto.json and the hypervolume are over: --objectives, else (primary proxy, macs)."""
        return self.objectives or [self.proxy_names[0], "macs"]


def _teacher_measurements(cost: Cost, model: torch.nn.Module, input_size: tuple[int, int, int], budget: Budget,
                          objectives: Sequence[str] | None) -> Cost:
    """The teacher's cost plus its measured latency / peak memory where a budget share (``50%latency``)
    or an objective needs them, so shares resolve and reports can mark the teacher."""
    wanted = {c.metric for c in budget.constraints if c.is_relative} | set(obj.costs_of(objectives or []))
    values: dict[str, float] = {}
    if "latency" in wanted:
        from studentnas.latency import LatencyMeter

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


def _violation_of(fits: Budget | None, cost_of: Callable[[Arch], Cost]) -> Callable[[Arch], float] | None:
    """How far an arch is over the analytic budget (relative, <= 0 inside): the constraint value of
    searchers that handle the budget as a constraint (nsga2, optuna-*)."""
    if fits is None:
        return None
    return lambda arch: -fits.slack(cost_of(arch))


def _validate(teacher: str, budget: str | Sequence[str], space: str | None, proxy: str | Sequence[str] | None,
              searcher: str, candidates: int, batch_size: int, image_size: int | None, time_limit: float | None,
              data: str | None, out: str | Path | None, resume: bool,
              objectives: str | Sequence[str] | None = None) -> tuple[Budget, list[str], RunDir, list[str] | None]:
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
    if run_dir.exists and not resume:
        raise BadInputError(f"'{run_dir.path}' already holds a run; pass --resume to continue it, "
                            "or --out DIR for a new one")
    if not run_dir.exists and run_dir.path.exists() and any(run_dir.path.iterdir()):
        raise BadInputError(f"'{run_dir.path}' exists and is not a run directory; pass an empty or new --out")
    return parsed, names, run_dir, objective_names


def _prepare(teacher: str, parsed: Budget, proxy_names: list[str], run_dir: RunDir, *, space: str | None,
             searcher: str, candidates: int, time_limit: float | None, data: str | None, image_size: int | None,
             batch_size: int, seed: int, teacher_checkpoint: str | Path | None, pretrained: bool,
             objectives: list[str] | None = None) -> _Job:
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
        "input_size": list(input_size), "batch_size": batch_size, "seed": seed, "num_classes": teach.num_classes,
        "candidates": candidates, "time_limit": time_limit, "versions": _versions(), "status": "running",
        "objectives": objectives, "front_objectives": objectives or [proxy_names[0], "macs"],
    }
    return _Job(proxy_names=proxy_names, proxies=[PROXIES.get(p)() for p in proxy_names],
                searcher_cls=SEARCHERS.get(searcher), run_dir=run_dir, teacher=teach, space=the_space,
                input_size=input_size, budget=_with_measured_objectives(resolved, objectives),
                batch=batch.contiguous(memory_format=torch.channels_last), labels=labels, config=config,
                timings=timings, objectives=objectives)


def _open_run_dir(job: _Job) -> None:
    """Create the run directory, or check that the one to resume was made with the same settings."""
    run_dir, config = job.run_dir, job.config
    if not run_dir.exists:
        run_dir.create(config)
        return
    diffs = config_differences(run_dir.config(), config, IDENTITY_FIELDS)
    if diffs:
        raise BadInputError(f"cannot resume '{run_dir.path}': {'; '.join(diffs)}; rerun with the run's "
                            "settings or start a new run with another --out")
    run_dir.update_config(candidates=config["candidates"], time_limit=config["time_limit"], status="running")


def _make_pool(job: _Job, seed: int, workers: int | None, ray_address: str | None) -> Pool:
    """Where candidates are scored: in this process for one local worker (Ray is not even imported),
    on Ray actors otherwise (:mod:`studentnas.parallel`)."""
    teach = job.teacher
    ctx = ProxyContext(images=job.batch, labels=job.labels, num_classes=teach.num_classes, teacher=teach.model,
                       teacher_trained=teach.trained, seed=seed)
    evaluator = LocalEvaluator(job.space, job.proxies, ctx, job.budget, seed, teach.num_classes)  # checks needs
    if ray_address is None and (workers or 1) == 1:
        if any("teacher" in p.needs for p in job.proxies):
            ctx.teacher_outputs()
        return InProcessPool(evaluator)
    from studentnas.parallel import CRASH_ENV, EvalInputs, RayPool

    inputs = EvalInputs(space=job.space, proxies=job.proxies, budget=job.budget, seed=seed,
                        num_classes=teach.num_classes, images=job.batch, labels=job.labels, teacher=teach.model,
                        teacher_trained=teach.trained, crash_once=os.environ.get(CRASH_ENV))
    return RayPool(inputs, workers, ray_address)


def _ask_windows(job: _Job) -> list[list[int]]:
    """The run's ask-ahead schedule: ``[[first_ask, window], ...]`` (see :func:`_loop`)."""
    return [list(seg) for seg in job.run_dir.config().get("ask_windows", [[0, 1]])]


def _loop(job: _Job, seed: int, candidates: int, deadline: float | None, quiet: bool,
          say: Callable[[str], None], workers: int | None = None, ray_address: str | None = None) -> dict[str, Any]:
    """Ask, evaluate (or replay from the journal), append, tell; returns loop statistics.

    Up to ``window`` candidates are asked ahead of the searcher's feedback and evaluated
    concurrently (window 1 in process; twice the workers on Ray). Each is appended to the journal
    the moment it finishes, in any order, but the searcher is told in ask order, and a new arch is
    asked only after a tell or at the start. So the sequence of asks and tells depends on the
    window only, never on timing: a resumed run, replaying the journal with the same window
    schedule, asks exactly the archs the interrupted one did. The schedule (``ask_windows`` in
    run.json) changes only once the journal is fully replayed, so resuming with other ``--workers``
    stays exact.
    """
    objective, teach = job.proxy_names[0], job.teacher
    fits = static_budget(job.budget)
    cost_seconds = 0.0
    costs: dict[str, Cost] = {}

    latency_limits = [c.limit for c in job.budget.constraints if c.metric == "latency" and math.isfinite(c.limit)]
    estimator = LatencyEstimator() if latency_limits else None  # per-layer lookup table: a cheap pre-filter

    def is_feasible(arch: Arch) -> bool:
        nonlocal cost_seconds
        t = time.perf_counter()
        cost = job.space.cost(arch, job.input_size, teach.num_classes)
        cost_seconds += time.perf_counter() - t
        costs[arch.id] = cost
        if fits is not None and not fits.satisfied(cost):
            return False
        # clearly over the latency limit by the estimate: never built or measured
        return estimator is None or estimator.could_fit(job.space, arch, job.input_size, teach.num_classes,
                                                        min(latency_limits))

    strategy = job.searcher_cls(
        job.space, seed=seed, is_feasible=is_feasible, objective=objective, objectives=job.objectives,
        violation=_violation_of(fits, lambda a: costs.get(a.id) or job.space.cost(a, job.input_size,
                                                                                    teach.num_classes)),
        workdir=job.run_dir.path)
    journal = {c.id: c for c in job.run_dir.read_candidates(repair=True)}
    if journal:
        say(f"resuming {job.run_dir.path}: {len(journal)} candidates already evaluated")
    t_pool = time.perf_counter()
    pool = _make_pool(job, seed, workers, ray_address)  # closed in the `finally` below
    pool_seconds = time.perf_counter() - t_pool
    where = "" if isinstance(pool, InProcessPool) else f" on {pool.workers} Ray workers ({pool.address})"
    say(f"searching {candidates} students of {teach.name} in space '{job.space.name}' with "
        f"{', '.join(job.proxy_names)}; budget {job.budget.describe()}; run dir {job.run_dir.path}{where}")
    windows = _ask_windows(job)
    wanted = 1 if isinstance(pool, InProcessPool) else 2 * pool.workers
    start, replayed, stop_reason = time.perf_counter(), 0, "candidates"
    best = max((c.score(objective) for c in journal.values()), default=-math.inf)
    order: deque[Arch] = deque()  # asked and not yet told, in ask order
    done: dict[str, Candidate] = {}  # finished (evaluated or replayed), not yet told
    asked, stopped = 0, False

    def refill() -> None:
        nonlocal asked, stopped, stop_reason, replayed
        while not stopped and asked < candidates:
            if not journal and windows[-1][1] != wanted and asked >= windows[-1][0]:
                windows[-1:] = [[asked, wanted]] if windows[-1][0] == asked else [windows[-1], [asked, wanted]]
                job.run_dir.update_config(ask_windows=windows)
            if len(order) >= next(w for first, w in reversed(windows) if first <= asked):
                return
            if deadline is not None and time.perf_counter() > deadline:
                stopped, stop_reason = True, "time_limit"
                return
            try:
                [arch] = strategy.ask(1)
            except SearchExhaustedError as err:
                cheapest = err.cheapest
                if isinstance(cheapest, Arch):
                    cost = job.space.cost(cheapest, job.input_size, teach.num_classes)
                    err = SearchExhaustedError(f"{err}: that arch has {describe_cost(cost)} at "
                                               f"{'x'.join(map(str, job.input_size))}, the budget is "
                                               f"{job.budget.describe()}")
                say(f"stopping early: {err}")
                stopped, stop_reason = True, "exhausted"
                return
            asked += 1
            order.append(arch)
            cand = journal.pop(arch.id, None)
            if cand is not None:
                replayed += 1
                done[arch.id] = cand
            else:
                pool.submit(arch, costs[arch.id])

    try:
        with Progress(total=candidates, desc="search", quiet=quiet, initial=min(len(journal), candidates)) as bar:
            refill()
            while order:
                while order[0].id not in done:
                    cand = pool.next_finished()
                    job.run_dir.append(cand)
                    done[cand.id] = cand
                    best = max(best, cand.score(objective))
                    stats = {"best": best} if math.isfinite(best) else {}
                    bar.update(1, **stats, **({} if cand.ok else {"last": cand.status}))
                    if deadline is not None and time.perf_counter() > deadline and not stopped:
                        stopped, stop_reason = True, "time_limit"
                        dropped = set(pool.cancel_queued())
                        order = deque(a for a in order if a.id not in dropped)
                        if not order:
                            break
                if order:
                    strategy.tell(done.pop(order.popleft().id))
                refill()
    finally:
        pool.close()
    if journal and stop_reason == "candidates":
        _warn(f"{len(journal)} journalled candidates were not asked again (the run was extended or reduced)")
    if isinstance(pool, InProcessPool):
        if "ray" in job.run_dir.config():
            job.run_dir.update_config(ray=None)  # this session ran in process; drop the last Ray session's figures
    else:
        job.run_dir.update_config(ray={"workers": pool.workers, "address": pool.address, "evaluated": pool.n_done,
                                       "start_s": pool_seconds,
                                       "overhead_s_per_candidate": pool.overhead_seconds / max(1, pool.n_done)})
    return {"stop_reason": stop_reason, "replayed": replayed, "cost_total": cost_seconds,
            "search_loop": time.perf_counter() - start, "teacher_outputs": pool.teacher_seconds}


def _finish(job: _Job, stats: dict[str, Any], total_seconds: float) -> Run:
    """Write pareto.json, the hypervolume and the final run.json bookkeeping; fail if every candidate failed."""
    objective, objectives = job.proxy_names[0], job.front_objectives
    run = Run(job.run_dir.path)
    front = pareto_front_of(run.candidates, objectives)
    job.run_dir.write_pareto(front, objective, objectives)
    volume, reference = hypervolume(run.candidates, objectives, budget=job.budget)
    n_ok = sum(c.ok for c in run.candidates)
    if run.candidates and n_ok == 0:
        reasons = sorted({c.reason for c in run.candidates})[:3]
        raise BadInputError(f"every candidate failed ({len(run.candidates)}), e.g. {reasons}; "
                            "check the proxy and the budget")
    timings = {**job.timings, "teacher_outputs": stats["teacher_outputs"], "cost_total": stats["cost_total"],
               "search_loop": stats["search_loop"], "total": total_seconds}
    job.run_dir.update_config(status="finished", stop_reason=stats["stop_reason"], timings=timings,
                              replayed=stats["replayed"], n_candidates=len(run.candidates), n_ok=n_ok,
                              n_failed=sum(c.status == "failed" for c in run.candidates),
                              n_infeasible=sum(c.status == "infeasible" for c in run.candidates),
                              front_size=len(front), hypervolume=volume, reference_point=reference.to_dict())
    return Run(job.run_dir.path)


def search(
    teacher: str,
    budget: str | Sequence[str],
    *,
    space: str | None = None,
    proxy: str | Sequence[str] | None = None,
    objectives: str | Sequence[str] | None = None,
    searcher: str = DEFAULT_SEARCHER,
    candidates: int = DEFAULT_CANDIDATES,
    time_limit: float | None = None,
    data: str | None = None,
    image_size: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    teacher_checkpoint: str | Path | None = None,
    pretrained: bool = False,
    workers: int | None = None,
    ray_address: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Run:
    """Search students of ``teacher`` within ``budget``; returns the :class:`~studentnas.run.Run`.

    ``proxy`` is a comma list or sequence (default ``nwot``); the first is the primary objective of
    the searcher and the Pareto front. ``objectives`` (e.g. ``"diswot,macs"``, ``"nwot,latency"``)
    makes the search multi-objective: proxy scores up, cost metrics (macs, params, latency, memory)
    down; their proxies are scored first, then the other ``proxy`` names; pareto.json is their
    non-dominated front and run.json records its ``hypervolume`` and ``reference_point``
    (:mod:`studentnas.pareto`). ``time_limit`` is in seconds, counted from this call (so a resumed run gets a
    fresh allowance). ``resume`` continues the run in ``out``, or starts it if it does not exist.
    ``workers`` > 1 scores candidates on that many local Ray workers; ``ray_address`` (``auto``,
    ``HOST:PORT``, ``ray://HOST:PORT``) uses an existing Ray cluster, with ``workers`` actors (default:
    one per cluster CPU). Scores do not depend on either (see :mod:`studentnas.parallel`).
    """
    t_start = time.perf_counter()
    say = log or ((lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True)))
    parsed, proxy_names, run_dir, objective_names = _validate(teacher, budget, space, proxy, searcher, candidates,
                                                              batch_size, image_size, time_limit, data, out, resume,
                                                              objectives)
    check_parallel(workers, ray_address)  # before the teacher loads: an unreachable cluster fails in seconds
    job = _prepare(teacher, parsed, proxy_names, run_dir, space=space, searcher=searcher, candidates=candidates,
                   time_limit=time_limit, data=data, image_size=image_size, batch_size=batch_size, seed=seed,
                   teacher_checkpoint=teacher_checkpoint, pretrained=pretrained, objectives=objective_names)
    _open_run_dir(job)
    deadline = t_start + time_limit if time_limit is not None else None
    stats = _loop(job, seed, candidates, deadline, quiet, say, workers, ray_address)
    return _finish(job, stats, time.perf_counter() - t_start)
