"""Front quality: hypervolume of several searchers on one query at equal evaluations (issue 4 target).

Runs ``studentnas.search`` once per (searcher, seed) with the same teacher, budget, objectives and
number of candidates, then computes every run's hypervolume against ONE shared reference point
(``studentnas.core.pareto.reference_point`` over the candidates of all runs together, so the numbers are
comparable; each run's own run.json hypervolume is normalised to that run alone). Prints JSON.
Runs are resumable: rerunning the same command reuses finished run directories.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_front.py --teacher resnet101 --budget 5GFLOPs \
        --objectives nwot,macs --searchers random,evolution,nsga2 --candidates 60 --seeds 1 --out /tmp/front
"""

# ruff: noqa: I001 - studentnas must be imported first (torchvision shim)
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import studentnas as sn
from studentnas.core.budget import Budget
from studentnas.core.pareto import front, hypervolume, reference_point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet101")
    parser.add_argument("--budget", default="5GFLOPs")
    parser.add_argument("--objectives", default="nwot,macs")
    parser.add_argument("--searchers", default="random,evolution,nsga2")
    parser.add_argument("--candidates", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--space", default=None)
    parser.add_argument("--out", default="/tmp/studentnas-front")
    args = parser.parse_args()
    objectives = [o.strip() for o in args.objectives.split(",")]
    runs, seconds = {}, {}
    for name in [s.strip() for s in args.searchers.split(",")]:
        for seed in range(args.seeds):
            out = Path(args.out) / f"{name}-seed{seed}"
            start = time.perf_counter()
            runs[(name, seed)] = sn.search(args.teacher, args.budget, objectives=objectives, searcher=name,
                                           candidates=args.candidates, seed=seed, out=out, resume=True, quiet=True,
                                           batch_size=args.batch_size, image_size=args.image_size, space=args.space)
            seconds[(name, seed)] = time.perf_counter() - start
    budget = Budget.parse(args.budget)
    config = json.loads((next(iter(runs.values())).path / "run.json").read_text())
    if "teacher_cost" in config:
        budget = budget.resolve(sn.Cost.from_dict(config["teacher_cost"]))
    everything = [c for run in runs.values() for c in run.candidates]
    shared = reference_point(everything, objectives, budget)
    per_run = []
    for (name, seed), run in runs.items():
        hv, _ = hypervolume(run.candidates, objectives, reference=shared)
        per_run.append({"searcher": name, "seed": seed, "hypervolume": hv, "candidates": len(run.candidates),
                        "front_size": len(front(run.candidates, objectives)), "seconds": seconds[(name, seed)],
                        "run_dir": str(run.path)})
    summary = {}
    for name in dict.fromkeys(r["searcher"] for r in per_run):
        values = np.array([r["hypervolume"] for r in per_run if r["searcher"] == name])
        summary[name] = {"hypervolume_mean": float(values.mean()),
                         "hypervolume_std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                         "seeds": int(values.size)}
    base = summary.get("random", {}).get("hypervolume_mean")
    for entry in summary.values():
        entry["ratio_to_random"] = entry["hypervolume_mean"] / base if base else None
    print(json.dumps({"query": vars(args), "reference_point": shared.to_dict(), "summary": summary, "runs": per_run},
                     indent=1))


if __name__ == "__main__":
    main()
