"""Puzzle benchmarks of issue 6: MIP vs greedy vs random at 3 budgets, BLD speed-up, Puzzle vs from scratch.

1. **Quality at equal budget**: one ``studentnas puzzle`` run on ``--teacher``/``--teacher-checkpoint``
   (BLD and scoring once), then the MIP, greedy and ``--random-baselines`` random selections at each
   ``--budgets`` value, every one realised from the BLD weights, BN-recalibrated and measured on the test
   split (KL to the teacher, top-1). The MIP student also gets the short global KD.
2. **From scratch**: the MIP student's architecture at the first budget, re-initialised and trained with
   the same recipe as global KD (images: Hinton KD at T=1 + 0.5 CE with the distill trainer; LMs:
   next-byte KL) for as many images or tokens as the Puzzle student saw on its path (one BLD budget +
   the global KD).
3. **BLD parallel speed-up** (``--speedup N``): the BLD of the first N library entries in a scratch
   folder, with 1 worker (in process) and with 2 Ray workers; the ratio of wall times, beside the
   machine's own ceiling measured in the same run (2 single-threaded matmul processes vs 1: 2.0 on two
   real cores). Run it on an otherwise idle machine.

Prints one JSON object (also written to ``--json``) and, with ``--markdown``, a table for BENCHMARKS.md.

  OMP_NUM_THREADS=1 python scripts/bench_puzzle.py --teacher resnet26 --teacher-checkpoint r26.safetensors \\
      --data fashion-mnist --out runs/bench_puzzle --budgets 70%macs,50%macs,30%macs --json puzzle.json
"""

# ruff: noqa: I001  (studentnas before timm: it installs the torchvision shim)
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import studentnas  # noqa: F401
import torch
from torch import nn

from studentnas.hardware.capacity import machine_parallel_capacity
from studentnas.puzzle.bld import BLDConfig, BLDJob, run_bld
from studentnas.puzzle.library import Library
from studentnas.puzzle.options import PuzzleOptions
from studentnas.puzzle.pipeline import PuzzleRun
from studentnas.puzzle.scoring import evaluate_model


