# ruff: noqa: I001  (studentnas must be imported before timm: it installs the torchvision shim)
"""Benchmark of the main job: `studentnas search --teacher resnet101 --budget 5GFLOPs` with defaults.

Runs the real CLI in a subprocess and reports, as JSON on stdout:
  wall time, candidates scored and per minute, peak RSS of the search process, the mean time per
  candidate split into build / cost / proxies, the share of time spent on teacher work, and a
  same-run baseline (one resnet50 forward at the calibration batch) to turn times into ratios.
With --verify it exports every front member and checks FlopCounterMode MACs <= the budget.

  python scripts/bench_search.py --out /tmp/bench_search --verify
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import studentnas  # noqa: F401  (torchvision shim before timm)
import timm
import torch
from studentnas.hardware.counting import counted_macs
from studentnas.engine.export import export_student
from studentnas.runfiles.models import load_model
from studentnas.engine.rundir import load_run


def baseline_seconds(batch: int, size: int) -> float:
    model = timm.create_model("resnet50").train()
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        model(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/studentnas_bench_search")
    parser.add_argument("--verify", action="store_true", help="export every front member and count its MACs")
    parser.add_argument("extra", nargs="*", help="extra arguments for studentnas search (after --)")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    command = [sys.executable, "-m", "studentnas.cli", "search", "--teacher", "resnet101", "--budget", "5GFLOPs",
               "--out", args.out, "--quiet", *args.extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(proc.returncode)
    run = load_run(args.out)
    cfg = run.config
    cands = [c for c in run.candidates if c.ok]
    n = len(cands)
    build = sum(c.timings.get("build", 0.0) for c in cands) / n
    proxies = sum(v for c in cands for k, v in c.timings.items() if k.startswith("proxy:")) / n
    timings = cfg["timings"]
    teacher = timings["teacher_load"] + timings["teacher_cost"] + timings["teacher_outputs"]
    base = baseline_seconds(cfg["batch_size"], cfg["input_size"][1])
    result = {
        "command": "studentnas search --teacher resnet101 --budget 5GFLOPs",
        "wall_seconds": round(wall, 1),
        "candidates_scored": n,
        "candidates_failed": cfg["n_failed"],
        "candidates_per_minute": round(n / (timings["search_loop"] / 60), 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "per_candidate_seconds": {"build": round(build, 3), "cost": round(timings["cost_total"] / n, 6),
                                  "proxies": round(proxies, 3)},
        "teacher_seconds": {k: round(timings[k], 2) for k in ("teacher_load", "teacher_cost", "teacher_outputs")},
        "teacher_share_of_total": round(teacher / timings["total"], 4),
        "teacher_outputs_share_after_setup": round(timings["teacher_outputs"] / timings["search_loop"], 4),
        "front_size": len(run.pareto),
        "baseline_resnet50_forward_seconds": round(base, 3),
        "per_candidate_over_baseline": round((build + proxies) / base, 2),
    }
    if args.verify:
        worst = 0.0
        folder = Path(args.out) / "students"
        for rank in range(1, len(run.pareto) + 1):
            path = export_student(args.out, folder / f"rank{rank}.safetensors", rank=rank)
            worst = max(worst, counted_macs(load_model(path), tuple(cfg["input_size"])))
        result["front_max_counted_gmacs"] = round(worst / 1e9, 4)
        result["front_within_budget"] = worst <= 5e9
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
