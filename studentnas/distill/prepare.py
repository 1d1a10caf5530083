"""The inputs of ``studentnas distill``, read and checked before Ray starts: the students to distil
(:func:`choose_students`), the teacher, the train/validation/test splits and the settings a resume
must match, gathered in one :class:`Prepared`; and the names of the files in ``RUN/distill``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError
from studentnas.data import images as data_mod
from studentnas.data.images import ImageSet
from studentnas.data.teachers import Teacher, load_teacher
from studentnas.distill.batches import holdout_split
from studentnas.distill.hparams import HyperParamSpace
from studentnas.distill.journal import TrialJournal
from studentnas.engine.rundir import Run, config_differences

DISTILL_DIR, SETTINGS, JOURNAL, RESULTS = "distill", "distill.json", "trials.jsonl", "results.json"
IDENTITY = ("students", "baseline", "data", "train_images", "test_images", "val_fraction", "epochs", "batch_size",
            "seed", "augment", "search_space", "input_size", "teacher_checkpoint_sha256")


def require_positive(value: Any, flag: str, example: str) -> int:
    """``value`` if it is a whole number >= 1; a :class:`BadInputError` naming ``flag`` and an ``example`` otherwise.

    >>> require_positive(3, "--top", "3")
    3
    """
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
    top = 1 if top is None else require_positive(top, "--top", "3")
    if top > len(front):
        raise BadInputError(f"--top {top} is larger than the Pareto front of '{run.path}', which has {len(front)} "
                            f"student{'s' if len(front) != 1 else ''}; use --top {len(front)} or fewer, or --ids")
    return front[:top]


@dataclass
class Prepared:
    """The checked inputs of one ``distill`` call: run, students, teacher, splits and the settings file's content."""

    run: Run
    students: list[Candidate]
    space: HyperParamSpace
    teacher: Teacher
    input_size: tuple[int, int, int]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    settings: dict[str, Any]
    folder: Path
    teacher_logits: torch.Tensor | None = None
    teacher_test: dict[str, float] = field(default_factory=dict)


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


def prepare(run: Run, students: list[Candidate], space: HyperParamSpace, *, data: str, epochs: int, batch_size: int,
            train_images: int | None, test_images: int | None, val_fraction: float, seed: int, augment: bool,
            baseline: bool, resume: bool, teacher_checkpoint: str | Path | None) -> Prepared:
    """Load the teacher and the splits and check a resume against ``RUN/distill/distill.json`` (nothing written)."""
    folder = run.path / DISTILL_DIR
    if (folder / SETTINGS).is_file() and not resume:
        raise BadInputError(f"'{folder}' already holds a distillation; pass --resume to continue it, or remove "
                            f"'{folder}' to start again")
    TrialJournal(folder / JOURNAL).read()  # a corrupt journal is refused before the teacher loads and Ray starts
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
    return Prepared(run=run, students=students, space=space, teacher=teacher, input_size=input_size,
                     train=train, val=val, test=test, settings=settings, folder=folder)


def teacher_id(teacher: Teacher) -> str | None:
    """The key of the teacher-logit cache: the checkpoint's hash, ``pretrained:NAME``, or None (untrained)."""
    return teacher.checkpoint_sha256 or (f"pretrained:{teacher.name}" if teacher.trained else None)
