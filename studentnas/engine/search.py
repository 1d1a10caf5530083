"""``search()``: the training-free student search, the Python twin of ``studentnas search``.

Order of work, chosen so that bad input never leaves a half-written run directory: every
argument is validated and the teacher, space, budget and data are loaded *before* the run
directory is created. Then candidates are proposed by the searcher (only archs within the
analytic budget), built, scored, and appended to the journal one by one.

Resume replays the journal through a fresh searcher with the same seed: each ``ask`` that returns
an already-journalled arch is answered from the journal instead of being evaluated. Searchers are
deterministic given their seed and tells, so the resumed run asks exactly the archs the
uninterrupted run would have, and ends with the same Pareto front; no finished candidate is lost
or evaluated twice. Scores of float reductions depend on the torch thread count (in the last digits),
so run.json records the count candidates are scored with (``threads``) and a resume in process scores
with it again, whatever this process's default; where that cannot be honoured (Ray workers score with
one thread each, or an older run.json without the field) the resume warns that exact replay is not
possible. A resume refused (other settings, a corrupt journal) leaves every file as it was.

Example (a tiny run, about 20 seconds on 2 cores)::

    >>> import studentnas as sn, tempfile
    >>> run = sn.search(teacher="resnet18", budget="0.3GFLOPs", candidates=3, image_size=64,
    ...                 batch_size=8, out=tempfile.mkdtemp() + "/r", quiet=True)  # a real search  # doctest: +SKIP
    >>> len(run.candidates)  # the run above  # doctest: +SKIP
    3
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studentnas.core.arch import Arch
from studentnas.core.budget import Budget
from studentnas.core.candidate import Candidate
from studentnas.core.console import Progress, sayer, warn
from studentnas.core.cost import Cost, describe_cost
from studentnas.core.errors import BadInputError, SearchExhaustedError
from studentnas.core.pareto import front as pareto_front_of
from studentnas.core.pareto import hypervolume
from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.registry import PROXIES, SEARCHERS
from studentnas.engine.evaluate import InProcessPool, LocalEvaluator, Pool
from studentnas.engine.parallel import check_parallel
from studentnas.engine.rundir import RUN_JSON, Run, RunDir, config_differences
from studentnas.engine.setup import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CANDIDATES,
    DEFAULT_SEARCHER,
    SearchInputs,
    prepare_search,
    static_budget,
    validate_search,
)
from studentnas.hardware.latency_table import LatencyEstimator
from studentnas.searchers.base import Searcher

# run.json fields that must match for --resume; `candidates` and `time_limit` may change (to extend a run).
IDENTITY_FIELDS = ("teacher", "teacher_checkpoint_sha256", "pretrained", "budget", "space", "proxies", "searcher",
                   "data", "input_size", "batch_size", "seed", "objectives")
# torch threads of one Ray actor: each holds one CPU (studentnas.engine.parallel) and scores with one thread
RAY_WORKER_THREADS = 1


@dataclass(kw_only=True)
class SearchJob(SearchInputs):
    """What the driver runs: the loaded :class:`~studentnas.engine.setup.SearchInputs` plus the proxies to
    score, the searcher class and the run directory to journal into."""

    proxy_names: list[str]
    proxies: list[Proxy]
    searcher_cls: type[Searcher]
    run_dir: RunDir
    objectives: list[str] | None = None  # --objectives, or None: the searcher's single proxy objective

    @property
    def front_objectives(self) -> list[str]:
        """What pareto.json and the hypervolume are over: --objectives, else (primary proxy, macs)."""
        return self.objectives or [self.proxy_names[0], "macs"]


def _violation_of(fits: Budget | None, cost_of: Callable[[Arch], Cost]) -> Callable[[Arch], float] | None:
    """How far an arch is over the analytic budget (relative, <= 0 inside): the constraint value of
    searchers that handle the budget as a constraint (nsga2, optuna-*)."""
    if fits is None:
        return None
    return lambda arch: -fits.slack(cost_of(arch))


def _resume_threads(recorded: Any, path: Path, threads: int, in_process: bool) -> int:
    """The torch threads a resumed run scores with: the count run.json records, where this session can
    honour it (in process); otherwise this session's ``threads``, with a warning that exact replay is not
    possible (scores of float reductions differ in the last digits under another thread count)."""
    known = isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 1
    if known and (in_process or recorded == threads):
        return recorded
    why = (f"{path / RUN_JSON} records no thread count (written by an older studentnas)" if not known else
           f"the run was scored with {recorded} torch thread(s), Ray workers score with {threads} each")
    fix = "" if not known else "; resume without --workers/--ray-address for an exact replay"
    warn(f"{why}: exact replay is not possible, candidates scored now may differ from an uninterrupted run's "
         f"in the last digits (about 1e-6){fix}")
    return threads


def _open_run_dir(job: SearchJob, threads: int, in_process: bool) -> tuple[list[Candidate], int]:
    """Create the run directory, or check that the one to resume was made with the same settings and that
    its journal reads (nothing is written before both pass). Returns the journalled candidates and the
    torch threads to score with (recorded as ``threads`` in run.json on creation)."""
    run_dir, config = job.run_dir, job.config
    if not run_dir.exists:
        run_dir.create({**config, "threads": threads})
        return [], threads
    old = run_dir.config()
    diffs = config_differences(old, config, IDENTITY_FIELDS)
    if diffs:
        raise BadInputError(f"cannot resume '{run_dir.path}': {'; '.join(diffs)}; rerun with the run's "
                            "settings or start a new run with another --out")
    journalled = run_dir.read_candidates()  # a corrupt journal is refused here, before run.json changes
    threads = _resume_threads(old.get("threads"), run_dir.path, threads, in_process)
    run_dir.update_config(candidates=config["candidates"], time_limit=config["time_limit"], status="running")
    return journalled, threads


def _make_pool(job: SearchJob, seed: int, workers: int | None, ray_address: str | None) -> Pool:
    """Where candidates are scored: in this process for one local worker (Ray is not even imported),
    on Ray actors otherwise (:mod:`studentnas.engine.parallel`)."""
    teach = job.teacher
    ctx = ProxyContext(images=job.batch, labels=job.labels, num_classes=teach.num_classes, teacher=teach.model,
                       teacher_trained=teach.trained, seed=seed)
    evaluator = LocalEvaluator(job.space, job.proxies, ctx, job.budget, seed, teach.num_classes)  # checks needs
    if ray_address is None and (workers or 1) == 1:
        if any("teacher" in p.needs for p in job.proxies):
            ctx.teacher_outputs()
        return InProcessPool(evaluator)
    from studentnas.engine.parallel import CRASH_ENV, EvalInputs, RayPool

    inputs = EvalInputs(space=job.space, proxies=job.proxies, budget=job.budget, seed=seed,
                        num_classes=teach.num_classes, images=job.batch, labels=job.labels, teacher=teach.model,
                        teacher_trained=teach.trained, crash_once=os.environ.get(CRASH_ENV))
    return RayPool(inputs, workers, ray_address)


def _ask_windows(job: SearchJob) -> list[list[int]]:
    """The run's ask-ahead schedule: ``[[first_ask, window], ...]`` (see :func:`_loop`)."""
    return [list(seg) for seg in job.run_dir.config().get("ask_windows", [[0, 1]])]


