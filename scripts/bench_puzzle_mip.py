"""Puzzle MIP solve time on a synthetic library: 100 layers x 20 replacements, 3 constraints, a few budgets.

The library is random but shaped like a ResNet's: 4 stages of layers whose teacher blocks have params
growing 4x per stage while the feature map shrinks 4x, so MACs = params x H x W per layer. Every layer
offers its teacher block, a no-op, a linear replacement and 17 width-``f`` bottleneck or depthwise
variants; every 4th layer's first 3 variants are two-layer spans (one merged block for layers ``i`` and
``i+1``). KL grows like ``(1 - f)^1.5`` times a per-layer sensitivity.

``--costs correlated`` (default, as for real convolutions) keeps a variant's params and MACs the same
fraction of its parent's, with latency a noisy (+-10 %) affine function of it. ``--costs independent``
is a stress case: params, MACs and latency each get their own +-20 % noise per variant, so the three
constraints pull in different directions and HiGHS needs many more branch-and-bound nodes.

Budgets are the same share of the teacher for params, MACs and latency at once. Each budget is solved
``--repeats`` times from the ``Library`` (table build included); ``median_s`` is the median over every
(seed, budget) of its median wall time, against the issue's target of 1 s. HiGHS's own console lines
are kept off stdout so that it is JSON.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_puzzle_mip.py --repeats 5
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_puzzle_mip.py --repeats 5 --costs independent
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy

from studentnas.puzzle.baselines import greedy
from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
from studentnas.puzzle.mip_model import solve

KEYS = ("params", "macs", "latency_ms")


def synthetic_library(num_layers: int = 100, per_layer: int = 20, seed: int = 0, costs: str = "correlated") -> Library:
    """``per_layer`` entries start at every layer: teacher, noop, linear and ``per_layer - 3`` variants."""
    rng = np.random.default_rng(seed)
    stage = np.minimum(np.arange(num_layers) * 4 // num_layers, 3)
    area = np.array([56 * 56, 28 * 28, 14 * 14, 7 * 7])[stage]
    params = 70e3 * 4.0 ** stage * rng.uniform(0.9, 1.1, num_layers)
    macs = params * area
    latency = macs * 1e-9 * np.array([1.0, 1.1, 1.3, 1.8])[stage] * rng.uniform(0.9, 1.1, num_layers)
    sens = rng.lognormal(-3.0, 1.0, num_layers)
    layers = [LayerInfo(i, f"blocks.{i}", "bottleneck", (64, 8, 8), (64, 8, 8), int(stage[i]))
              for i in range(num_layers)]

    def fractions(frac: float, latency_frac: float) -> np.ndarray:
        if costs == "independent":
            return frac * rng.uniform(0.8, 1.2, 3)
        return np.array([frac, frac, latency_frac * rng.uniform(0.9, 1.1)])

    entries = []
    for i in range(num_layers):
        base = np.array([params[i], macs[i], latency[i]])
        entries.append(Entry(Replacement(i, i + 1, "teacher"), dict(zip(KEYS, base.tolist())), {"kl": 0.0}))
        entries.append(Entry(Replacement(i, i + 1, "noop"), dict.fromkeys(KEYS, 0.0),
                             {"kl": float(sens[i] * rng.uniform(1.0, 2.0))}))
        entries.append(Entry(Replacement(i, i + 1, "linear"), dict(zip(KEYS, (base * fractions(0.15, 0.25)).tolist())),
                             {"kl": float(sens[i] * rng.uniform(0.5, 1.0))}))
        spans = 3 if i % 4 == 0 and i + 1 < num_layers else 0
        for v in range(per_layer - 3):
            f = float(rng.uniform(0.05, 0.95))
            depthwise = v % 3 == 2
            frac = (0.5 * f + 0.5 * f * f) * (0.4 if depthwise else 1.0)  # 1x1 convs ~ f, the 3x3 ~ f^2
            fr = fractions(frac, 0.15 + 0.85 * frac * (1.5 if depthwise else 1.0))
            penalty = 1.3 if depthwise else 1.0
            kind = "depthwise" if depthwise else "bottleneck"
            if v < spans:  # one merged block in place of layers i and i+1
                pair = base + np.array([params[i + 1], macs[i + 1], latency[i + 1]])
                kl = (sens[i] + sens[i + 1]) * (1 - f) ** 1.5 * rng.uniform(0.6, 1.0) * penalty
                entries.append(Entry(Replacement(i, i + 2, f"merged_{kind}", {"width": round(f, 4), "v": v}),
                                     dict(zip(KEYS, (pair * fr).tolist())), {"kl": float(kl)}))
            else:
                kl = sens[i] * (1 - f) ** 1.5 * rng.uniform(0.8, 1.2) * penalty
                entries.append(Entry(Replacement(i, i + 1, kind, {"width": round(f, 4), "v": v}),
                                     dict(zip(KEYS, (base * fr).tolist())), {"kl": float(kl)}))
    fixed = {"params": 2e6, "macs": 1e8, "latency_ms": 0.5}
    return Library("synthetic", layers, entries, fixed)


@contextlib.contextmanager
def _quiet_stdout():
    """HiGHS 1.12 prints some debug lines with C printf; send fd 1 to /dev/null while it runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--per-layer", type=int, default=20)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one synthetic library per seed")
    parser.add_argument("--costs", choices=["correlated", "independent"], default="correlated")
    args = parser.parse_args(argv)
    rows, medians = [], []
    for seed in args.seeds:
        library = synthetic_library(args.layers, args.per_layer, seed, args.costs)
        teacher = {k: library.teacher_cost(k) for k in KEYS}
        for share in args.shares:
            limits = {k: share * teacher[k] for k in KEYS}
            times, sol = [], None
            with _quiet_stdout():
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    sol = solve(library, limits)
                    times.append(time.perf_counter() - t0)
                base = greedy(library, limits)
            medians.append(statistics.median(times))
            rows.append({"seed": seed, "share": share, "median_s": round(medians[-1], 4), "max_s": round(max(times), 4),
                         "status": sol.status, "objective": round(sol.objective, 6),
                         "greedy_objective": round(base.objective, 6),
                         "fits": all(sol.costs[k] <= limits[k] * (1 + 1e-9) for k in KEYS),
                         "two_layer_spans_chosen": sum(e.replacement.width == 2 for e in sol.chosen)})
    median = statistics.median(medians)
    print(json.dumps({"bench": "puzzle_mip", "layers": args.layers, "per_layer": args.per_layer,
                      "entries": len(library.entries),
                      "two_layer_entries": sum(e.replacement.width == 2 for e in library.entries),
                      "costs": args.costs, "constraints": list(KEYS), "repeats": args.repeats,
                      "median_s": round(median, 4), "worst_budget_median_s": round(max(medians), 4),
                      "target_s": 1.0, "meets_target": median <= 1.0, "budgets": rows,
                      "python": platform.python_version(), "scipy": scipy.__version__,
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                      "command": " ".join(["python", *sys.argv])}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
