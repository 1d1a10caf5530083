"""Parallel speed-up: the same search serially and with ``--workers N`` on a local Ray, in one run.

Runs ``studentnas search`` (random searcher, so both runs evaluate the same archs) once in process
with one torch thread, once in process with the default threads, and once with ``--workers N``
(each Ray worker pins torch to one thread), and prints JSON: wall seconds, loop seconds, candidates
per minute of the search loop, the speed-up of the Ray loop over each serial loop, Ray's start-up
seconds and its overhead per candidate (from run.json), and whether the scores are identical.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_parallel.py --teacher resnet50 --image-size 128 \
        --budget 2GFLOPs --candidates 40 --workers 2
"""

# ruff: noqa: I001 - studentnas must be imported first (torchvision shim)
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import studentnas  # noqa: F401


def run(label: str, out: Path, args: argparse.Namespace, extra: list[str], env: dict[str, str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "studentnas.cli", "search", "--teacher", args.teacher, "--budget", args.budget,
           "--searcher", "random", "--candidates", str(args.candidates), "--seed", "0", "--out", str(out), "--quiet",
           *(["--image-size", str(args.image_size)] if args.image_size else []),
           *(["--space", args.space] if args.space else []), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed: {proc.stderr.strip()[-500:]}")
    config = json.loads((out / "run.json").read_text())
    loop = config["timings"]["search_loop"]
    scores = {json.loads(line)["id"]: json.loads(line).get("scores")
              for line in (out / "candidates.jsonl").read_text().splitlines()}
    return {"label": label, "wall_s": wall, "loop_s": loop, "candidates": config["n_candidates"],
            "per_min_loop": 60 * config["n_candidates"] / loop, "ray": config.get("ray"), "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--budget", default="2GFLOPs")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--space", default=None)
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="studentnas-par-"))
    serial1 = run("serial, 1 torch thread", base / "serial1", args, [], {"OMP_NUM_THREADS": "1"})
    serial = run("serial, default threads", base / "serial", args, [], {})
    ray = run(f"--workers {args.workers}", base / "ray", args, ["--workers", str(args.workers)], {})
    same = serial1["scores"] == ray["scores"]
    for entry in (serial1, serial, ray):
        entry.pop("scores")
    print(json.dumps({"query": vars(args), "runs": [serial1, serial, ray],
                      "loop_speedup_vs_serial_1_thread": serial1["loop_s"] / ray["loop_s"],
                      "loop_speedup_vs_serial_default": serial["loop_s"] / ray["loop_s"],
                      "wall_speedup_vs_serial_1_thread": serial1["wall_s"] / ray["wall_s"],
                      "scores_identical_to_1_thread_serial": same}, indent=1))
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
