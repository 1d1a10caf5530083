"""``studentnas distill RUN``: knowledge distillation of a search's students, with hyper-parameter search
on Ray Tune, locally or on a cluster.

For each chosen student (the ``top`` of the run's Pareto front, or ``ids``) and each mode (``kd``, and
``ce`` with ``baseline``: cross-entropy only, same epochs, trials and shared ranges), one Ray Tune
experiment runs ``trials`` trials of :func:`studentnas.distill.trial.run_trial`: ``ray.tune.Tuner``
with Optuna's TPE (``OptunaSearch``, seeded) proposing configurations from the search space
(:mod:`studentnas.distill.search_space`), an ``ASHAScheduler`` (or FIFO) stopping poor trials early on
the validation top-1, ``FailureConfig`` retrying a failed trial from its last checkpoint, and
``CheckpointConfig`` keeping each trial's last checkpoint.

The run directory is the source of truth, not Ray's experiment state: every finished trial is written
to ``RUN/distill/trials.jsonl`` (:mod:`studentnas.distill.journal`) as Tune reports it. ``resume``
reads it back: finished trials are not run again, the next experiment's Optuna study is told their
results first (``OptunaSearch.add_evaluated_point``) and only the missing trials run. A trial that was
running when the driver died starts again from scratch. This works whatever Ray version is installed
and whether or not ``Tuner.restore`` brings the searcher back.

When a student's trials are all finished, the best one (highest validation top-1 among those that ran
every epoch) is evaluated on the test split and exported with ``studentnas.export.write_student`` to
``RUN/students/<id>.safetensors`` (baseline: ``<id>-ce.safetensors``) with a JSON sidecar: test
accuracy, params, MACs, measured batch-1 latency, the best configuration. ``RUN/distill/results.json``
collects every student, the teacher's test accuracy and the KD gain over the baseline.

Layout::

    RUN/distill/distill.json       settings (a resume must match them)
    RUN/distill/trials.jsonl       the journal of finished trials
    RUN/distill/teacher_logits/    cached teacher logits (keyed by teacher hash, data, transforms)
    RUN/distill/tune/<id>-<mode>/  Ray Tune experiments (trial folders, checkpoints)
    RUN/distill/results.json       per student: kd and ce results, the KD gain
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from studentnas import data as data_mod
from studentnas.candidate import Candidate
from studentnas.data import ImageSet
from studentnas.distill.journal import TrialJournal, best_row
from studentnas.distill.search_space import MODES, SearchSpace
from studentnas.distill.trainer import CHECKPOINT, Batches, cached_teacher_logits, evaluate, holdout_split
from studentnas.distill.trial import FAIL_ENV, METRIC, TrialJob, run_trial
from studentnas.errors import BadInputError, StudentNASError
from studentnas.run import Run, config_differences, write_json_atomic
from studentnas.teacher import Teacher, load_teacher

DISTILL_DIR, SETTINGS, JOURNAL, RESULTS = "distill", "distill.json", "trials.jsonl", "results.json"
IDENTITY = ("students", "baseline", "data", "train_images", "test_images", "val_fraction", "epochs", "batch_size",
            "seed", "augment", "search_space", "input_size", "teacher_checkpoint_sha256")
PENDING_TIMEOUT_ENV = "STUDENTNAS_DISTILL_PENDING_TIMEOUT"
DEFAULT_PENDING_TIMEOUT_S = 300.0
RESOURCE_KEYS = {"cpu": "CPU", "gpu": "GPU"}


# ------------------------------------------------------------------------------------------- inputs


def parse_resources(text: str | dict | None) -> dict[str, float]:
    """``--resources-per-trial``: ``cpu=2``, a bare number of CPUs, or a JSON object (``gpu`` must be 0: the
    trainer runs on CPU).

    >>> parse_resources("cpu=2,gpu=0"), parse_resources("3"), parse_resources(None)
    ({'cpu': 2.0, 'gpu': 0.0}, {'cpu': 3.0}, {'cpu': 1.0})
    """
    if text is None:
        return {"cpu": 1.0}
    if isinstance(text, dict):
        raw = dict(text)
    else:
        stripped = text.strip()
        try:
            raw = json.loads(stripped) if stripped.startswith("{") else None
        except json.JSONDecodeError:
            raw = None
        if raw is None:
            raw = {}
            for part in filter(None, (p.strip() for p in stripped.split(","))):
                key, eq, value = part.partition("=")
                raw["cpu" if not eq else key.strip().lower()] = key if not eq else value
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key not in RESOURCE_KEYS:
            raise BadInputError(f"--resources-per-trial: unknown resource '{key}'; valid: cpu, gpu "
                                "(e.g. cpu=2 or cpu=1,gpu=1)")
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number) or number < 0:
            raise BadInputError(f"--resources-per-trial: {key}={value!r} is not a number >= 0; e.g. cpu=2")
        out[key] = number
    if out.get("gpu", 0) > 0:
        raise BadInputError(f"--resources-per-trial gpu={out['gpu']:g}: the distillation trainer runs on CPU only; "
                            "drop gpu= (give each trial more CPUs with cpu=N instead)")
    out.setdefault("cpu", 1.0)
    if out["cpu"] <= 0:
        raise BadInputError("--resources-per-trial: cpu must be > 0 (a trial runs on CPU threads); e.g. cpu=1")
    return out


def check_resources(need: dict[str, float], nodes: Sequence[dict[str, float]], available: dict[str, float]) -> None:
    """Refuse a per-trial request no node can hold, or that the cluster has no free capacity for now.

    ``nodes`` holds each alive node's total resources (Ray names: ``CPU``, ``GPU``); ``available`` the
    cluster's free resources. Better a clear error than a Tune run that waits forever.

    >>> check_resources({"cpu": 2}, [{"CPU": 1}, {"CPU": 1}], {"CPU": 2})
    Traceback (most recent call last):
    ...
    studentnas.errors.BadInputError: --resources-per-trial cpu=2: no node of the Ray cluster has 2 CPUs (the largest has 1, 2 in all; a trial runs on one node); ask for cpu=1 or fewer, or add a bigger node
    >>> check_resources({"cpu": 1}, [{"CPU": 4}], {"CPU": 0})
    Traceback (most recent call last):
    ...
    studentnas.errors.BadInputError: --resources-per-trial cpu=1: the Ray cluster has no free CPUs (0 of 4 free; other jobs hold the rest); wait for them or stop them, or lower --resources-per-trial
    """  # noqa: E501
    for key, ray_key in RESOURCE_KEYS.items():
        amount = need.get(key, 0.0)
        if amount <= 0:
            continue
        unit = f"{ray_key}s"
        largest = max((n.get(ray_key, 0.0) for n in nodes), default=0.0)
        total = sum(n.get(ray_key, 0.0) for n in nodes)
        if largest < amount:
            fix = f"ask for {key}={largest:g} or fewer" if largest > 0 else f"drop {key}= from it"
            raise BadInputError(f"--resources-per-trial {key}={amount:g}: no node of the Ray cluster has {amount:g} "
                                f"{unit} (the largest has {largest:g}, {total:g} in all; a trial runs on one node); "
                                f"{fix}, or add a bigger node")
        free = available.get(ray_key, 0.0)
        if free < amount:
            raise BadInputError(f"--resources-per-trial {key}={amount:g}: the Ray cluster has "
                                f"{'no free ' + unit if free == 0 else f'only {free:g} free {unit}'} ({free:g} of "
                                f"{total:g} free; other jobs hold the rest); wait for them or stop them, or lower "
                                "--resources-per-trial")


def _positive(value: Any, flag: str, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"{flag} {value!r}: must be a whole number >= 1; e.g. {flag} {example}")
    return value


def choose_students(run: Run, top: int | None, ids: Sequence[str] | str | None) -> list[Candidate]:
    """The students to distil: the ``top`` of the front (best first) or the candidates ``ids``."""
    if top is not None and ids:
        raise BadInputError("pass --top K or --ids ID,ID, not both")
    if isinstance(ids, str):
        ids = [i.strip() for i in ids.split(",") if i.strip()]
    if ids:
        chosen = []
        for arch_id in dict.fromkeys(ids):
            cand = run.candidate(arch_id)
            if not cand.ok:
                raise BadInputError(f"candidate {arch_id} of '{run.path}' is {cand.status} ({cand.reason}); pick a "
                                    "scored candidate")
            chosen.append(cand)
        return chosen
    front = run.pareto
    if not front:
        raise BadInputError(f"run '{run.path}' has no Pareto front (no scored candidate in "
                            f"{run.path / 'candidates.jsonl'}); finish the search first (studentnas search ... --out "
                            f"{run.path} --resume) or pass a run that has one")
    top = 1 if top is None else _positive(top, "--top", "3")
    if top > len(front):
        raise BadInputError(f"--top {top} is larger than the Pareto front of '{run.path}', which has {len(front)} "
                            f"student{'s' if len(front) != 1 else ''}; use --top {len(front)} or fewer, or --ids")
    return front[:top]


# --------------------------------------------------------------------------------------------- Ray


def _connect(address: str | None, cpus: int | None) -> bool:
    """Start a local Ray (``cpus`` CPUs, default all) or join ``address``; True if this call started it.

    Every worker runs the torchvision shim first (``worker_process_setup_hook``), as in ``search``.
    """
    import ray

    from studentnas.parallel import init_ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    init_ray(address, cpus or os.cpu_count() or 1)
    return True


def _check_cluster(need: dict[str, float]) -> None:
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    check_resources(need, nodes, ray.available_resources())


# ---------------------------------------------------------------------------------------- the driver


@dataclass
class _Prepared:
    run: Run
    students: list[Candidate]
    space: SearchSpace
    teacher: Teacher
    input_size: tuple[int, int, int]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    settings: dict[str, Any]
    folder: Path
    teacher_logits: torch.Tensor | None = None
    teacher_test: dict[str, float] = field(default_factory=dict)


def _say(quiet: bool) -> Callable[[str], None]:
    return (lambda _m: None) if quiet else (lambda m: print(f"distill: {m}", file=sys.stderr, flush=True))


def _validate(run: str | Path, data: str | None, top: int | None, ids: Sequence[str] | str | None, epochs: int,
              trials: int, search_space: str | Path | None, scheduler: str, ray_address: str | None,
              resources_per_trial: str | dict | None, batch_size: int, val_fraction: float,
              max_failures: int) -> tuple[Run, list[Candidate], SearchSpace, dict[str, float]]:
    from studentnas.parallel import check_parallel

    the_run = Run(run)
    students = choose_students(the_run, top, ids)
    _positive(epochs, "--epochs", "10")
    _positive(trials, "--trials", "8")
    _positive(batch_size, "--batch-size", "64")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise BadInputError(f"--max-failures {max_failures!r}: must be a whole number >= 0, e.g. 2")
    if scheduler not in SCHEDULERS:
        raise BadInputError(f"--scheduler '{scheduler}': must be one of {', '.join(SCHEDULERS)}")
    if not 0 < val_fraction < 1:
        raise BadInputError(f"--val-fraction {val_fraction}: must be in (0, 1); trials are ranked on this held-out "
                            "share of the training split, e.g. 0.1")
    space = SearchSpace.load(search_space)
    resources = parse_resources(resources_per_trial)
    if data is None:
        raise BadInputError("--data is required: the images to distil on, e.g. fashion-mnist, cifar10:PATH or an "
                            "ImageFolder with train/ and test/ folders (the teacher's classes)")
    data_mod.check_data_spec(data)
    for module in ("ray", "optuna"):
        if importlib.util.find_spec(module) is None:
            raise BadInputError(f"distill needs {module}, which is not installed; pip install 'ray[tune]' optuna")
    check_parallel(None, ray_address)
    return the_run, students, space, resources


def _load_teacher(run: Run, checkpoint: str | Path | None) -> Teacher:
    config = run.config
    path = checkpoint or config.get("teacher_checkpoint")
    pretrained = bool(config.get("pretrained")) and checkpoint is None
    if path is None and not pretrained:
        raise BadInputError(f"the teacher of run '{run.path}' ({config['teacher']}) is randomly initialised: there "
                            "is nothing to distil; pass --teacher-checkpoint PATH (make one with `studentnas teacher "
                            f"train --model {config['teacher']} --data ... --out teacher.safetensors`)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.get("seed", 0)))
        return load_teacher(config["teacher"], path, pretrained=pretrained)


def _check_classes(train: ImageSet, teacher: Teacher, spec: str) -> None:
    if len(train.classes) != teacher.num_classes:
        raise BadInputError(
            f"--data {spec} has {len(train.classes)} classes but the teacher's head has {teacher.num_classes}: "
            f"distil on data with the teacher's {teacher.num_classes} classes, or train a teacher on this data "
            f"(studentnas teacher train --model {teacher.name} --data {spec} --out teacher.safetensors) and pass "
            "it with --teacher-checkpoint")


def _prepare(run: Run, students: list[Candidate], space: SearchSpace, *, data: str, epochs: int, batch_size: int,
             train_images: int | None, test_images: int | None, val_fraction: float, seed: int, augment: bool,
             baseline: bool, resume: bool, teacher_checkpoint: str | Path | None) -> _Prepared:
    folder = run.path / DISTILL_DIR
    if (folder / SETTINGS).is_file() and not resume:
        raise BadInputError(f"'{folder}' already holds a distillation; pass --resume to continue it, or remove "
                            f"'{folder}' to start again")
    teacher = _load_teacher(run, teacher_checkpoint)
    input_size = tuple(int(v) for v in run.config["input_size"])
    full = data_mod.load_images(data, "train", limit=train_images, seed=seed)
    _check_classes(full, teacher, data)
    test = data_mod.load_images(data, "test", limit=test_images, seed=seed)
    train, val = holdout_split(full, val_fraction, seed)
    settings = {
        "students": [c.id for c in students], "baseline": baseline, "data": data, "data_source": full.source,
        "train_images": train_images, "test_images": test_images, "val_fraction": val_fraction, "epochs": epochs,
        "batch_size": batch_size, "seed": seed, "augment": augment, "search_space": space.to_json(),
        "search_space_file": space.source, "input_size": list(input_size), "teacher": teacher.name,
        "teacher_checkpoint": teacher.checkpoint, "teacher_checkpoint_sha256": teacher.checkpoint_sha256,
        "classes": list(full.classes),
    }
    if (folder / SETTINGS).is_file():
        old = json.loads((folder / SETTINGS).read_text())
        diffs = config_differences(old, settings, IDENTITY)
        if diffs:
            raise BadInputError(f"cannot resume '{folder}': {'; '.join(diffs)}; rerun with the same settings or remove "
                                f"'{folder}' to start again")
    return _Prepared(run=run, students=students, space=space, teacher=teacher, input_size=input_size,
                     train=train, val=val, test=test, settings=settings, folder=folder)


def _teacher_id(teacher: Teacher) -> str | None:
    return teacher.checkpoint_sha256 or (f"pretrained:{teacher.name}" if teacher.trained else None)


def _scheduler(name: str, epochs: int) -> Any:
    return SCHEDULERS[name](epochs)


def _asha(epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(metric=METRIC, mode="max", time_attr="training_iteration", max_t=epochs, grace_period=1,
                         reduction_factor=2)


def _fifo(_epochs: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: dict[str, Callable[[int], Any]] = {"asha": _asha, "fifo": _fifo}


def _journal_callback(journal: TrialJournal, job: TrialJob, experiment: str, folder: Path, params: list[str],
                      pending_timeout: float, say: Callable[[str], None], trials: int) -> Any:
    from ray.tune import Callback

    class JournalCallback(Callback):
        """Writes each finished trial to the journal the moment Tune reports it (runs in the driver)."""

        def __init__(self) -> None:
            self.history: dict[str, list[dict[str, Any]]] = {}
            self.started = time.monotonic()
            self.any_started = False

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.any_started = True

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            if not self.any_started and trials and time.monotonic() - self.started > pending_timeout:
                import ray

                raise StudentNASError(f"no trial could start within {pending_timeout:.0f} s: the Ray cluster has "
                                      f"{ray.available_resources().get('CPU', 0):g} free CPUs of "
                                      f"{ray.cluster_resources().get('CPU', 0):g}; free some, or lower "
                                      "--resources-per-trial")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            keep = {k: v for k, v in result.items() if k == "epoch" or k.startswith(("train_", "val_", "lr"))}
            self.history.setdefault(trial.trial_id, []).append(keep)

        def _write(self, trial: Any, status: str) -> None:
            last = dict(trial.last_result or {})
            history = self.history.get(trial.trial_id, [])
            checkpoint = trial.checkpoint.path if trial.checkpoint is not None else None
            if checkpoint is not None:
                try:
                    checkpoint = str(Path(checkpoint).relative_to(folder.resolve()))
                except ValueError:
                    pass
            error = None
            if status == "failed":
                error = str(getattr(trial, "error_file", None) or "see the trial's error.txt")
            epochs_done = int(last.get("epoch", 0) or 0)
            row = {
                "student": job.student, "mode": job.mode, "experiment": experiment, "trial_id": trial.trial_id,
                "status": status, "config": {k: trial.config[k] for k in params if k in trial.config},
                "val_top1": _finite(last.get("val_top1")), "val_top5": _finite(last.get("val_top5")),
                "val_loss": _finite(last.get("val_loss")), "epochs_done": epochs_done,
                "stopped_early": status == "ok" and epochs_done < job.epochs, "checkpoint": checkpoint,
                "history": [{k: _finite(v) for k, v in h.items()} for h in history],
                "restarts": int(getattr(trial, "num_failures", 0) or 0), "error": error,
                "worker": last.get("worker"),
                "seconds": _finite(last.get("time_total_s")),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            journal.append(row)
            n = len(journal.rows(job.student, job.mode))
            what = ("failed" if status == "failed" else
                    f"val top-1 {row['val_top1']:.2f} % after {epochs_done} epoch(s)"
                    + (" (stopped early)" if row["stopped_early"] else ""))
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["config"].items())
            say(f"{job.student} [{job.mode}] trial {n}/{trials}: {what}; {shown}")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial, "ok")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial, "failed")

    return JournalCallback()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _experiment_name(tune_dir: Path, student: str, mode: str) -> str:
    name, k = f"{student}-{mode}", 1
    while (tune_dir / name).exists():
        k += 1
        name = f"{student}-{mode}-{k}"
    return name


def _searcher(space: SearchSpace, mode: str, seed: int, student: str,
              done: list[dict[str, Any]]) -> tuple[Any, list[str]]:
    """Optuna TPE over the tunable parameters, told the journal's finished trials first (None: nothing to tune)."""
    from ray.tune.search.optuna import OptunaSearch

    from studentnas.distill.trainer import _seed_of

    dists = space.distributions(mode)
    if not dists:
        return None, []
    optuna_log = logging.getLogger("optuna")
    level = optuna_log.level
    optuna_log.setLevel(logging.WARNING)
    try:
        # The sampler's seed includes how many trials finished before: a resumed study must not draw the
        # same random start-up points again (TPE's first trials are random draws from its own RNG).
        searcher = OptunaSearch(space=dists, metric=METRIC, mode="max",
                                seed=_seed_of("optuna", seed, student, mode, len(done)) % 2**31)
        for row in done:
            params = {k: row["config"][k] for k in dists if k in row.get("config", {})}
            if len(params) != len(dists):
                continue
            failed = row.get("status") != "ok" or row.get("val_top1") is None
            searcher.add_evaluated_point(params, None if failed else float(row["val_top1"]), error=failed,
                                         pruned=bool(row.get("stopped_early")) and not failed)
    finally:
        optuna_log.setLevel(level)
    return searcher, list(dists)


