"""The journal of finished distillation trials: ``RUN/distill/trials.jsonl``, the source of truth of a
``studentnas distill`` run.

One JSON line per finished trial (completed, stopped early by ASHA, or failed after its retries),
appended, flushed and fsynced by the driver the moment Ray Tune reports it finished. ``--resume`` reads
it back: finished trials are never run again, and the Optuna searcher of the next Tune experiment is
told their results first. A torn last line (the driver killed mid-write) is ignored; complete lines
that do not read are all named in one error (:class:`~studentnas.runfiles.journal.Journal`).

Row keys: ``student``, ``mode`` (``kd`` or ``ce``), ``experiment``, ``trial_id``, ``status``
(``ok``/``failed``), ``config`` (the sampled hyper-parameters), ``val_top1``, ``val_top5``,
``val_loss``, ``epochs_done``, ``stopped_early``, ``checkpoint`` (relative to the distill folder),
``history`` (per-epoch stats), ``restarts`` (retries after failures), ``worker`` (``host:pid@node_ip/node_id``
of the trial's last attempt), ``seconds``, ``error``, ``finished_at``.

Example:
    >>> import tempfile
    >>> j = TrialJournal(tempfile.mkdtemp() + "/trials.jsonl")
    >>> j.append({"student": "a", "mode": "kd", "status": "ok", "val_top1": 50.0})
    >>> [r["val_top1"] for r in j.rows("a", "kd")], j.rows("a", "ce")
    ([50.0], [])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studentnas.runfiles.journal import Journal


def _row(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"a trial row is a JSON object, got {type(value).__name__}")
    return value


class TrialJournal(Journal[dict[str, Any]]):
    """The trial rows of a distill run: a :class:`~studentnas.runfiles.journal.Journal` (append + fsync, torn
    last line ignored, every corrupt line named in one error) that selects rows by student and mode."""

    def __init__(self, path: str | Path):
        super().__init__(path, parse=_row, fix="remove those lines to resume (their trials are run again)")

    def rows(self, student: str, mode: str) -> list[dict[str, Any]]:
        """The finished trials of ``student`` in ``mode`` (``kd`` or ``ce``), in the order they finished."""
        return [r for r in self.read() if r.get("student") == student and r.get("mode") == mode]


def best_row(rows: list[dict[str, Any]], epochs: int) -> dict[str, Any] | None:
    """The trial to keep: among ok trials, those that ran all ``epochs`` if any (ASHA-stopped ones saw less
    training), the highest validation top-1, then the lowest validation loss, then the earliest.

    >>> best_row([{"status": "ok", "val_top1": 60, "val_loss": 1, "epochs_done": 1, "checkpoint": "a"},
    ...           {"status": "ok", "val_top1": 55, "val_loss": 1, "epochs_done": 2, "checkpoint": "b"}], epochs=2)
    {'status': 'ok', 'val_top1': 55, 'val_loss': 1, 'epochs_done': 2, 'checkpoint': 'b'}
    """
    ok = [r for r in rows if r.get("status") == "ok" and r.get("checkpoint")]
    full = [r for r in ok if r.get("epochs_done", 0) >= epochs] or ok
    if not full:
        return None
    return min(enumerate(full), key=lambda ir: (-ir[1]["val_top1"], ir[1].get("val_loss", 0.0), ir[0]))[1]
