"""What both studies share: JSON-ready values, mean +- std and how it is printed, Kendall's tau-b with its
p-value, the issue-5 target, the command line a report records, and the journal of finished trainings.

Example:
    >>> json_ready({"a": float("nan"), "b": (1, np.float32(2.5))})
    {'a': None, 'b': [1, 2.5]}
    >>> mean, std = mean_std([70.0, 72.0])
    >>> fmt_mean_std(mean, std), fmt_mean_std(71.0, math.nan), fmt_number(None)
    ('71.00 +- 1.41', '71.00', '-')
    >>> t = kendall_tau([1.0, 2.0, 3.0], [10.0, 30.0, 20.0])
    >>> round(t["tau"], 4), t["n"], kendall_tau([1.0], [2.0])["tau"]
    (0.3333, 3, None)
    >>> command_line(["scripts/kd_vs_ce.py", "--out", "runs/a b"]).split("python ")[-1]
    "scripts/kd_vs_ce.py --out 'runs/a b'"
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from studentnas.bench.correlation import kendall
from studentnas.core.errors import BadInputError
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.runfiles.journal import Journal
from studentnas.runfiles.paths import check_writable_dir

JOURNAL = "journal.jsonl"
TARGET_MACS_SHARE, TARGET_POINTS = 0.25, 1.0  # issue 5: under 25 % of the teacher's MACs, within 1 point of it
FAILURES = (FloatingPointError, RuntimeError)  # a diverging training: recorded as failed, the study goes on


def json_ready(value: Any) -> Any:
    """``value`` made JSON-safe, recursively: NaN/inf become None, numpy scalars Python numbers, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1); nan where undefined (no value; one value: no std)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def fmt_mean_std(mean: float | None, std: float | None) -> str:
    """``mean +- std`` with two decimals, ``mean`` alone without a std, ``-`` without a mean."""
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{mean:.2f} +- {std:.2f}" if std is not None and math.isfinite(std) else f"{mean:.2f}"


def fmt_number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or ``-`` when it is missing or not finite."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> dict[str, Any]:
    """Kendall's tau-b (:func:`studentnas.bench.correlation.kendall`, scipy's) and its two-sided p-value,
    ``n`` the number of pairs; tau and p are None below 2 pairs, nan for a constant side."""
    if len(xs) < 2:
        return {"tau": None, "p_value": None, "n": len(xs)}
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    tau = kendall(x, y)
    keep = np.isfinite(x) & np.isfinite(y)
    p_value = float(stats.kendalltau(x[keep], y[keep]).pvalue) if math.isfinite(tau) else math.nan
    return {"tau": tau, "p_value": p_value, "n": len(xs)}


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as it can be typed again (``OMP_NUM_THREADS`` included): ``studentnas ...`` from the CLI,
    ``python -m studentnas.cli ...`` or ``python SCRIPT ...`` otherwise."""
    argv = list(sys.argv if argv is None else argv)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    program = Path(argv[0]).name if argv else ""
    if program == "studentnas":
        command = shlex.join(["studentnas", *argv[1:]])
    elif program == "__main__.py" and Path(argv[0]).parent.name == "cli":
        command = "python -m studentnas.cli " + shlex.join(argv[1:])
    else:
        command = f"python {shlex.join(argv)}"
    return f"{env + ' ' if env else ''}{command}".rstrip()


def training_record(value: Any) -> dict[str, Any]:
    """One journal line as a finished training; a line that is not one is corrupt (``KeyError``/``TypeError``)."""
    if not isinstance(value, dict):
        raise TypeError(f"a training record is a JSON object, not {type(value).__name__}")
    for key in ("student", "seed", "status"):
        if key not in value:
            raise KeyError(f"no {key!r}")
    return value


def training_journal(folder: str | Path) -> Journal[dict[str, Any]]:
    """``folder/journal.jsonl``: one line per finished training (the resume source of truth)."""
    return Journal(Path(folder) / JOURNAL, parse=training_record,
                   fix="remove or repair those lines, then rerun the same command (their trainings run again)")


def append_training(journal: Journal[dict[str, Any]], row: Mapping[str, Any]) -> None:
    """Append one finished (or failed) training to ``journal``, JSON-safe, flushed and fsynced."""
    journal.append(json_ready(row))


class StudyFolder:
    """A study's ``--out`` folder: a state file (:attr:`STATE`, rewritten atomically) and the training journal.

    Subclasses name the state file and read or create :attr:`state` in their ``__init__`` after calling
    this one, which refuses a file or an unwritable place as ``--out`` before anything is written.
    """

    STATE = "state.json"

    def __init__(self, out: str | Path, example: str):
        self.path = Path(out)
        if self.path.exists() and not self.path.is_dir():
            raise BadInputError(f"--out '{out}' is a file; give a folder, e.g. --out {example}")
        check_writable_dir(self.path, "--out", example=example)
        self.trainings = training_journal(self.path)
        self.state: dict[str, Any] = {}

    def save(self) -> None:
        """Rewrite the state file from :attr:`state` (atomically)."""
        write_json_atomic(self.path / self.STATE, json_ready(self.state))

    def journal(self) -> list[dict[str, Any]]:
        """Finished trainings in order; a torn last line (killed mid-write) is ignored."""
        return self.trainings.read()

    def append(self, row: Mapping[str, Any]) -> None:
        """Record one finished (or failed) training."""
        append_training(self.trainings, row)
