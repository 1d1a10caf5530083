"""``studentnas distill RUN``: knowledge distillation of a search's students, with hyper-parameter search
on Ray Tune, locally or on a cluster.

For each chosen student (the ``top`` of the run's Pareto front, or ``ids``) and each mode (``kd``, and
``ce`` with ``baseline``: cross-entropy only, same epochs, trials and shared ranges), one Ray Tune
experiment runs ``trials`` trials of :func:`studentnas.distill.trial.run_trial`: ``ray.tune.Tuner``
with Optuna's TPE (``OptunaSearch``, seeded) proposing configurations from the search space
(:mod:`studentnas.distill.hparams`), an ``ASHAScheduler`` (or FIFO) stopping poor trials early on
the validation top-1, ``FailureConfig`` retrying a failed trial from its last checkpoint, and
``CheckpointConfig`` keeping each trial's last checkpoint.

The run directory is the source of truth, not Ray's experiment state: every finished trial is written
to ``RUN/distill/trials.jsonl`` (:mod:`studentnas.distill.journal`) as Tune reports it. ``resume``
reads it back: finished trials are not run again, the next experiment's Optuna study is told their
results first (``OptunaSearch.add_evaluated_point``) and only the missing trials run. A trial that was
running when the driver died starts again from scratch. This works whatever Ray version is installed
and whether or not ``Tuner.restore`` brings the searcher back.

When a student's trials are all finished, the best one (highest validation top-1 among those that ran
every epoch) is evaluated on the test split and exported with ``studentnas.runfiles.models.write_model`` to
``RUN/students/<id>.safetensors`` (baseline: ``<id>-ce.safetensors``) with a JSON sidecar: test
accuracy, params, MACs, measured batch-1 latency, the best configuration. ``RUN/distill/results.json``
collects every student, the teacher's test accuracy and the KD gain over the baseline.

Example: what ``--resources-per-trial`` and ``--scheduler`` accept::

    >>> parse_resources("cpu=2"), sorted(SCHEDULERS)
    ({'cpu': 2.0}, ['asha', 'fifo'])

Layout::

    RUN/distill/distill.json       settings (a resume must match them)
    RUN/distill/trials.jsonl       the journal of finished trials
    RUN/distill/teacher_logits/    cached teacher logits (keyed by teacher hash, data, transforms)
    RUN/distill/tune/<id>-<mode>/  Ray Tune experiments (trial folders, checkpoints)
    RUN/distill/results.json       per student: kd and ce results, the KD gain
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studentnas.core.candidate import Candidate
from studentnas.core.console import sayer
from studentnas.core.errors import BadInputError
from studentnas.data import images as data_mod
from studentnas.distill.batches import Batches
from studentnas.distill.evaluation import evaluate
from studentnas.distill.experiment import SCHEDULERS, run_experiment
from studentnas.distill.finalize import finalize_student, results_skeleton, student_cost
from studentnas.distill.hparams import MODES, HyperParamSpace
from studentnas.distill.prepare import RESULTS, SETTINGS, choose_students, prepare, require_positive, teacher_id
from studentnas.distill.resources import check_cluster, connect_ray, parse_resources
from studentnas.distill.teacher_cache import cached_teacher_logits
from studentnas.distill.trial import FAIL_ENV, TrialJob
from studentnas.engine.rundir import Run
from studentnas.runfiles.atomic import write_json_atomic


def _validate(run: str | Path, data: str | None, top: int | None, ids: Sequence[str] | str | None, epochs: int,
              trials: int, search_space: str | Path | None, scheduler: str, ray_address: str | None,
              resources_per_trial: str | dict | None, batch_size: int, val_fraction: float,
              max_failures: int) -> tuple[Run, list[Candidate], HyperParamSpace, dict[str, float]]:
    from studentnas.engine.parallel import check_parallel

    the_run = Run(run)
    students = choose_students(the_run, top, ids)
    require_positive(epochs, "--epochs", "10")
    require_positive(trials, "--trials", "8")
    require_positive(batch_size, "--batch-size", "64")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise BadInputError(f"--max-failures {max_failures!r}: must be a whole number >= 0, e.g. 2")
    if scheduler not in SCHEDULERS:
        raise BadInputError(f"--scheduler '{scheduler}': must be one of {', '.join(SCHEDULERS)}")
    if not 0 < val_fraction < 1:
        raise BadInputError(f"--val-fraction {val_fraction}: must be in (0, 1); trials are ranked on this held-out "
                            "share of the training split, e.g. 0.1")
    space = HyperParamSpace.load(search_space)
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
        >>> res = distill("runs/r1", "fashion-mnist", top=2, epochs=10, trials=8,
        ...               baseline=True)  # minutes on Ray  # doctest: +SKIP
        >>> res.results["students"][0]["kd_gain"]  # the tuning above  # doctest: +SKIP
    """
    say = sayer(quiet, prefix="distill: ")
    the_run, students, space, resources = _validate(run, data, top, ids, epochs, trials, search_space, scheduler,
                                                    ray_address, resources_per_trial, batch_size, val_fraction,
                                                    max_failures)
    prep = prepare(the_run, students, space, data=data, epochs=epochs, batch_size=batch_size,
                   train_images=train_images, test_images=test_images, val_fraction=val_fraction, seed=seed,
                   augment=augment, baseline=baseline, resume=resume, teacher_checkpoint=teacher_checkpoint)
    modes = [m for m in MODES if m == "kd" or baseline]
    owns_ray = connect_ray(ray_address, cpus)
    try:
        check_cluster(resources)
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
                prep.folder / "teacher_logits", teacher_id(prep.teacher), data)
            say(f"teacher logits for {len(prep.train)} training images: {'read from' if hit else 'written to'} "
                f"the cache in {time.perf_counter() - t0:.1f} s")
        results = results_skeleton(prep, modes, trials, scheduler)
        from studentnas.core.space import space_from_config

        the_space = space_from_config(the_run.config["space"])
        for cand in students:
            jobs = {}
            for mode in modes:
                jobs[mode] = TrialJob(
                    student=cand.id, mode=mode, space_config=the_run.config["space"], arch=cand.arch.to_dict(),
                    seed=seed, num_classes=len(prep.train.classes), input_size=prep.input_size, mean=mean, std=std,
                    train=prep.train, val=prep.val, hparams=space, epochs=epochs, batch_size=batch_size,
                    augment=augment, teacher=prep.teacher.model if mode == "kd" else None,
                    teacher_logits=prep.teacher_logits if mode == "kd" else None,
                    fail_once=os.environ.get(FAIL_ENV))
                run_experiment(prep, jobs[mode], trials, scheduler, resources, max_failures, quiet, say)
            cost = student_cost(the_space, cand, prep.input_size, len(prep.train.classes))
            entry: dict[str, Any] = {"id": cand.id, "label": the_space.format_arch(cand.arch), **cost,
                                     "scores": dict(cand.scores)}
            for mode in modes:
                entry[mode] = finalize_student(prep, cand, mode, jobs[mode], trials, cost)
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
