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
from dataclasses import asdict
from pathlib import Path

from studentnas.core.errors import BadInputError
from studentnas.studies.common import StudyFolder
from studentnas.studies.settings import IDENTITY_SKIP, Settings

FORMAT = 1
STUDY = "study.json"


class Study(StudyFolder):
    """The study folder: ``study.json`` (state, rewritten atomically) and the training journal."""

    STATE = STUDY

    def __init__(self, out: str | Path, settings: Settings):
        super().__init__(out, example="runs/search_quality")
        self.settings = settings
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
