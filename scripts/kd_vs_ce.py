"""KD against CE only for one student: the "real result" target of issue 5, with a teacher of your choice.

Target (issue 5): on Fashion-MNIST, a distilled student under 25 % of the teacher's MACs within 1 point
of the teacher's test top-1, and above the same student trained without KD.

1. **Teacher**: ``--teacher`` (default resnet34) trained here by ``studentnas teacher train``'s code
   (``--teacher-epochs`` on ``--teacher-train-images``, no augmentation unless ``--teacher-augment``) into
   ``OUT/teacher.safetensors``, or ``--teacher-checkpoint`` reused. Its test top-1 is measured on the
   students' test images.
2. **Student**: one arch, ``--student-arch JSON`` (``{"space": ..., "genes": {...}}``, inline or a file) or
   ``--from-study DIR --student ID`` (a student of a ``scripts/search_quality.py`` folder's study.json),
   built in the space centred on the teacher (:func:`studentnas.engine.search.pick_space`).
3. **Trainings**: per seed of ``--seeds``, the student is trained twice by
   :func:`search_quality.train_one` (the study's own worker): with the KD recipe (Hinton KD at
   ``--temperature``, weight ``--kd-weight``, plus ``--ce-weight`` x CE) and with CE only (KD term removed,
   CE weight 1). Same epochs, images, seed, initial weights and batch order; teacher logits cached once.
4. **Report**: teacher top-1, KD and CE-only top-1 mean +- std, the KD gain paired by seed, the student's
   MACs share of the teacher and whether the target is met; JSON to ``--json`` (default ``OUT/kd_vs_ce.json``)
   and a markdown table on stdout. Every KD recipe found in the journal is reported, one row each (the
   CE-only runs do not depend on the recipe, so they are shared): running a second recipe into the same
   ``--out`` adds a row. Choosing among recipes by these numbers would be tuning on the test set: the
   report picks none.

``OUT/journal.jsonl`` holds one line per finished training (the resume source of truth): rerunning a
command trains only what is missing, a training in flight resumes from its last epoch (``OUT/ckpt/``).
``OUT/config.json`` pins what every training shares (teacher, data, student, epochs, ...); a rerun with
other values is refused.

  OMP_NUM_THREADS=1 python scripts/kd_vs_ce.py --out runs/kd_vs_ce \\
      --from-study runs/search_quality --student 233ab1fc666c --teacher-epochs 5 --teacher-train-images 20000
  OMP_NUM_THREADS=1 python scripts/kd_vs_ce.py --out runs/kd_vs_ce ... --temperature 1 --kd-weight 0.5 \\
      --ce-weight 0.5       # a second recipe: 3 more KD trainings, the CE-only ones are reused

Exit status 2 with a one-line message on bad input.
"""

# ruff: noqa: I001  (studentnas must be imported before timm/torchvision: it installs the torchvision shim)
from __future__ import annotations

import studentnas  # noqa: F401  first: the torchvision shim, also in spawned workers

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study's worker and helpers, also in workers
import search_quality as sq  # noqa: E402

from studentnas.core.arch import Arch  # noqa: E402
from studentnas.hardware.counting import measured_cost  # noqa: E402
from studentnas.distill.teacher_train import train_teacher, versions  # noqa: E402
from studentnas.distill.trainer import Batches, evaluate  # noqa: E402
from studentnas.core.errors import BadInputError  # noqa: E402
from studentnas.engine.search import pick_space  # noqa: E402

FORMAT = 1
CONFIG, JOURNAL = "config.json", "journal.jsonl"


