"""The search-quality study's trainings: every (student, seed) with the KD recipe, then the CE-only baseline of
the students ``--ce-baseline`` names; only what the journal lacks is trained.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> study = Study(Path(tempfile.mkdtemp()) / "sq", Settings(seeds=2))
    >>> study.state["students"] = {"a": {}, "b": {}}
    >>> for student, seed, top1 in (("a", 0, 80.0), ("a", 1, 82.0), ("b", 0, 81.0), ("b", 1, 81.0)):
    ...     study.append({"student": student, "seed": seed, "mode": "kd", "status": "ok", "test_top1": top1})
    >>> ce_students(study, study.settings, "best"), ce_students(study, study.settings, "none")
    (['a', 'b'], [])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from studentnas.core.console import Progress
from studentnas.core.space import SearchSpace
from studentnas.studies.inputs import teacher_logits
from studentnas.studies.search_quality.folder import Study
from studentnas.studies.settings import Settings
from studentnas.studies.worker import failed_row, mode_of, run_jobs


def ce_students(study: Study, s: Settings, which: str) -> list[str]:
    """The students ``--ce-baseline`` trains CE-only: ``best`` (highest mean KD test top-1 over the seeds
    trained; ties: all of them), ``all`` or ``none``."""
    if which == "none":
        return []
    ids = list(study.state["students"])
    if which == "all":
        return ids
    runs: dict[str, list[float]] = {}
    for row in study.journal():
        if row["status"] == "ok" and mode_of(row) == "kd" and row["seed"] < s.seeds:
            runs.setdefault(row["student"], []).append(row["test_top1"])
    means = {i: float(np.mean(v)) for i, v in runs.items() if i in study.state["students"]}
    top = max(means.values(), default=None)
    return [i for i in ids if i in means and means[i] == top]


def distil_all(study: Study, s: Settings, checkpoint: Path, space: SearchSpace, jobs: int, quiet: bool,
               say: Callable[[str], None], ids: Sequence[str] | None = None, mode: str = "kd") -> int:
    """Train every (student, seed) of ``ids`` (default: every student) in ``mode`` that the journal does not
    hold yet; returns how many were trained now."""
    done = {(r["student"], r["seed"]) for r in study.journal() if r["status"] == "ok" and mode_of(r) == mode}
    ids = list(study.state["students"]) if ids is None else list(ids)
    todo = [(i, seed) for seed in range(s.seeds) for i in ids if (i, seed) not in done]  # seed-major: balanced
    total = len(ids) * s.seeds
    what = "KD" if mode == "kd" else "CE-only baseline"
    if not todo:
        if ids:
            say(f"{what}: all {total} (student, seed) trainings are in the journal; none is trained again")
        return 0
    cache = str(study.path / "teacher_logits")
    if mode == "kd":
        t0 = time.perf_counter()
        teacher_logits(s, str(checkpoint), cache)  # fill the cache once, before the workers read it
        say(f"teacher logits cached in {time.perf_counter() - t0:.1f} s")
    say(f"{what}: training {len(todo)} of {total} (student, seed) pairs ({total - len(todo)} already in the "
        f"journal) with {jobs} parallel job(s)")
    base = {"settings": asdict(s), "space": space.config(), "checkpoint": str(checkpoint), "cache": cache,
            "mode": mode}
    suffix = "" if mode == "kd" else f"-{mode}"
    work = [{**base, "arch": study.state["students"][i]["arch"], "seed": seed,
             "ckpt": str(study.path / "ckpt" / f"{i}-s{seed}{suffix}")} for i, seed in todo]
    trained = 0
    desc = "search_quality: distil" if mode == "kd" else "search_quality: CE baseline"
    with Progress(total=total, desc=desc, quiet=quiet, initial=total - len(todo)) as bar:
        def record(job: dict[str, Any], row: dict[str, Any] | None, err: BaseException | None) -> None:
            nonlocal trained
            row = failed_row(job, err) if row is None else row
            study.append(row)
            trained += row["status"] == "ok"
            bar.update(1, **({"top1": row["test_top1"]} if row["status"] == "ok" else {"failed": row["student"]}))

        run_jobs(work, None if jobs == 1 else jobs, record)
    return trained
