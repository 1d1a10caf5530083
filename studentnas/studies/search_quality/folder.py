"""The search-quality study folder: ``study.json`` (settings, picks, scores, teacher evaluation; rewritten
atomically) and ``journal.jsonl`` (one line per finished training, the resume source of truth).

A folder is opened for a study with the same :class:`~studentnas.studies.settings.Settings` only: a rerun
with other settings is refused with the differences, before anything is written.

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "sq"
    >>> study = Study(out, Settings())
    >>> study.append({"student": "a", "seed": 0, "status": "ok", "test_top1": float("nan")})
    >>> sorted(p.name for p in out.iterdir()), study.journal()[0]["test_top1"]
    (['journal.jsonl', 'study.json'], None)
    >>> Study(out, Settings(epochs=3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: '...sq' holds a study with other settings (epochs: 6 -> 3); ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from studentnas.core.errors import BadInputError
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.runfiles.paths import check_writable_dir
from studentnas.studies.common import append_training, json_ready, training_journal
from studentnas.studies.settings import IDENTITY_SKIP, Settings

FORMAT = 1
STUDY = "study.json"


class Study:
    """The study folder: ``study.json`` (state, rewritten atomically) and the training journal."""

    def __init__(self, out: str | Path, settings: Settings):
        self.path = Path(out)
        self.settings = settings
        if self.path.exists() and not self.path.is_dir():
            raise BadInputError(f"--out '{out}' is a file; give a folder, e.g. --out runs/search_quality")
        check_writable_dir(self.path, "--out", example="runs/search_quality")
        self.trainings = training_journal(self.path)
        file = self.path / STUDY
        if file.is_file():
            self.state = json.loads(file.read_text())
            old = self.state["settings"]
            diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in asdict(settings).items()
                     if k not in IDENTITY_SKIP and old.get(k) != v]
            if diffs:
                raise BadInputError(f"'{out}' holds a study with other settings ({'; '.join(diffs)}); rerun with the "
                                    "same flags to resume, or pass another --out")
            self.trainings.read()  # a corrupt journal is refused before any work
        else:
            if self.path.is_dir() and any(self.path.iterdir()):
                raise BadInputError(f"--out '{out}' exists and holds no study; pass an empty or new folder")
            self.state = {"format": FORMAT, "settings": asdict(settings), "sessions": []}
            self.save()

    def save(self) -> None:
        """Rewrite ``study.json`` from :attr:`state` (atomically)."""
        write_json_atomic(self.path / STUDY, json_ready(self.state))

    def journal(self) -> list[dict[str, Any]]:
        """Finished trainings in order; a torn last line (killed mid-write) is ignored."""
        return self.trainings.read()

    def append(self, row: Mapping[str, Any]) -> None:
        """Record one finished (or failed) training."""
        append_training(self.trainings, row)