def _run_experiment(prep: _Prepared, job: TrialJob, trials: int, scheduler: str, resources: dict[str, float],
                    max_failures: int, quiet: bool, say: Callable[[str], None]) -> None:
    from ray import tune

    journal = TrialJournal(prep.folder / JOURNAL)
    done = journal.rows(job.student, job.mode)
    if len(done) >= trials:
        return
    searcher, params = _searcher(prep.space, job.mode, job.seed, job.student, done)
    tune_dir = prep.folder / "tune"
    name = _experiment_name(tune_dir, job.student, job.mode)
    say(f"{job.student} [{job.mode}]: {trials - len(done)} trial(s) to run ({len(done)} finished before), "
        f"{job.epochs} epoch(s) each, scheduler {scheduler}, experiment {tune_dir / name}")
    timeout = float(os.environ.get(PENDING_TIMEOUT_ENV, DEFAULT_PENDING_TIMEOUT_S))
    callback = _journal_callback(journal, job, name, prep.folder, params, timeout, say, trials)
    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job),
                                    {k: v for k, v in resources.items() if v > 0})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(scheduler, job.epochs),
                                    num_samples=trials - len(done), reuse_actors=False,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=name, storage_path=str(tune_dir.resolve()), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=[callback]),
    )
    try:
        tuner.fit()
    except StudentNASError:
        raise
    except Exception as err:  # noqa: BLE001 - Tune wraps our callback's errors in its own
        cause = err
        while cause is not None and not isinstance(cause, StudentNASError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise


# ------------------------------------------------------------------------------------------- results


def _student_cost(space: Any, cand: Candidate, input_size: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    from studentnas.latency import LatencyMeter

    cost = space.cost(cand.arch, input_size, num_classes)
    latency = LatencyMeter().measure(space, cand.arch, input_size, num_classes)
    return {"macs": cost.macs, "params": cost.params, "latency_ms": latency}


def _finalize(prep: _Prepared, cand: Candidate, mode: str, job: TrialJob, trials: int,
              cost: dict[str, Any]) -> dict[str, Any] | None:
    """Evaluate the best trial on the test split and export it; the student's entry in results.json."""
    from studentnas.export import write_student

    rows = TrialJournal(prep.folder / JOURNAL).rows(cand.id, mode)
    best = best_row(rows, job.epochs)
    summary: dict[str, Any] = {"trials": len(rows), "failed": sum(r["status"] != "ok" for r in rows),
                               "stopped_early": sum(bool(r.get("stopped_early")) for r in rows)}
    if best is None:
        return {**summary, "error": "no trial finished"}
    ckpt = Path(best["checkpoint"])
    ckpt = ckpt if ckpt.is_absolute() else prep.folder / ckpt
    state = torch.load(ckpt / CHECKPOINT, map_location="cpu", weights_only=False)
    model = job.build_student()
    model.load_state_dict(state["model"])
    test = evaluate(model, Batches(prep.test, prep.input_size, prep.teacher.mean, prep.teacher.std,
                                   job.batch_size))
    train_config = job.train_config(best["config"]).to_dict()
    run_cfg = prep.run.config
    out = prep.run.path / "students" / (f"{cand.id}.safetensors" if mode == "kd" else f"{cand.id}-ce.safetensors")
    entry = {**summary, "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
             "val_top1": best["val_top1"], "best_config": best["config"], "train_config": train_config,
             "trial_id": best["trial_id"], "experiment": best["experiment"], "file": str(out)}
    meta = {
        "format": 1, "space": run_cfg["space"], "arch": cand.arch.to_dict(), "label": str(cand.arch),
        "cost": cost, "scores": dict(cand.scores), "num_classes": job.num_classes, "input_size": list(prep.input_size),
        "teacher": prep.teacher.name, "run": str(prep.run.path), "seed": job.seed,
        "macs": cost["macs"], "params": cost["params"], "latency_ms": cost["latency_ms"],
        "test_top1": test["top1"], "test_top5": test["top5"], "best_config": best["config"],
        "distill": {"mode": mode, **{k: v for k, v in entry.items() if k != "file"}, "data": prep.settings["data"],
                    "classes": prep.settings["classes"], "epochs": job.epochs, "teacher_test_top1":
                    prep.teacher_test.get("top1"), "teacher_checkpoint": prep.teacher.checkpoint},
    }
    write_student(out, model.to(memory_format=torch.contiguous_format), meta)
    return entry


@dataclass
class DistillResult:
    """What ``distill`` returns: the results.json content and where it is."""

    path: Path
    results: dict[str, Any]


def distill(run: str | Path, data: str | None, *, top: int | None = None, ids: Sequence[str] | str | None = None,
            epochs: int = 10, trials: int = 8, search_space: str | Path | None = None, scheduler: str = "asha",
            ray_address: str | None = None, resources_per_trial: str | dict | None = "cpu=1", resume: bool = False,
            baseline: bool = False, teacher_checkpoint: str | Path | None = None, batch_size: int = 64,
            train_images: int | None = None, test_images: int | None = None, val_fraction: float = 0.1,
            seed: int = 0, teacher_cache: bool = True, augment: bool = False, cpus: int | None = None,
            max_failures: int = 2, quiet: bool = False) -> DistillResult:
    """Distil the chosen students of ``run`` on ``data`` with HPO on Ray Tune (see the module docstring).

    Example::

        >>> from studentnas.distill import distill
        >>> res = distill("runs/r1", "fashion-mnist", top=2, epochs=10, trials=8, baseline=True)  # doctest: +SKIP
        >>> res.results["students"][0]["kd_gain"]  # doctest: +SKIP
    """
    say = _say(quiet)
    the_run, students, space, resources = _validate(run, data, top, ids, epochs, trials, search_space, scheduler,
                                                    ray_address, resources_per_trial, batch_size, val_fraction,
                                                    max_failures)
    prep = _prepare(the_run, students, space, data=data, epochs=epochs, batch_size=batch_size,
                    train_images=train_images, test_images=test_images, val_fraction=val_fraction, seed=seed,
                    augment=augment, baseline=baseline, resume=resume, teacher_checkpoint=teacher_checkpoint)
    modes = [m for m in MODES if m == "kd" or baseline]
    owns_ray = _connect(ray_address, cpus)
    try:
        _check_cluster(resources)
        prep.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(prep.folder / SETTINGS, prep.settings)
        mean, std = prep.teacher.mean, prep.teacher.std
        prep.teacher_test = evaluate(prep.teacher.model, Batches(prep.test, prep.input_size, mean, std, batch_size))
        say(f"teacher {prep.teacher.name}: test top-1 {prep.teacher_test['top1']:.2f} % on {len(prep.test)} images")
        use_cache = teacher_cache and not augment
        if use_cache:
            t0 = time.perf_counter()
            prep.teacher_logits, hit = cached_teacher_logits(
                prep.teacher.model, Batches(prep.train, prep.input_size, mean, std, batch_size),
                prep.folder / "teacher_logits", _teacher_id(prep.teacher), data)
            say(f"teacher logits for {len(prep.train)} training images: {'read from' if hit else 'written to'} "
                f"the cache in {time.perf_counter() - t0:.1f} s")
        results = _results_skeleton(prep, modes, trials, scheduler)
        from studentnas.export import space_from_config

        the_space = space_from_config(the_run.config["space"])
        for cand in students:
            jobs = {}
            for mode in modes:
                jobs[mode] = TrialJob(
                    student=cand.id, mode=mode, space_config=the_run.config["space"], arch=cand.arch.to_dict(),
                    seed=seed, num_classes=len(prep.train.classes), input_size=prep.input_size, mean=mean, std=std,
                    train=prep.train, val=prep.val, search_space=space, epochs=epochs, batch_size=batch_size,
                    augment=augment, teacher=prep.teacher.model if mode == "kd" else None,
                    teacher_logits=prep.teacher_logits if mode == "kd" else None,
                    fail_once=os.environ.get(FAIL_ENV))
                _run_experiment(prep, jobs[mode], trials, scheduler, resources, max_failures, quiet, say)
            cost = _student_cost(the_space, cand, prep.input_size, len(prep.train.classes))
            entry: dict[str, Any] = {"id": cand.id, "label": str(cand.arch), **cost, "scores": dict(cand.scores)}
            for mode in modes:
                entry[mode] = _finalize(prep, cand, mode, jobs[mode], trials, cost)
            kd, ce = entry.get("kd") or {}, entry.get("ce") or {}
            if "test_top1" in kd and "test_top1" in ce:
                entry["kd_gain"] = kd["test_top1"] - ce["test_top1"]
            results["students"].append(entry)
            write_json_atomic(prep.folder / RESULTS, results)
        results["status"] = "done"
        write_json_atomic(prep.folder / RESULTS, results)
        return DistillResult(prep.folder / RESULTS, results)
    finally:
        if owns_ray:
            import ray

            ray.shutdown()


def _results_skeleton(prep: _Prepared, modes: list[str], trials: int, scheduler: str) -> dict[str, Any]:
    return {"status": "running", "teacher": {"name": prep.teacher.name, "checkpoint": prep.teacher.checkpoint,
                                             "test_top1": prep.teacher_test.get("top1"),
                                             "test_top5": prep.teacher_test.get("top5")},
            "data": prep.settings["data"], "train_images": len(prep.train), "val_images": len(prep.val),
            "test_images": len(prep.test), "modes": modes, "trials": trials, "epochs": prep.settings["epochs"],
            "scheduler": scheduler, "input_size": list(prep.input_size), "students": []}
