"""The Ray Tune callback of ``studentnas distill`` that writes each finished trial to the journal
(``RUN/distill/trials.jsonl``, :mod:`studentnas.distill.journal`) the moment Tune reports it, and gives
up when no trial can start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from studentnas.core.errors import StudentNASError
from studentnas.distill.journal import TrialJournal
from studentnas.distill.trial import TrialJob


def journal_callback(journal: TrialJournal, job: TrialJob, experiment: str, folder: Path, params: list[str],
                     pending_timeout: float, say: Callable[[str], None], trials: int) -> Any:
    """A ``ray.tune.Callback`` that journals each finished trial of ``experiment`` and gives up when no trial
    starts within ``pending_timeout`` seconds."""
    from ray.tune import Callback

    class JournalCallback(Callback):
        """Writes each finished trial to the journal the moment Tune reports it (runs in the driver)."""

        def __init__(self) -> None:
            self.history: dict[str, list[dict[str, Any]]] = {}
            self.started = time.monotonic()
            self.any_started = False

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.any_started = True

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            if not self.any_started and trials and time.monotonic() - self.started > pending_timeout:
                import ray

                raise StudentNASError(f"no trial could start within {pending_timeout:.0f} s: the Ray cluster has "
                                      f"{ray.available_resources().get('CPU', 0):g} free CPUs of "
                                      f"{ray.cluster_resources().get('CPU', 0):g}; free some, or lower "
                                      "--resources-per-trial")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            keep = {k: v for k, v in result.items() if k == "epoch" or k.startswith(("train_", "val_", "lr"))}
            self.history.setdefault(trial.trial_id, []).append(keep)

        def _write(self, trial: Any, status: str) -> None:
            last = dict(trial.last_result or {})
            history = self.history.get(trial.trial_id, [])
            checkpoint = trial.checkpoint.path if trial.checkpoint is not None else None
            if checkpoint is not None:
                try:
                    checkpoint = str(Path(checkpoint).relative_to(folder.resolve()))
                except ValueError:
                    pass
            error = None
            if status == "failed":
                error = str(getattr(trial, "error_file", None) or "see the trial's error.txt")
            epochs_done = int(last.get("epoch", 0) or 0)
            row = {
                "student": job.student, "mode": job.mode, "experiment": experiment, "trial_id": trial.trial_id,
                "status": status, "config": {k: trial.config[k] for k in params if k in trial.config},
                "val_top1": _finite(last.get("val_top1")), "val_top5": _finite(last.get("val_top5")),
                "val_loss": _finite(last.get("val_loss")), "epochs_done": epochs_done,
                "stopped_early": status == "ok" and epochs_done < job.epochs, "checkpoint": checkpoint,
                "history": [{k: _finite(v) for k, v in h.items()} for h in history],
                "restarts": int(getattr(trial, "num_failures", 0) or 0), "error": error,
                "worker": last.get("worker"),
                "seconds": _finite(last.get("time_total_s")),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            journal.append(row)
            n = len(journal.rows(job.student, job.mode))
            what = ("failed" if status == "failed" else
                    f"val top-1 {row['val_top1']:.2f} % after {epochs_done} epoch(s)"
                    + (" (stopped early)" if row["stopped_early"] else ""))
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["config"].items())
            say(f"{job.student} [{job.mode}] trial {n}/{trials}: {what}; {shown}")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial, "ok")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial, "failed")

    return JournalCallback()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
