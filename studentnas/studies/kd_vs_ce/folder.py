"""The KD-vs-CE output folder: ``config.json`` (what every training shares, checked on a rerun; the sessions;
the teacher's evaluation) and ``journal.jsonl`` (one line per finished training).

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "kdce"
    >>> folder = Folder(out, {"epochs": 6, "lr": 0.05})
    >>> folder.append({"student": "a", "seed": 0, "mode": "ce", "status": "ok", "recipe": None})
    >>> [r["mode"] for r in folder.journal()]
    ['ce']
    >>> Folder(out, {"epochs": 6, "lr": 0.1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: '...kdce' holds trainings with other settings (lr: 0.05 -> 0.1); ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from studentnas.core.errors import BadInputError
from studentnas.studies.common import StudyFolder

FORMAT = 1
CONFIG = "config.json"


class Folder(StudyFolder):
    """``config.json`` (what every training shares; checked on rerun) and the journal of trainings."""

    STATE = CONFIG

    def __init__(self, out: str | Path, identity: Mapping[str, Any]):
        super().__init__(out, example="runs/kd_vs_ce")
        file = self.path / CONFIG
        if file.is_file():
            self.state = json.loads(file.read_text())
            old = self.state["identity"]
            diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in identity.items() if old.get(k) != v]
            if diffs:
                raise BadInputError(f"'{out}' holds trainings with other settings ({'; '.join(diffs)}); rerun with "
                                    "the same flags (the KD recipe and --seeds may change), or pass another --out")
            self.trainings.read()  # a corrupt journal is refused before any training
        else:
            self.state = {"format": FORMAT, "identity": dict(identity), "sessions": []}
            self.save()
