"""The training worker both studies use: one student, one seed, KD or CE only, and the pool that runs many.

:func:`train_one` takes a plain-dict job (picklable, so it runs in a spawned worker process) and returns the
journal line of the finished training. :func:`run_jobs` runs jobs in this process or in parallel processes
(one torch thread each) and hands every outcome to the caller, who appends it to the study's journal; a
diverging student (``FloatingPointError``/``RuntimeError``) is an outcome, not a crash.

Example:
    >>> seen = []
    >>> def double(job):
    ...     return {"n": 2 * job["n"]}
    >>> run_jobs([{"n": 1}, {"n": 2}], None, lambda job, row, err: seen.append(row), work=double)
    >>> seen
    [{'n': 2}, {'n': 4}]
    >>> failed_row({"arch": {"space": "resnet", "genes": {}}, "seed": 0, "mode": "kd"}, RuntimeError("nan"))["reason"]
    'RuntimeError: nan'
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from studentnas.core.arch import Arch
from studentnas.core.registry import SPACES
from studentnas.distill.batches import Batches
from studentnas.distill.evaluation import evaluate
from studentnas.distill.trainer import train
from studentnas.engine.evaluate import build_student
from studentnas.studies.common import FAILURES
from studentnas.studies.inputs import cached_teacher, datasets, teacher_logits
from studentnas.studies.settings import Settings

Record = Callable[[dict[str, Any], "dict[str, Any] | None", "BaseException | None"], None]


def mode_of(row: Mapping[str, Any]) -> str:
    """A journal line's training mode; lines written before the CE baseline existed are KD trainings."""
    return row.get("mode", "kd")


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one student with one seed, KD or CE only (runs in a worker process, or here with --jobs 1).

    ``job``: ``settings`` (a :class:`Settings` as a dict), ``space`` (its config), ``arch``, ``seed``, ``mode``
    (``kd`` or ``ce``), ``checkpoint`` (the teacher's), ``cache`` (the teacher-logits folder) and ``ckpt``
    (this training's per-epoch checkpoints, removed once it is done).
    """
    t0 = time.perf_counter()
    s = Settings(**job["settings"])
    torch.set_num_threads(1)
    space = SPACES.get(job["space"]["name"]).from_config(job["space"])
    arch = Arch.from_dict(job["arch"])
    teacher = cached_teacher(s.teacher, job["checkpoint"])
    train_set, test_set = datasets(s.data, s.train_images, s.test_images, s.seed)
    config = s.train_config(job["seed"], job["mode"])
    logits = teacher_logits(s, job["checkpoint"], job["cache"]) if config.needs_teacher else None
    student = build_student(space, arch, job["seed"], teacher.num_classes, s.input_size[0])
    batches = Batches(train_set, s.input_size, teacher.mean, teacher.std, s.batch_size, shuffle=True,
                      seed=job["seed"], drop_last=True)
    result = train(student, batches, None, config, teacher_logits=logits, checkpoint_dir=job["ckpt"], threads=1)
    test = evaluate(student, Batches(test_set, s.input_size, teacher.mean, teacher.std, 256))
    shutil.rmtree(job["ckpt"], ignore_errors=True)
    return {"student": arch.id, "seed": job["seed"], "mode": job["mode"], "status": "ok", "test_top1": test["top1"],
            "test_top5": test["top5"], "test_loss": test["loss"], "train_images": batches.num_images,
            "test_images": len(test_set), "epochs": s.epochs, "resumed_from_epoch": result.resumed_from_epoch,
            "train_images_per_s": float(np.median([h["train_images_per_s"] for h in result.history])),
            "history": result.history, "seconds": time.perf_counter() - t0, "pid": os.getpid(),
            "finished_at": time.time()}


def failed_row(job: Mapping[str, Any], err: BaseException | None) -> dict[str, Any]:
    """The journal line of a training that failed with ``err``."""
    return {"student": Arch.from_dict(job["arch"]).id, "seed": job["seed"], "mode": job["mode"],
            "status": "failed", "reason": f"{type(err).__name__}: {err}", "finished_at": time.time()}


def run_jobs(jobs: Sequence[dict[str, Any]], processes: int | None, record: Record,
             work: Callable[[dict[str, Any]], dict[str, Any]] = train_one) -> None:
    """Run ``work`` on every job and call ``record(job, row, None)``, or ``record(job, None, err)`` when it failed
    with one of ``FAILURES``; any other error propagates. ``processes`` None runs here, one after the other;
    a number runs that many spawned worker processes."""
    if processes is None:
        for job in jobs:
            try:
                row, err = work(job), None
            except FAILURES as e:  # a diverging student is recorded, not fatal
                row, err = None, e
            record(job, row, err)
        return
    with cf.ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(work, job): job for job in jobs}
        for fut in cf.as_completed(futures):
            err = fut.exception()
            if err is not None and not isinstance(err, FAILURES):
                raise err
            record(futures[fut], None if err else fut.result(), err)