# ------------------------------------------------------------------------------------------- inputs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/kd_vs_ce", help="output folder; rerun to resume (default: runs/kd_vs_ce)")
    p.add_argument("--json", default=None, help="report JSON path (default: OUT/kd_vs_ce.json)")
    t = p.add_argument_group("teacher")
    t.add_argument("--teacher", default="resnet34", help="timm teacher (default: resnet34)")
    t.add_argument("--teacher-checkpoint", default=None, help="reuse these weights instead of training a teacher")
    t.add_argument("--teacher-epochs", type=int, default=5, help="teacher training epochs (default: 5)")
    t.add_argument("--teacher-train-images", type=int, default=16000,
                   help="training images for the teacher, before its validation hold-out (default: 16000)")
    t.add_argument("--teacher-lr", type=float, default=0.05, help="teacher peak LR, cosine (default: 0.05)")
    t.add_argument("--teacher-val-fraction", type=float, default=0.1, help="held out for validation (default: 0.1)")
    t.add_argument("--teacher-augment", action="store_true", help="random crop + flip for the teacher (default: off)")
    s = p.add_argument_group("student")
    s.add_argument("--student-arch", default=None, help='arch JSON, inline or a file: {"space": ..., "genes": {...}}')
    s.add_argument("--from-study", default=None, help="a scripts/search_quality.py folder (its study.json)")
    s.add_argument("--student", default=None, help="with --from-study: the student id")
    r = p.add_argument_group("data and recipe")
    r.add_argument("--data", default="fashion-mnist", help="data spec with train and test splits")
    r.add_argument("--image-size", type=int, default=32, help="image side in pixels (default: 32)")
    r.add_argument("--epochs", type=int, default=6, help="student epochs (default: 6)")
    r.add_argument("--train-images", type=int, default=8000, help="student training images (default: 8000)")
    r.add_argument("--test-images", type=int, default=None, help="test images (default: the whole test split)")
    r.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    r.add_argument("--lr", type=float, default=0.05, help="student peak LR, cosine to 0 (default: 0.05)")
    r.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 5e-4)")
    r.add_argument("--temperature", type=float, default=4.0, help="KD temperature T (default: 4)")
    r.add_argument("--kd-weight", type=float, default=0.9, help="weight of the KD loss (default: 0.9)")
    r.add_argument("--ce-weight", type=float, default=0.1, help="weight of CE in the KD recipe (default: 0.1)")
    r.add_argument("--seeds", default="0,1,2", help="training seeds, comma separated (default: 0,1,2)")
    r.add_argument("--seed", type=int, default=0, help="seed of the data subsets and the teacher (default: 0)")
    p.add_argument("--jobs", type=int, default=2, help="trainings in parallel processes, 1 thread each (default: 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads here: teacher training and evaluation")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise BadInputError(f"--seeds '{text}': give distinct whole numbers >= 0, comma separated, e.g. --seeds 0,1,2")
    return seeds


def student_arch(args: argparse.Namespace) -> Arch:
    """The student from ``--student-arch`` (JSON text or file) or ``--from-study DIR --student ID``."""
    if (args.student_arch is None) == (args.from_study is None):
        raise BadInputError("give exactly one of --student-arch JSON or --from-study DIR --student ID")
    if args.from_study is not None:
        file = Path(args.from_study) / sq.STUDY
        if not file.is_file():
            raise BadInputError(f"--from-study '{args.from_study}' holds no {sq.STUDY}; give a search_quality folder")
        students = json.loads(file.read_text()).get("students", {})
        if args.student not in students:
            raise BadInputError(f"--student {args.student!r} is not in {file}; known: {', '.join(sorted(students))}")
        return Arch.from_dict(students[args.student]["arch"])
    if args.student is not None:
        raise BadInputError("--student goes with --from-study; with --student-arch leave it out")
    text = args.student_arch
    if not text.lstrip().startswith("{") and Path(text).is_file():
        text = Path(text).read_text()
    try:
        data = json.loads(text)
        return Arch.from_dict(data)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise BadInputError(f"--student-arch: not an arch JSON ({err}); expected "
                            '{"space": "resnet", "genes": {...}}, e.g. from a study.json\'s students') from None


