"""``studentnas bench kd``: a KD ground truth. Every student of a MACs band (plus any named) is distilled from a
trained teacher with one fixed recipe, per seed (and CE-only for some), and the accuracies are written as
``kd_ground_truth.json``/``.csv`` (:mod:`studentnas.bench.kd_truth`), which ``bench proxies --ground-truth``
ranks proxies against.

Each training is one call of the studies' worker (:func:`studentnas.studies.worker.train_one`: seeded init per
(seed, arch id), teacher logits cached once in the folder), run in this process (``workers=1``) or as Ray tasks
of one CPU each (a local Ray, or a cluster with ``ray_address``; the folder and the teacher checkpoint must then
be on a file system every node sees). Each finished (student, seed, mode) is appended to ``journal.jsonl``
(flushed, fsynced); ``resume=True`` trains only what it lacks, and a killed training continues from its last
epoch checkpoint. ``config.json`` holds the run's identity: a resume with another teacher or recipe is refused;
one with more seeds (``0,1`` -> ``0,1,2``) extends the ground truth by the new seeds' trainings only.

Example:
    >>> import tempfile
    >>> bench_kd(teacher="resnet18", teacher_checkpoint="nope.safetensors", out=tempfile.mkdtemp(), seeds="0,x")
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --seeds '0,x': seeds are comma-separated non-negative integers, e.g. --seeds 0,1
"""  # noqa: E501

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from studentnas.bench.kd_students import ce_picks, parse_band, parse_seeds, parse_student, sample_band
from studentnas.bench.kd_truth import FORMAT, seed_noise, write_ground_truth
from studentnas.core.console import Progress, sayer
from studentnas.core.errors import BadInputError
from studentnas.data.teachers import check_teacher_name
from studentnas.engine.parallel import check_parallel
from studentnas.engine.setup import pick_space
from studentnas.hardware.counting import measured_cost
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.runfiles.paths import check_writable_dir
from studentnas.runfiles.provenance import provenance
from studentnas.studies.common import FAILURES, json_ready, mean_std, training_journal
from studentnas.studies.inputs import cached_teacher, teacher_logits
from studentnas.studies.settings import Settings
from studentnas.studies.teacher import check_teacher_checkpoint, evaluate_teacher
from studentnas.studies.worker import Record, failed_row, mode_of, run_jobs, train_one

CONFIG = "config.json"
PREFIX = "bench kd: "


def _identity(s: Settings, sha: str, space: dict[str, Any], band: tuple[float, float], n: int,
              named: Sequence[str], seeds: Sequence[int], ce_only: int, roster: Sequence[str]) -> dict[str, Any]:
    """What must match for ``--resume`` to continue a folder (every number depends on it), the students drawn
    included (``roster``: their ids by MACs)."""
    settings = {k: v for k, v in asdict(s).items() if k not in ("teacher_checkpoint", "seeds")}
    return json_ready({"format": FORMAT, "teacher": s.teacher, "teacher_sha256": sha, "space": space,
                       "band": list(band), "students": n, "named": list(named), "seeds": list(seeds),
                       "ce_only": ce_only, "roster": list(roster), "settings": settings})


