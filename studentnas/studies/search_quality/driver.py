"""The search-quality study end to end (``studentnas bench study search-quality``, ``scripts/search_quality.py``):
teacher, picks, scores, KD trainings, CE-only baselines, then ``search_quality.json``/``.md`` in the folder.

Every stage resumes from the folder, so rerunning the same command continues a study; bad input is refused
with one line (exit status 2) before anything is written.

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "file"
    >>> _ = out.write_text("not a folder")
    >>> main(["--quick", "--out", str(out)])
    2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studentnas.core.budget import Budget
from studentnas.core.console import sayer
from studentnas.core.errors import BadInputError
from studentnas.distill.teacher_train import train_teacher
from studentnas.engine.setup import check_budget_range, pick_space, static_budget
from studentnas.hardware.counting import measured_cost
from studentnas.runfiles.atomic import write_atomic, write_json_atomic
from studentnas.runfiles.paths import check_writable_file
from studentnas.runfiles.provenance import versions
from studentnas.studies.common import command_line, json_ready
from studentnas.studies.inputs import cached_teacher
from studentnas.studies.search_quality.folder import FORMAT, Study
from studentnas.studies.search_quality.options import default_benchmarks, parse_settings, settings_from_args
from studentnas.studies.search_quality.picks import choose_students, score_students
from studentnas.studies.search_quality.report import markdown
from studentnas.studies.search_quality.summary import summarise
from studentnas.studies.search_quality.training import ce_students, distil_all
from studentnas.studies.settings import Settings, budget_texts
from studentnas.studies.teacher import evaluate_teacher, teacher_checkpoint

PREFIX = "search_quality: "


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def _teacher(study: Study, s: Settings, say: Callable[[str], None], threads: int | None) -> tuple[Path, dict[str, Any]]:
    """The teacher checkpoint (given, or trained into the study folder) and its training sidecar (or {})."""
    def train(path: Path) -> dict[str, Any]:
        return train_teacher(s.teacher, s.data, s.teacher_epochs, path, image_size=s.image_size,
                             train_images=s.teacher_train_images, test_images=s.test_images, seed=s.seed,
                             threads=threads, quiet=False)

    return teacher_checkpoint(s.teacher_checkpoint, study.path, train, say,
                              f"training the teacher {s.teacher} ({s.teacher_epochs} epochs, "
                              f"{s.teacher_train_images} images, {s.image_size} px)")


def run_study(s: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Run (or continue) the study of ``s`` with the other flags of ``args`` (``out``, ``jobs``, ``threads``,
    ``ce_baseline``, ``write_benchmarks``, ``benchmarks``, ``quiet``); returns the report it wrote."""
    started = time.perf_counter()
    say = sayer(args.quiet, PREFIX)
    bench = Path(args.benchmarks) if args.benchmarks is not None else default_benchmarks()
    if args.write_benchmarks:
        check_writable_file(bench, "--benchmarks", example="BENCHMARKS.md")
    study = Study(args.out, s)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    checkpoint, teacher_meta = _teacher(study, s, say, args.threads)
    teacher = cached_teacher(s.teacher, str(checkpoint))
    space = pick_space(s.space, teacher)
    teacher_cost = measured_cost(teacher.model, s.input_size)
    budget = Budget.parse(budget_texts(s.budget)).resolve(teacher_cost)
    check_budget_range(budget, space, s.input_size, teacher.num_classes, teacher_cost)
    static = static_budget(budget)
    if static is None:  # checked before any work too (options.check_settings); kept for library callers
        raise BadInputError(f"--budget {s.budget}: the study needs a MACs or params budget (picks are checked "
                            "analytically), e.g. --budget 25%macs")
    choose_students(study, s, checkpoint, teacher, space, static, say, args.quiet)
    score_students(study, s, teacher, space, static, say)
    if "teacher_eval" not in study.state:
        study.state["teacher_eval"] = evaluate_teacher(s, teacher)
        study.save()
    teacher_eval = study.state["teacher_eval"]
    t0 = time.perf_counter()
    trained = distil_all(study, s, checkpoint, space, args.jobs, args.quiet, say)
    ce_ids = ce_students(study, s, args.ce_baseline)  # chosen once every KD training is in the journal
    trained_ce = distil_all(study, s, checkpoint, space, args.jobs, args.quiet, say, ids=ce_ids, mode="ce")
    train_wall = time.perf_counter() - t0
    session = {"command": command_line(), "started_at": time.time() - (time.perf_counter() - started),
               "wall_s": time.perf_counter() - started, "trained": trained + trained_ce, "trained_kd": trained,
               "trained_ce": trained_ce, "ce_baseline": args.ce_baseline, "train_wall_s": train_wall,
               "jobs": args.jobs, "loadavg_before_after": [load_before, os.getloadavg()]}
    study.state["sessions"].append(session)
    study.save()
    journal = [r for r in study.journal() if r["status"] == "ok"]
    summary = summarise(study, s, ce_ids, args.ce_baseline, teacher_cost.macs)
    report = {
        "format": FORMAT, "command": session["command"], "sessions": study.state["sessions"],
        "config": {"settings": asdict(s), "jobs": args.jobs, "threads": args.threads, "out": str(study.path),
                   "recipe": s.train_config(0).to_dict(), "ce_baseline": args.ce_baseline,
                   "ce_recipe": s.train_config(0, "ce").to_dict() if ce_ids else None},
        "versions": versions(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads()},
        "teacher": {"model": s.teacher, "checkpoint": str(checkpoint), "sha256": teacher.checkpoint_sha256,
                    "origin": "given checkpoint" if s.teacher_checkpoint else
                    f"trained here: {s.teacher_epochs} epochs on {s.teacher_train_images} images",
                    "macs": teacher_cost.macs, "params": teacher_cost.params, **teacher_eval,
                    "train_meta": {k: v for k, v in teacher_meta.items() if k != "history"},
                    "train_history": teacher_meta.get("history")},
        "budget": {"text": s.budget, "resolved": budget.describe(),
                   "limits": {c.metric: c.limit for c in budget.constraints}},
        "space": space.config(), "searches": study.state["searches"], "sampling": study.state["sampling"],
        "picks": study.state["picks"], "test_images": teacher_eval["test_images"], "summary": summary,
        "timings": {"teacher_train_s": teacher_meta.get("seconds"), "teacher_eval_s": teacher_eval["seconds"],
                    "search_s": {k: v["wall_seconds"] for k, v in study.state["searches"].items()},
                    "sampling_s": study.state["sampling"]["seconds"],
                    "scoring_s": study.state.get("timings", {}).get("scoring"),
                    "training_s_sum": sum(r["seconds"] for r in journal),
                    "training_s_per_run_median": float(np.median([r["seconds"] for r in journal])) if journal else None,
                    "training_wall_s_sessions": sum(x["train_wall_s"] for x in study.state["sessions"]),
                    "wall_total_s": sum(x["wall_s"] for x in study.state["sessions"])},
    }
    report["markdown"] = markdown(report)
    write_json_atomic(study.path / "search_quality.json", json_ready(report))
    _write_text(study.path / "search_quality.md", report["markdown"] + "\n")
    if args.write_benchmarks:
        old = bench.read_text() if bench.is_file() else "# Benchmarks\n"
        _write_text(bench, old.rstrip("\n") + "\n\n" + report["markdown"].rstrip("\n") + "\n")
        say(f"appended the section to {bench}")
    say(f"wrote {study.path / 'search_quality.json'} ({trained + trained_ce} trainings this session: {trained} KD, "
        f"{trained_ce} CE-only; "
        f"{time.perf_counter() - started:.0f} s)")
    return report


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`run_study` from parsed flags (:func:`~studentnas.studies.search_quality.options.add_arguments`)."""
    return run_study(settings_from_args(args), args)


def main(argv: Sequence[str] | None = None) -> int:
    """The script's entry point: exit status 0 with the markdown on stdout, 2 with one line on bad input."""
    try:
        settings, args = parse_settings(argv)
        report = run_study(settings, args)
    except BadInputError as err:
        print(f"search_quality: error: {err}", file=sys.stderr)
        return 2
    print(report["markdown"])
    return 0