def check_args(args: argparse.Namespace) -> None:
    for name in ("teacher_epochs", "teacher_train_images", "image_size", "epochs", "train_images", "batch_size",
                 "jobs"):
        if getattr(args, name) < 1:
            raise BadInputError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.test_images is not None and args.test_images < 1:
        raise BadInputError(f"--test-images {args.test_images}: must be >= 1 (or leave it out for the whole split)")
    if args.threads is not None and args.threads < 1:
        raise BadInputError(f"--threads {args.threads}: must be >= 1, e.g. --threads 1")
    if args.teacher_checkpoint is not None and not Path(args.teacher_checkpoint).is_file():
        raise BadInputError(f"--teacher-checkpoint '{args.teacher_checkpoint}' does not exist; leave it out to train "
                            "a teacher here")


def settings_of(args: argparse.Namespace, checkpoint: Path) -> sq.Settings:
    """The study's Settings for these trainings: the fields its worker reads (the rest keep their defaults)."""
    return sq.Settings(teacher=args.teacher, teacher_checkpoint=str(checkpoint), data=args.data,
                       image_size=args.image_size, epochs=args.epochs, train_images=args.train_images,
                       test_images=args.test_images, batch_size=args.batch_size, lr=args.lr,
                       weight_decay=args.weight_decay, temperature=args.temperature, kd_weight=args.kd_weight,
                       ce_weight=args.ce_weight, seed=args.seed)


def recipe_key(t: float, kd: float, ce: float) -> str:
    """A KD recipe's name in the journal, e.g. ``T4-kd0.9-ce0.1``."""
    return f"T{t:g}-kd{kd:g}-ce{ce:g}"


# ------------------------------------------------------------------------------------------- folder


