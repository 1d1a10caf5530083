"""The teacher of a study: a given checkpoint, or one trained once into the study folder (and reused by every
rerun), and its test top-1 on the students' test images.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> teacher_checkpoint(str(folder / "nope.safetensors"), folder, None, print, "unused")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --teacher-checkpoint '.../nope.safetensors' does not exist; ...
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studentnas.core.errors import BadInputError
from studentnas.data.teachers import Teacher
from studentnas.distill.batches import Batches
from studentnas.distill.evaluation import evaluate
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.studies.common import json_ready
from studentnas.studies.inputs import datasets
from studentnas.studies.settings import Settings

TEACHER_FILE = "teacher.safetensors"


def _sidecar(path: Path) -> dict[str, Any]:
    sidecar = path.with_suffix(".json")
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}


def check_teacher_checkpoint(given: str | None) -> None:
    """Refuse a ``--teacher-checkpoint`` that is not a file (before any work)."""
    if given is not None and not Path(given).is_file():
        raise BadInputError(f"--teacher-checkpoint '{given}' does not exist; train one with `studentnas teacher "
                            "train` or leave the flag out")


def teacher_checkpoint(given: str | None, folder: Path, train: Callable[[Path], dict[str, Any]] | None,
                       say: Callable[[str], None], announce: str,
                       extra: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """The teacher checkpoint and its training sidecar (``{}`` when a given checkpoint has none).

    ``given`` (``--teacher-checkpoint``) is used as it is. Otherwise ``folder/teacher.safetensors`` is reused
    when it and its sidecar exist, else ``announce`` is said and ``train(path)`` writes it (with its sidecar,
    as ``studentnas teacher train`` does); ``extra`` fields are then added to the sidecar.
    """
    if given is not None:
        check_teacher_checkpoint(given)
        return Path(given), _sidecar(Path(given))
    path = folder / TEACHER_FILE
    if path.is_file() and path.with_suffix(".json").is_file():
        return path, _sidecar(path)
    if train is None:
        raise BadInputError(f"no teacher in '{folder}' and none given; pass --teacher-checkpoint PATH")
    say(announce)
    meta = train(path)
    if extra:
        meta = {**meta, **extra}
        write_json_atomic(path.with_suffix(".json"), json_ready({**_sidecar(path), **meta}))
    return path, meta


def evaluate_teacher(s: Settings, teacher: Teacher) -> dict[str, Any]:
    """The teacher's test top-1/top-5/loss on the students' test images, their count and the seconds it took."""
    _, test_set = datasets(s.data, s.train_images, s.test_images, s.seed)
    t0 = time.perf_counter()
    test = evaluate(teacher.model, Batches(test_set, s.input_size, teacher.mean, teacher.std, 256))
    return {"test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
            "test_images": len(test_set), "seconds": time.perf_counter() - t0}
