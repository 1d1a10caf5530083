"""One Ray Tune trial of ``studentnas distill``: :func:`run_trial` trains one student with one sampled
configuration through the plain loop of :mod:`studentnas.distill.trainer`.

Everything a student's trials share (its arch, the data, the teacher or its cached logits, the
search space) travels in one :class:`TrialJob` that ``tune.with_parameters`` puts in the object store
once per experiment. Each trial uses as many torch threads as the CPUs Ray assigned it, reports every
epoch's stats with a checkpoint (``tune.report``), and, when Ray restarts it after a failure
(``FailureConfig``), continues from the last checkpoint (``tune.get_checkpoint``).

Test-only fault injection: with ``STUDENTNAS_TEST_FAIL_TRIAL_ONCE=MARKER`` set where ``distill`` starts,
the first trial to finish epoch ``min(2, epochs)`` creates ``MARKER`` (atomically, so only one does) and
raises before reporting that epoch; ``tests/test_distill.py`` uses it to check that the trial is retried
from its checkpoint. Nothing else reads it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studentnas.core.candidate import ray_worker_name
from studentnas.data.images import ImageSet
from studentnas.distill.batches import Batches
from studentnas.distill.hparams import HyperParamSpace
from studentnas.distill.trainer import CHECKPOINT, train

FAIL_ENV = "STUDENTNAS_TEST_FAIL_TRIAL_ONCE"
METRIC = "val_top1"


@dataclass
class TrialJob:
    """What the trials of one (student, mode) experiment share."""

    student: str
    mode: str  # "kd" (distillation) or "ce" (the cross-entropy baseline)
    space_config: dict[str, Any]
    arch: dict[str, Any]
    seed: int
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: ImageSet
    val: ImageSet
    hparams: HyperParamSpace
    epochs: int
    batch_size: int
    augment: bool = False
    teacher: torch.nn.Module | None = None
    teacher_logits: torch.Tensor | None = None
    fail_once: str | None = None  # test-only, see the module docstring

    def train_config(self, sampled: dict[str, Any]):  # noqa: ANN201 - TrainConfig
        return self.hparams.train_config(sampled, self.mode, epochs=self.epochs, batch_size=self.batch_size,
                                         seed=self.seed, augment=self.augment)

    def build_student(self) -> torch.nn.Module:
        from studentnas.core.arch import Arch
        from studentnas.core.space import space_from_config
        from studentnas.engine.evaluate import build_student

        return build_student(space_from_config(self.space_config), Arch.from_dict(self.arch), self.seed,
                             self.num_classes, self.input_size[0])


def _fail_once(marker: str) -> None:
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    raise RuntimeError("test-injected trial failure (STUDENTNAS_TEST_FAIL_TRIAL_ONCE)")


def _reportable(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in stats.items()}


def run_trial(config: dict[str, Any], job: TrialJob) -> None:
    """The Ray Tune function trainable (see the module docstring)."""
    import ray
    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per checkpoint in the driver's output
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    worker = ray_worker_name()  # as in search's candidates.jsonl
    train_config = job.train_config(config)
    student = job.build_student()
    workdir = Path(tempfile.mkdtemp(prefix="studentnas-trial-"))
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                shutil.copy(Path(folder) / CHECKPOINT, workdir / CHECKPOINT)
        fail_epoch = min(2, job.epochs)

        def report(stats: dict[str, Any], folder: Path | None) -> None:
            if job.fail_once and stats["epoch"] == fail_epoch:
                _fail_once(job.fail_once)
            stats["worker"] = worker
            tune.report(_reportable(stats), checkpoint=tune.Checkpoint.from_directory(str(folder)))

        batches = Batches(job.train, job.input_size, job.mean, job.std, job.batch_size, shuffle=True,
                          augment=job.augment, seed=job.seed, drop_last=True)
        val = Batches(job.val, job.input_size, job.mean, job.std, job.batch_size)
        train(student, batches, val, train_config, teacher=job.teacher, teacher_logits=job.teacher_logits,
              checkpoint_dir=workdir, on_epoch=report)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
