"""Benchmark of analytic cost(): archs per second for each registered space, against the time to
build the same archs as modules (the baseline, measured in the same run). Prints JSON.

  python scripts/bench_cost.py [--archs 2000] [--builds 10]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import studentnas as sn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=2000)
    parser.add_argument("--builds", type=int, default=10)
    args = parser.parse_args()
    results = {}
    for name in sn.list_spaces():
        space = sn.get_space(name)
        rng = np.random.default_rng(0)
        archs = list({a.id: a for a in (space.sample(rng) for _ in range(args.archs))}.values())
        start = time.perf_counter()
        for arch in archs:
            space.cost(arch)
        cold = len(archs) / (time.perf_counter() - start)
        start = time.perf_counter()
        for arch in archs:
            space.cost(arch)
        warm = len(archs) / (time.perf_counter() - start)
        start = time.perf_counter()
        for arch in archs[: args.builds]:
            space.build(arch)
        build_per_s = args.builds / (time.perf_counter() - start)
        results[name] = {"archs": len(archs), "cost_archs_per_s_uncached": round(cold),
                         "cost_archs_per_s_cached": round(warm), "build_archs_per_s": round(build_per_s, 2),
                         "speedup_over_build": round(cold / build_per_s)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
