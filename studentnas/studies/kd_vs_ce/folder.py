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
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.studies.common import append_training, json_ready, training_journal

FORMAT = 1
CONFIG = "config.json"


class Folder:
    """``config.json`` (what every training shares; checked on rerun) and the journal of trainings."""

    def __init__(self, out: str | Path, identity: Mapping[str, Any]):
        self.path = Path(out)
        if self.path.exists() and not self.path.is_dir():
            raise BadInputError(f"--out '{out}' is a file; give a folder, e.g. --out runs/kd_vs_ce")
        self.trainings = training_journal(self.path)
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

    def save(self) -> None:
        """Rewrite ``config.json`` from :attr:`state` (atomically)."""
        write_json_atomic(self.path / CONFIG, json_ready(self.state))

    def journal(self) -> list[dict[str, Any]]:
        """Finished trainings in order; a torn last line (killed mid-write) is ignored."""
        return self.trainings.read()

    def append(self, row: Mapping[str, Any]) -> None:
        """Record one finished (or failed) training."""
        append_training(self.trainings, row)
