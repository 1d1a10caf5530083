"""The KD-vs-CE study end to end (``studentnas bench study kd-vs-ce``, ``scripts/kd_vs_ce.py``): teacher,
student, per seed one KD and one CE-only training (only what the journal lacks), then the JSON report and
the markdown table.

Example:
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "kdce"
    >>> main(["--seeds", "0,0", "--student-arch", "{}", "--out", str(out)]), out.exists()
    (2, False)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from studentnas.core.console import sayer
from studentnas.core.errors import BadInputError
from studentnas.distill.teacher_train import train_teacher
from studentnas.engine.setup import pick_space
from studentnas.hardware.counting import measured_cost
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.runfiles.paths import check_writable_dir, check_writable_file
from studentnas.runfiles.provenance import versions
from studentnas.studies.common import command_line, json_ready
from studentnas.studies.inputs import cached_teacher, teacher_logits
from studentnas.studies.kd_vs_ce.folder import FORMAT, Folder
from studentnas.studies.kd_vs_ce.options import (
    check_args,
    parse_args,
    parse_seeds,
    recipe_key,
    settings_of,
    student_arch,
)
from studentnas.studies.kd_vs_ce.report import markdown, summarise
from studentnas.studies.teacher import evaluate_teacher, teacher_checkpoint
from studentnas.studies.worker import failed_row, run_jobs

PREFIX = "kd_vs_ce: "


def _teacher(args: argparse.Namespace, out: Path, say: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """The teacher checkpoint (given, or trained into ``out``) and its training sidecar (or {})."""
    def train(path: Path) -> dict[str, Any]:
        return train_teacher(args.teacher, args.data, args.teacher_epochs, path, image_size=args.image_size,
                             lr=args.teacher_lr, batch_size=args.batch_size, train_images=args.teacher_train_images,
                             test_images=args.test_images, val_fraction=args.teacher_val_fraction,
                             augment=args.teacher_augment, seed=args.seed, threads=args.threads, quiet=args.quiet)

    return teacher_checkpoint(args.teacher_checkpoint, out, train, say,
                              f"training the teacher {args.teacher} ({args.teacher_epochs} epochs, "
                              f"{args.teacher_train_images} images, {args.image_size} px, augment "
                              f"{args.teacher_augment})", extra={"trained_here": True})


def run_trainings(folder: Folder, jobs: list[dict[str, Any]], n_jobs: int, say: Callable[[str], None]) -> int:
    """Train every job (KD or CE-only, one seed) the journal lacks; a diverging one is recorded as failed."""
    trained = 0

    def record(job: dict[str, Any], row: dict[str, Any] | None, err: BaseException | None) -> None:
        nonlocal trained
        row = {**(failed_row(job, err) if row is None else row), "recipe": job["recipe"]}
        folder.append(row)
        trained += row["status"] == "ok"
        what = f"{row['mode']} {job['recipe'] or ''} seed {row['seed']}".replace("  ", " ")
        say(f"{what}: " + (f"test top-1 {row['test_top1']:.2f} % ({row['seconds']:.0f} s)"
                           if row["status"] == "ok" else f"failed: {row['reason']}"))

    run_jobs(jobs, None if n_jobs == 1 or len(jobs) <= 1 else n_jobs, record)
    return trained


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or continue) the comparison for parsed flags (:func:`~studentnas.studies.kd_vs_ce.options.add_arguments`);
    returns the report it wrote."""
    started = time.perf_counter()
    say = sayer(args.quiet, PREFIX)
    check_args(args)
    seeds = parse_seeds(args.seeds)
    arch = student_arch(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out '{out}' is a file; give a folder, e.g. --out runs/kd_vs_ce")
    check_writable_dir(out, "--out", example="runs/kd_vs_ce")
    path = Path(args.json) if args.json else out / "kd_vs_ce.json"
    check_writable_file(path, "--json", example="kd_vs_ce.json")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, teacher_meta = _teacher(args, out, say)
    teacher = cached_teacher(args.teacher, str(checkpoint))
    s = settings_of(args, checkpoint)
    try:
        space = pick_space(arch.space, teacher)
        student_cost = space.cost(arch, s.input_size, teacher.num_classes)
    except (KeyError, ValueError) as err:
        raise BadInputError(f"student arch {arch}: not an arch of space '{arch.space}' centred on {args.teacher} "
                            f"({err}); take it from a study of the same teacher") from None
    teacher_cost = measured_cost(teacher.model, s.input_size)
    identity = {"teacher": args.teacher, "teacher_sha256": teacher.checkpoint_sha256, "data": args.data,
                "image_size": args.image_size, "student": arch.to_dict(), "epochs": args.epochs,
                "train_images": args.train_images, "test_images": args.test_images, "batch_size": args.batch_size,
                "lr": args.lr, "weight_decay": args.weight_decay, "seed": args.seed}
    folder = Folder(out, identity)
    if "teacher_eval" not in folder.state:  # on the students' test images
        folder.state["teacher_eval"] = evaluate_teacher(s, teacher)
        folder.save()
    teacher_top1 = folder.state["teacher_eval"]["test_top1"]
    say(f"teacher {args.teacher}: test top-1 {teacher_top1:.2f} %; student {arch.id} "
        f"{space.format_arch(arch)}: {100 * student_cost.macs / teacher_cost.macs:.1f} % of its MACs")

    recipe = recipe_key(args.temperature, args.kd_weight, args.ce_weight)
    done = {(r["mode"], r.get("recipe"), r["seed"]) for r in folder.journal()
            if r["status"] == "ok" and r["student"] == arch.id}
    cache = str(out / "teacher_logits")
    base = {"settings": asdict(s), "space": space.config(), "checkpoint": str(checkpoint), "cache": cache,
            "arch": arch.to_dict()}
    work = []
    for seed in seeds:  # seed-major, KD and CE of one seed side by side
        for mode, key in (("kd", recipe), ("ce", None)):
            if (mode, key, seed) not in done:
                work.append({**base, "mode": mode, "recipe": key, "seed": seed,
                             "ckpt": str(out / "ckpt" / f"{arch.id}-{key or 'ce'}-s{seed}")})
    if any(j["mode"] == "kd" for j in work):
        t0 = time.perf_counter()
        teacher_logits(s, str(checkpoint), cache)  # fill the cache once, before the workers read it
        say(f"teacher logits cached in {time.perf_counter() - t0:.1f} s")
    say(f"training {len(work)} of {2 * len(seeds)} (KD {recipe} and CE-only per seed) with {args.jobs} job(s)")
    t0 = time.perf_counter()
    trained = run_trainings(folder, work, args.jobs, say)
    train_wall = time.perf_counter() - t0

    share = student_cost.macs / teacher_cost.macs
    summary = summarise(folder.journal(), arch.id, seeds, teacher_top1, share)
    session = {"command": command_line(), "recipe": recipe, "seeds": seeds, "trained": trained,
               "train_wall_s": train_wall, "wall_s": time.perf_counter() - started, "jobs": args.jobs,
               "loadavg_after": os.getloadavg(), "finished_at": time.time()}
    folder.state["sessions"].append(session)
    folder.save()
    current = summary["recipes"].get(recipe, {})
    train_config = teacher_meta.get("train_config", {})
    report = {
        "format": FORMAT, "command": session["command"], "recipe": recipe, "seeds": seeds,
        "trained_this_session": trained, "sessions": folder.state["sessions"],
        "config": {"identity": identity, "kd_recipe": s.train_config(0).to_dict(),
                   "ce_recipe": s.train_config(0, "ce").to_dict(), "jobs": args.jobs, "threads": args.threads,
                   "out": str(out)},
        "versions": versions(),
        "teacher": {"model": args.teacher, "checkpoint": str(checkpoint), "sha256": teacher.checkpoint_sha256,
                    "origin": ("given checkpoint" if args.teacher_checkpoint else "trained here") +
                    (f": {teacher_meta['epochs']} epochs on {teacher_meta['train_images']} images, augment "
                     f"{train_config.get('augment')}, lr {train_config.get('lr')}" if "epochs" in teacher_meta else ""),
                    "macs": teacher_cost.macs, "params": teacher_cost.params, **folder.state["teacher_eval"],
                    "train_seconds": teacher_meta.get("seconds"), "val_top1": teacher_meta.get("val_top1"),
                    "train_history": teacher_meta.get("history")},
        "student": {"id": arch.id, "arch": arch.to_dict(), "label": space.format_arch(arch),
                    "macs": student_cost.macs, "params": student_cost.params, "macs_share": share},
        "summary": summary,
        "teacher_top1": teacher_top1, "kd_top1_mean": current.get("kd_top1_mean"),
        "kd_top1_std": current.get("kd_top1_std"), "ce_top1_mean": summary["ce_top1_mean"],
        "ce_top1_std": summary["ce_top1_std"], "gain_mean": current.get("gain_mean"),
        "gain_std": current.get("gain_std"), "macs_share": share, "target_met": current.get("target_met"),
        "complete": bool(current.get("complete")),
    }
    report["markdown"] = markdown(report)
    write_json_atomic(path, json_ready(report))
    say(f"wrote {path} ({trained} trainings this session, {time.perf_counter() - started:.0f} s)")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """The script's entry point: exit status 0 with the markdown on stdout, 2 with one line on bad input."""
    try:
        report = run(parse_args(argv))
    except BadInputError as err:
        print(f"kd_vs_ce: error: {err}", file=sys.stderr)
        return 2
    print(report["markdown"])
    return 0