def _check_resume(folder: Path, identity: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """The saved config of ``folder`` when ``resume`` may continue it; None for a new run; else BadInputError."""
    path = folder / CONFIG
    if not path.is_file():
        return None
    if not resume:
        raise BadInputError(f"--out '{folder}' already holds a `bench kd` run; pass --resume to continue it, or "
                            "give another --out")
    saved = json.loads(path.read_text())
    old = saved.get("identity", {})
    if old.get("teacher_sha256") != identity["teacher_sha256"] or old.get("teacher") != identity["teacher"]:
        raise BadInputError(f"--resume: '{folder}' was built from teacher {old.get('teacher')} (checkpoint sha256 "
                            f"{str(old.get('teacher_sha256'))[:12]}), not {identity['teacher']} "
                            f"({identity['teacher_sha256'][:12]}); give another --out for this teacher")
    flat_old, flat_new = ({**{k: v for k, v in d.items() if k != "settings"}, **d.get("settings", {})}
                          for d in (old, identity))
    if set(flat_old.get("seeds") or []) <= set(flat_new["seeds"]):  # more seeds extend a ground truth
        flat_old["seeds"] = flat_new["seeds"]
    diff = [f"{k} {flat_old.get(k)!r} (now {flat_new.get(k)!r})" for k in sorted(set(flat_old) | set(flat_new))
            if flat_old.get(k) != flat_new.get(k)]
    if diff:
        raise BadInputError(f"--resume: '{folder}' was built with {'; '.join(diff)}; rerun it with those values "
                            "(see config.json) or give another --out")
    return saved


def _run_on_ray(jobs: Sequence[dict[str, Any]], address: str | None, workers: int | None, record: Record) -> None:
    """Run ``train_one`` on every job as Ray tasks (one CPU each, at most ``workers`` in flight when given)."""
    import ray

    from studentnas.distill.resources import connect_ray

    started = connect_ray(address, workers)
    try:
        task = ray.remote(num_cpus=1)(train_one)
        queue, pending = list(jobs), {}
        limit = workers or len(jobs)
        while queue or pending:
            while queue and len(pending) < limit:
                job = queue.pop(0)
                pending[task.remote(job)] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                row, err = ray.get(ready[0]), None
            except ray.exceptions.RayTaskError as e:
                if not isinstance(e.cause, FAILURES):
                    raise
                row, err = None, e.cause
            record(job, row, err)
    finally:
        if started:
            ray.shutdown()


def _student_entry(arch: Any, label: str, cost: Any, teacher_macs: float, origin: str,
                   rows: dict[tuple[str, int, str], dict[str, Any]], seeds: Sequence[int],
                   ce: bool) -> dict[str, Any]:
    """One student of the ground-truth file: arch, cost, top-1 per seed and mean (KD, and CE-only if trained)."""
    entry: dict[str, Any] = {"id": arch.id, "arch": arch.to_dict(), "label": label, "origin": origin,
                             "macs": cost.macs, "params": cost.params, "macs_share": cost.macs / teacher_macs}
    for mode in ("kd", "ce"):
        if mode == "ce" and not ce:
            entry.update(ce_top1=None, ce_top1_mean=None, ce_top1_std=None)
            continue
        per_seed = {str(seed): rows[(arch.id, seed, mode)]["test_top1"] for seed in seeds
                    if rows.get((arch.id, seed, mode), {}).get("status") == "ok"}
        mean, std = mean_std(list(per_seed.values()))
        entry.update({f"{mode}_top1": per_seed, f"{mode}_top1_mean": mean, f"{mode}_top1_std": std})
    return entry


def bench_kd(*, teacher: str, teacher_checkpoint: str | None, out: str | Path, space: str | None = None,
             band: str = "10%:40%", students: int = 8, named: Sequence[str] = (), seeds: str = "0,1",
             ce_only: int = 0, epochs: int = 6, lr: float = 0.05, temperature: float = 4.0, kd_weight: float = 0.9,
             ce_weight: float = 0.1, batch_size: int = 64, train_images: int = 8000, test_images: int | None = None,
             data: str = "fashion-mnist", image_size: int = 32, seed: int = 0, resume: bool = False,
             ray_address: str | None = None, workers: int | None = None, quiet: bool = False,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build (or, with ``resume``, continue) the KD ground truth in ``out`` and return its document (see the
    module docstring). Bad input raises a one-line :class:`BadInputError` before anything is written."""
    started = time.perf_counter()
    say = log or sayer(quiet, PREFIX)
    seed_list, band_shares = parse_seeds(seeds), parse_band(band)
    for flag, value, low in (("--students", students, 0), ("--ce-only", ce_only, 0), ("--epochs", epochs, 1),
                             ("--batch-size", batch_size, 1), ("--train-images", train_images, 1),
                             ("--image-size", image_size, 8)):
        if value < low:
            raise BadInputError(f"{flag} must be >= {low}, got {value}")
    if students == 0 and not named:
        raise BadInputError("no students: pass --students N (sampled in --band) and/or --student ARCH_JSON")
    if teacher_checkpoint is None:
        raise BadInputError("--teacher-checkpoint is required: a trained teacher (e.g. from `studentnas teacher "
                            "train`); a ground truth from a random teacher measures nothing")
    check_teacher_name(teacher)
    check_teacher_checkpoint(teacher_checkpoint)
    folder = check_writable_dir(Path(out).expanduser(), "--out", example="runs/kd-truth")
    check_parallel(workers, ray_address)
    if workers != 1 and importlib.util.find_spec("ray") is None:
        raise BadInputError("`bench kd` trains on Ray by default, which is not installed; pip install ray, or pass "
                            "--workers 1 to train in this process")
    s = Settings(teacher=teacher, teacher_checkpoint=str(teacher_checkpoint), data=data, image_size=image_size,
                 space=space or "auto", seeds=len(seed_list), epochs=epochs, train_images=train_images,
                 test_images=test_images, batch_size=batch_size, lr=lr, temperature=temperature,
                 kd_weight=kd_weight, ce_weight=ce_weight, seed=seed)
    teach = cached_teacher(teacher, str(teacher_checkpoint))
    space_obj = pick_space(space, teach)
    teacher_cost = measured_cost(teach.model, s.input_size)

    def cost_of(arch: Any) -> Any:
        return space_obj.cost(arch, s.input_size, teach.num_classes)

    named_archs = [parse_student(space_obj, text) for text in named]
    sampled = sample_band(space_obj, lambda a: cost_of(a).macs, teacher_cost.macs, band_shares, students, seed)
    roster: dict[str, tuple[Any, str]] = {a.id: (a, f"band bin {i + 1}/{students}") for i, a in enumerate(sampled)}
    for arch in named_archs:
        roster.setdefault(arch.id, (arch, "named"))
    by_macs = sorted(roster, key=lambda i: (cost_of(roster[i][0]).macs, i))
    ce_ids = set(ce_picks(by_macs, ce_only))
    identity = _identity(s, teach.checkpoint_sha256, space_obj.config(), band_shares, students,
                         [a.id for a in named_archs], seed_list, ce_only, by_macs)
    saved = _check_resume(folder, identity, resume)
    # --- everything checked: from here on, files are written -------------------------------------------
    folder.mkdir(parents=True, exist_ok=True)
    journal = training_journal(folder)
    teacher_eval = saved["teacher_eval"] if saved else evaluate_teacher(s, teach)
    config = {"identity": identity, "teacher_checkpoint": str(teacher_checkpoint), "teacher_eval": teacher_eval,
              "students": {i: {"arch": a.to_dict(), "origin": o} for i, (a, o) in roster.items()},
              "ce_only": sorted(ce_ids)}
    write_json_atomic(folder / CONFIG, json_ready(config))
    done = {(r["student"], r["seed"], mode_of(r)) for r in journal.read() if r["status"] == "ok"}
    wanted = [(i, sd, "kd") for sd in seed_list for i in by_macs] + \
             [(i, sd, "ce") for sd in seed_list for i in by_macs if i in ce_ids]
    # longest first (most MACs), so the last round of parallel workers is not one big training alone
    todo = sorted((key for key in wanted if key not in done), key=lambda k: -cost_of(roster[k[0]][0]).macs)
    cache = str(folder / "teacher_logits")
    say(f"{len(roster)} {space_obj.name} students ({len(sampled)} in the band {band}, {len(named_archs)} named), "
        f"{len(seed_list)} seeds, CE-only for {len(ce_ids)}: training {len(todo)} of {len(wanted)} "
        f"({len(wanted) - len(todo)} already in the journal)")
    if any(mode == "kd" for _, _, mode in todo):
        teacher_logits(s, str(teacher_checkpoint), cache)  # once, before any worker reads it
    base = {"settings": asdict(s), "space": space_obj.config(), "checkpoint": str(teacher_checkpoint),
            "cache": cache}
    jobs = [{**base, "arch": roster[i][0].to_dict(), "seed": sd, "mode": mode,
             "ckpt": str(folder / "ckpt" / f"{i}-s{sd}-{mode}")} for i, sd, mode in todo]
    t0 = time.perf_counter()
    with Progress(total=len(wanted), desc="bench kd", quiet=quiet, initial=len(wanted) - len(todo)) as bar:
        def record(job: dict[str, Any], row: dict[str, Any] | None, err: BaseException | None) -> None:
            row = failed_row(job, err) if row is None else row
            journal.append(json_ready(row))
            bar.update(1, **({"top1": row["test_top1"]} if row["status"] == "ok" else {"failed": row["student"]}))

        if ray_address is None and workers == 1:
            run_jobs(jobs, None, record)
        else:
            _run_on_ray(jobs, ray_address, workers, record)
    rows = {(r["student"], r["seed"], mode_of(r)): r for r in journal.read()}
    entries = [_student_entry(roster[i][0], space_obj.format_arch(roster[i][0]), cost_of(roster[i][0]),
                              teacher_cost.macs, roster[i][1], rows, seed_list, i in ce_ids) for i in by_macs]
    doc = json_ready({
        "format": FORMAT, "space": space_obj.config(), "image_size": image_size, "num_classes": teach.num_classes,
        "data": data, "seeds": seed_list, "band": {"text": band, "shares": list(band_shares)},
        "teacher": {"name": teacher, "checkpoint": str(teacher_checkpoint), "sha256": teach.checkpoint_sha256,
                    "macs": teacher_cost.macs, "params": teacher_cost.params, **teacher_eval},
        "recipe": {"kd": s.train_config(0).to_dict(), "ce": s.train_config(0, "ce").to_dict(),
                   "train_images": train_images, "test_images": test_images, "image_size": image_size, "seed": seed},
        "students": entries,
        "noise": {"kd": seed_noise(entries, seed_list, "kd"), "ce": seed_noise(entries, seed_list, "ce")},
        "trained_now": len(todo), "training_wall_s": time.perf_counter() - t0,
        "failed": sorted({f"{k[0]}/s{k[1]}/{k[2]}" for k, r in rows.items() if r["status"] != "ok"}),
        "parallel": {"ray_address": ray_address, "workers": workers},
        "provenance": provenance(seed, 1), "wall_s": time.perf_counter() - started,
    })
    write_ground_truth(folder, doc)
    noise = doc["noise"]["kd"]
    if noise["noise_std"] is not None:
        say(f"KD top-1 over {noise['students']} students: seed noise {noise['noise_std']:.2f} points (pooled std) vs "
            f"spread {noise['spread_std']:.2f} (std of the means); the seeds agree on "
            f"{100 * (noise['seed_agreement_10'] or 0):.0f} % of {noise['pairs_10']} pairs within 10 % MACs")
    say(f"wrote {folder / 'kd_ground_truth.json'} and .csv ({len(todo)} trainings now, "
        f"{time.perf_counter() - started:.0f} s)")
    return doc