def _loop(job: SearchJob, journalled: list[Candidate], seed: int, candidates: int, deadline: float | None,
          quiet: bool, say: Callable[[str], None], workers: int | None = None,
          ray_address: str | None = None) -> dict[str, Any]:
    """Ask, evaluate (or replay ``journalled`` candidates), append, tell; returns loop statistics.

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
    journal = {c.id: c for c in journalled}
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
        warn(f"{len(journal)} journalled candidates were not asked again (the run was extended or reduced)")
    if isinstance(pool, InProcessPool):
        if "ray" in job.run_dir.config():
            job.run_dir.update_config(ray=None)  # this session ran in process; drop the last Ray session's figures
    else:
        job.run_dir.update_config(ray={"workers": pool.workers, "address": pool.address, "evaluated": pool.n_done,
                                       "start_s": pool_seconds,
                                       "overhead_s_per_candidate": pool.overhead_seconds / max(1, pool.n_done)})
    return {"stop_reason": stop_reason, "replayed": replayed, "cost_total": cost_seconds,
            "search_loop": time.perf_counter() - start, "teacher_outputs": pool.teacher_seconds}


def _finish(job: SearchJob, stats: dict[str, Any], total_seconds: float) -> Run:
    """Write pareto.json, the hypervolume and the final run.json bookkeeping; fail if every candidate failed."""
    objective, objectives = job.proxy_names[0], job.front_objectives
    run = Run(job.run_dir.path)
    front = pareto_front_of(run.candidates, objectives)
    job.run_dir.write_pareto(front, objective, objectives, job.space)
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
    """Search students of ``teacher`` within ``budget``; returns the :class:`~studentnas.engine.rundir.Run`.

    ``proxy`` is a comma list or sequence (default ``nwot``); the first is the primary objective of
    the searcher and the Pareto front. ``objectives`` (e.g. ``"diswot,macs"``, ``"nwot,latency"``)
    makes the search multi-objective: proxy scores up, cost metrics (macs, params, latency, memory)
    down; their proxies are scored first, then the other ``proxy`` names; pareto.json is their
    non-dominated front and run.json records its ``hypervolume`` and ``reference_point``
    (:mod:`studentnas.core.pareto`). ``time_limit`` is in seconds, counted from this call (so a resumed run gets a
    fresh allowance). ``resume`` continues the run in ``out``, or starts it if it does not exist.
    ``workers`` > 1 scores candidates on that many local Ray workers; ``ray_address`` (``auto``,
    ``HOST:PORT``, ``ray://HOST:PORT``) uses an existing Ray cluster, with ``workers`` actors (default:
    one per cluster CPU). Scores do not depend on either (see :mod:`studentnas.engine.parallel`).
    """
    t_start = time.perf_counter()
    say = log or sayer(quiet)
    parsed, proxy_names, run_dir, objective_names = validate_search(teacher, budget, space, proxy, searcher,
                                                                    candidates, batch_size, image_size, time_limit,
                                                                    data, out, resume, objectives)
    check_parallel(workers, ray_address)  # before the teacher loads: an unreachable cluster fails in seconds
    inputs = prepare_search(teacher, parsed, proxy_names, space=space, searcher=searcher, candidates=candidates,
                            time_limit=time_limit, data=data, image_size=image_size, batch_size=batch_size, seed=seed,
                            teacher_checkpoint=teacher_checkpoint, pretrained=pretrained, objectives=objective_names)
    job = SearchJob(**vars(inputs), proxy_names=proxy_names, proxies=[PROXIES.get(p)() for p in proxy_names],
                    searcher_cls=SEARCHERS.get(searcher), run_dir=run_dir, objectives=objective_names)
    in_process = ray_address is None and (workers or 1) == 1
    journalled, threads = _open_run_dir(job, torch.get_num_threads() if in_process else RAY_WORKER_THREADS,
                                        in_process)
    deadline = t_start + time_limit if time_limit is not None else None
    previous = torch.get_num_threads()
    if in_process:
        torch.set_num_threads(threads)  # a resumed run replays with the thread count it was scored with
    try:
        stats = _loop(job, journalled, seed, candidates, deadline, quiet, say, workers, ray_address)
        return _finish(job, stats, time.perf_counter() - t_start)
    finally:
        torch.set_num_threads(previous)