def _reinit(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every parameterised layer re-initialised (seeded), BN stats reset."""
    torch.manual_seed(seed)
    fresh = copy.deepcopy(model)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    return fresh


def _from_scratch(run: PuzzleRun, ids: list[str], lib: Library, images: int, seed: int) -> dict[str, Any]:
    from studentnas.distill.batches import Batches
    from studentnas.distill.train_config import TrainConfig
    from studentnas.distill.trainer import train
    from studentnas.puzzle.realise import realise
    from studentnas.puzzle.samples import bld_image_set

    by_id = lib.by_id()
    arch = realise(run.dec, run.family, [by_id[i].replacement for i in ids], run.root)
    student = _reinit(arch, seed)
    data = bld_image_set(run.opts.data, run.opts.bld_samples, seed)
    batches = Batches(data, run.spec.input_shape, run.spec.mean, run.spec.std, 64, shuffle=True, seed=seed,
                      drop_last=True)
    epochs = max(1, round(images / batches.num_images))
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, weight_decay=5e-4, ce_weight=0.5,
                         losses=({"name": "kd", "weight": 1.0, "T": 1.0},), seed=seed)
    start = time.perf_counter()
    train(student, batches, None, config, teacher=run.teacher)
    quality = evaluate_model(student, run.teacher, run.samples.test, run.samples.test_labels, is_lm=run.spec.is_lm)
    return {"epochs": epochs, "images": epochs * batches.num_images, "seconds": time.perf_counter() - start,
            "train_config": config.to_dict(), **quality}


def _lm_from_scratch(run: PuzzleRun, ids: list[str], lib: Library, tokens: int, seed: int) -> dict[str, Any]:
    """The MIP student's architecture re-initialised and trained by the global-KD loop (next-byte KL to
    the teacher, batch 16) for as many tokens as the Puzzle student saw (one BLD budget + global KD)."""
    from studentnas.puzzle.realise import global_kd_lm, realise

    by_id = lib.by_id()
    student = _reinit(realise(run.dec, run.family, [by_id[i].replacement for i in ids], run.root), seed)
    steps = max(1, round(tokens / (16 * run.samples.bld.shape[1])))
    info = global_kd_lm(student, run.teacher, run.samples.bld, steps=steps, batch_size=16, seed=seed)
    quality = evaluate_model(student, run.teacher, run.samples.test, None, is_lm=True)
    return {**info, **quality}


def _speedup(run: PuzzleRun, lib: Library, n: int, folder: Path) -> dict[str, Any]:
    """Wall time of the BLD of ``n`` trainable entries with 1 and with 2 workers (same activations)."""
    entries = [e for e in lib.entries if not e.replacement.is_teacher and e.costs.get("params", 0) > 0][:n]
    out: dict[str, Any] = {"replacements": len(entries), "machine": machine_parallel_capacity(2)}
    for workers in (1, 2):
        root = folder / f"w{workers}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / "acts").symlink_to((run.root / "acts").resolve())
        jobs = [BLDJob(str(root), run.spec.to_dict(), run.family.name, e.replacement.to_dict(),
                       {**run.opts.bld.__dict__}) for e in entries]
        if workers > 1:
            import ray

            from studentnas.engine.parallel import init_ray

            start = time.perf_counter()
            init_ray(None, workers)
            out["ray_start_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        run_bld(jobs, workers=workers)
        out[f"seconds_{workers}_worker{'s' if workers > 1 else ''}"] = time.perf_counter() - start
        if workers > 1:
            ray.shutdown()
    out["speedup"] = out["seconds_1_worker"] / out["seconds_2_workers"]
    out["speedup_with_ray_start"] = out["seconds_1_worker"] / (out["seconds_2_workers"] + out["ray_start_seconds"])
    out["share_of_machine_ceiling"] = out["speedup"] / out["machine"]["capacity"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="resnet26")
    p.add_argument("--teacher-checkpoint")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--out", required=True)
    p.add_argument("--budgets", default="70%macs,50%macs,30%macs")
    p.add_argument("--bld-samples", type=int, default=2048)
    p.add_argument("--bld-budget", type=int, default=4096)
    p.add_argument("--score-samples", type=int, default=500)
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--random-baselines", type=int, default=5)
    p.add_argument("--gkd-epochs", type=int, default=2)
    p.add_argument("--gkd-steps", type=int, default=300)
    p.add_argument("--library-options", default="{}")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--speedup", type=int, default=0, metavar="N", help="measure BLD speed-up on N replacements")
    p.add_argument("--no-scratch", action="store_true")
    p.add_argument("--speedup-only", action="store_true", help="only the BLD speed-up (the run must exist)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args(argv)
    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    base = PuzzleOptions(teacher=args.teacher, budget=[budgets[0]], out=args.out, data=args.data,
                         teacher_checkpoint=args.teacher_checkpoint, library=json.loads(args.library_options),
                         bld_samples=args.bld_samples, score_samples=args.score_samples,
                         test_samples=args.test_samples, bld=BLDConfig(budget=args.bld_budget, seed=args.seed),
                         random_baselines=args.random_baselines, gkd_epochs=args.gkd_epochs,
                         gkd_steps=args.gkd_steps, workers=args.workers, seed=args.seed)
    report: dict[str, Any] = {"command": " ".join(sys.argv), "budgets": {}, "threads": torch.get_num_threads()}
    start = time.perf_counter()
    last = None
    for budget in [] if args.speedup_only else budgets:
        run = PuzzleRun(replace(base, budget=[budget]))
        summary = run.run()
        row = summary["solutions"][summary["last"]]
        ev = row["evaluation"]
        report["budgets"][budget] = {
            "measured": row["measured"], "limits": row["limits"], "teacher": ev["teacher"], "mip": ev["mip"],
            "mip_after_gkd": ev["mip_after_gkd"], "greedy": ev["greedy"], "random": ev["random"],
            "objective": {"mip": row["mip_objective"], "greedy": row["greedy_objective"],
                          "random": row["random_objectives"]}}
        print(json.dumps({budget: report["budgets"][budget]["objective"]}), file=sys.stderr, flush=True)
        last = run if last is None else last
    report["pipeline_seconds"] = time.perf_counter() - start
    first = PuzzleRun(replace(base, budget=[budgets[0]]))
    first._setup(need_data=True)
    lib = Library.from_dict(json.loads((first.root / "library.json").read_text()))
    report["library"] = {"entries": len(lib.entries), "layers": lib.num_layers,
                         "failed": sum(not e.ok for e in lib.entries)}
    if not args.no_scratch and not args.speedup_only:
        solution = json.loads((first.root / "solutions" / f"{first.budget.slug()}.json").read_text())
        ids = [c["id"] for c in solution["mip"]["chosen"]]
        if first.spec.is_lm:
            context = first.spec.input_shape[0]
            tokens = args.bld_budget * context + solution["evaluation"]["gkd"]["tokens"]
            scratch = _lm_from_scratch(first, ids, lib, tokens, args.seed)
            report["scratch"] = {"budget": budgets[0], "puzzle_tokens": tokens, **scratch}
        else:
            images = args.bld_budget + solution["evaluation"]["gkd"]["images"]
            report["scratch"] = {"budget": budgets[0], "puzzle_images": images,
                                 **_from_scratch(first, ids, lib, images, args.seed)}
        report["scratch"]["puzzle_after_gkd"] = solution["evaluation"]["mip_after_gkd"]
    if args.speedup:
        report["bld_speedup"] = _speedup(first, lib, args.speedup, Path(args.out) / "speedup")
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