class Folder:
    """``config.json`` (what every training shares; checked on rerun) and the journal of trainings."""

    def __init__(self, out: str | Path, identity: Mapping[str, Any]):
        self.path = Path(out)
        if self.path.exists() and not self.path.is_dir():
            raise BadInputError(f"--out '{out}' is a file; give a folder, e.g. --out runs/kd_vs_ce")
        file = self.path / CONFIG
        if file.is_file():
            self.state = json.loads(file.read_text())
            old = self.state["identity"]
            diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in identity.items() if old.get(k) != v]
            if diffs:
                raise BadInputError(f"'{out}' holds trainings with other settings ({'; '.join(diffs)}); rerun with "
                                    "the same flags (the KD recipe and --seeds may change), or pass another --out")
        else:
            self.state = {"format": FORMAT, "identity": dict(identity), "sessions": []}
            self.save()

    def save(self) -> None:
        sq.write_atomic(self.path / CONFIG, json.dumps(sq._clean(self.state), indent=2, sort_keys=True) + "\n")

    def journal(self) -> list[dict[str, Any]]:
        rows = []
        if (self.path / JOURNAL).is_file():
            for line in (self.path / JOURNAL).read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a torn last line (killed mid-write)
                    continue
        return rows

    def append(self, row: Mapping[str, Any]) -> None:
        with (self.path / JOURNAL).open("a") as fh:
            fh.write(json.dumps(sq._clean(row), sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# ------------------------------------------------------------------------------------------- work


def _say(quiet: bool) -> Callable[[str], None]:
    return (lambda _m: None) if quiet else (lambda m: print(f"kd_vs_ce: {m}", file=sys.stderr, flush=True))


def get_teacher(args: argparse.Namespace, out: Path, say: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """The teacher checkpoint (given, or trained into ``out``) and its training sidecar (or {})."""
    if args.teacher_checkpoint is not None:
        path = Path(args.teacher_checkpoint)
        sidecar = path.with_suffix(".json")
        return path, (json.loads(sidecar.read_text()) if sidecar.is_file() else {})
    path = out / "teacher.safetensors"
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        return path, json.loads(sidecar.read_text())
    say(f"training the teacher {args.teacher} ({args.teacher_epochs} epochs, {args.teacher_train_images} images, "
        f"{args.image_size} px, augment {args.teacher_augment})")
    meta = train_teacher(args.teacher, args.data, args.teacher_epochs, path, image_size=args.image_size,
                         lr=args.teacher_lr, batch_size=args.batch_size, train_images=args.teacher_train_images,
                         test_images=args.test_images, val_fraction=args.teacher_val_fraction,
                         augment=args.teacher_augment, seed=args.seed, threads=args.threads, quiet=args.quiet)
    meta["trained_here"] = True
    sq.write_atomic(sidecar, json.dumps(sq._clean(meta), indent=2, sort_keys=True) + "\n")
    return path, meta


def run_trainings(folder: Folder, jobs: list[dict[str, Any]], n_jobs: int, say: Callable[[str], None]) -> int:
    """Train every job (KD or CE-only, one seed) the journal lacks; a diverging one is recorded as failed."""
    trained = 0

    def record(job: dict[str, Any], row: dict[str, Any] | None, err: BaseException | None) -> None:
        nonlocal trained
        if row is None:
            row = {"student": Arch.from_dict(job["arch"]).id, "seed": job["seed"], "mode": job["mode"],
                   "status": "failed", "reason": f"{type(err).__name__}: {err}", "finished_at": time.time()}
        row = {**row, "recipe": job["recipe"]}
        folder.append(row)
        trained += row["status"] == "ok"
        what = f"{row['mode']} {job['recipe'] or ''} seed {row['seed']}".replace("  ", " ")
        say(f"{what}: " + (f"test top-1 {row['test_top1']:.2f} % ({row['seconds']:.0f} s)"
                           if row["status"] == "ok" else f"failed: {row['reason']}"))

    if n_jobs == 1 or len(jobs) <= 1:
        for job in jobs:
            try:
                row, err = sq.train_one(job), None
            except (FloatingPointError, RuntimeError) as e:
                row, err = None, e
            record(job, row, err)
        return trained
    with cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(sq.train_one, job): job for job in jobs}
        for fut in cf.as_completed(futures):
            err = fut.exception()
            if err is not None and not isinstance(err, (FloatingPointError, RuntimeError)):
                raise err
            record(futures[fut], None if err else fut.result(), err)
    return trained


def summarise(rows: Sequence[Mapping[str, Any]], student: str, seeds: Sequence[int], teacher_top1: float,
              share: float) -> dict[str, Any]:
    """Per KD recipe in the journal: KD and CE-only top-1 over ``seeds``, the paired KD gain, the target."""
    ok = [r for r in rows if r["status"] == "ok" and r["student"] == student and r["seed"] in seeds]
    ce = {r["seed"]: r["test_top1"] for r in ok if r["mode"] == "ce"}
    ce_mean, ce_std = sq._mean_std([ce[k] for k in sorted(ce)])
    recipes: dict[str, dict[int, float]] = {}
    for r in ok:
        if r["mode"] == "kd":
            recipes.setdefault(r["recipe"], {})[r["seed"]] = r["test_top1"]
    out = {}
    for key, kd in recipes.items():
        kd_mean, kd_std = sq._mean_std([kd[k] for k in sorted(kd)])
        paired = sorted(set(kd) & set(ce))
        gains = [kd[k] - ce[k] for k in paired]
        gain_mean, gain_std = sq._mean_std(gains)
        checks = {"under_macs_share": share <= sq.TARGET_MACS_SHARE,
                  "within_points_of_teacher": kd_mean >= teacher_top1 - sq.TARGET_POINTS,
                  "above_ce_only": bool(gains) and kd_mean > ce_mean}
        out[key] = {"kd_top1": [kd[k] for k in sorted(kd)], "kd_seeds": sorted(kd), "kd_top1_mean": kd_mean,
                    "kd_top1_std": kd_std, "gain_seeds": paired, "gain_values": gains, "gain_mean": gain_mean,
                    "gain_std": gain_std, "teacher_gap_points": kd_mean - teacher_top1, "checks": checks,
                    "target_met": all(checks.values()),
                    "complete": set(kd) == set(seeds) and set(ce) == set(seeds)}
    return {"ce_top1": [ce[k] for k in sorted(ce)], "ce_seeds": sorted(ce), "ce_top1_mean": ce_mean,
            "ce_top1_std": ce_std, "recipes": out}


def markdown(report: Mapping[str, Any]) -> str:
    t, st, summary = report["teacher"], report["student"], report["summary"]
    lines = [f"Teacher `{t['model']}` ({t['origin']}): test top-1 **{t['test_top1']:.2f} %** on "
             f"{t['test_images']} test images. Student `{st['id']}` ({st['label']}): "
             f"{100 * st['macs_share']:.1f} % of the teacher's MACs. Target: under "
             f"{100 * sq.TARGET_MACS_SHARE:g} % of the teacher's MACs, KD top-1 within {sq.TARGET_POINTS:g} point "
             "of the teacher's, above CE only.", "",
             "| KD recipe | teacher top-1 % | KD top-1 % | CE-only top-1 % | KD gain (points, paired) | MACs share "
             "| seeds | target |", "|---|---|---|---|---|---|---|---|"]
    ce = sq._fmt(summary["ce_top1_mean"], summary["ce_top1_std"])
    for key, r in summary["recipes"].items():
        current = " (this run)" if key == report["recipe"] else ""
        lines.append(f"| `{key}`{current} | {t['test_top1']:.2f} | {sq._fmt(r['kd_top1_mean'], r['kd_top1_std'])} | "
                     f"{ce} | {sq._fmt(r['gain_mean'], r['gain_std'])} | {100 * st['macs_share']:.1f} % | "
                     f"{len(r['gain_seeds'])} | {'**met**' if r['target_met'] else '**not met**'} |")
    if len(summary["recipes"]) > 1:
        lines += ["", "Several KD recipes were run; each row is judged on its own. Picking the best row by these "
                      "test accuracies would be tuning on the test set."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    say = _say(args.quiet)
    check_args(args)
    seeds = parse_seeds(args.seeds)
    arch = student_arch(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, teacher_meta = get_teacher(args, out, say)
    teacher = sq._teacher(args.teacher, str(checkpoint))
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
        _, test_set = sq._datasets(s.data, s.train_images, s.test_images, s.seed)
        t0 = time.perf_counter()
        ev = evaluate(teacher.model, Batches(test_set, s.input_size, teacher.mean, teacher.std, 256))
        folder.state["teacher_eval"] = {"test_top1": ev["top1"], "test_top5": ev["top5"], "test_loss": ev["loss"],
                                        "test_images": len(test_set), "seconds": time.perf_counter() - t0}
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
        sq._logits(s, str(checkpoint), cache)  # fill the cache once, before the workers read it
        say(f"teacher logits cached in {time.perf_counter() - t0:.1f} s")
    say(f"training {len(work)} of {2 * len(seeds)} (KD {recipe} and CE-only per seed) with {args.jobs} job(s)")
    t0 = time.perf_counter()
    trained = run_trainings(folder, work, args.jobs, say)
    train_wall = time.perf_counter() - t0

    share = student_cost.macs / teacher_cost.macs
    summary = summarise(folder.journal(), arch.id, seeds, teacher_top1, share)
    session = {"command": sq.command_line(), "recipe": recipe, "seeds": seeds, "trained": trained,
               "train_wall_s": train_wall, "wall_s": time.perf_counter() - started, "jobs": args.jobs,
               "loadavg_after": os.getloadavg(), "finished_at": time.time()}
    folder.state["sessions"].append(session)
    folder.save()
    current = summary["recipes"].get(recipe, {})
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
                     f"{teacher_meta.get('train_config', {}).get('augment')}, lr "
                     f"{teacher_meta.get('train_config', {}).get('lr')}" if "epochs" in teacher_meta else ""),
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
    path = Path(args.json) if args.json else out / "kd_vs_ce.json"
    sq.write_atomic(path, json.dumps(sq._clean(report), indent=2, sort_keys=True) + "\n")
    say(f"wrote {path} ({trained} trainings this session, {time.perf_counter() - started:.0f} s)")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    try:
        report = run(parse_args(argv))
    except BadInputError as err:
        print(f"kd_vs_ce: error: {err}", file=sys.stderr)
        return 2
    print(report["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
