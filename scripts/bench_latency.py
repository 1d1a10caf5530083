"""Benchmark of the per-layer latency estimate against measured batch-1 CPU latency. Prints JSON.

For each space, N distinct random archs (seeded) are estimated (sum of per-layer times from the
lookup table, timing layers the table lacks) and then measured (median of --repeats forward passes
after --warmup, --threads torch threads, channels_last). Reported per space: Spearman and Kendall
rank correlation of estimate vs measurement, the measured/estimated ratio, seconds per arch to
estimate with the table cold (as it fills) and warm (every layer known) vs to measure (build +
timing), and a pre-filter simulation: the budget is the median measured latency, the estimator is
calibrated on the first --calibrate archs, and the rest are counted as rightly or wrongly rejected.
A fresh cache is used unless --cache is given, so every number is measured in this run. The load
average before and after is included: timings on a busy machine are noisy.

  python scripts/bench_latency.py [--n 30] [--spaces nb201,resnet] [--resnet-image-size 224] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
from scipy import stats

import studentnas as sn
from studentnas.hardware.latency import LatencyCache, LatencyMeter
from studentnas.hardware.latency_table import LatencyEstimator

INPUTS = {"nb201": ((3, 32, 32), 10), "resnet": ((3, 224, 224), 1000)}


def bench_space(name: str, input_size: tuple[int, int, int], num_classes: int, args: argparse.Namespace,
                cache: LatencyCache) -> dict:
    space = sn.get_space(name)
    rng = np.random.default_rng(args.seed)
    archs = list({a.id: a for a in (space.sample(rng) for _ in range(10 * args.n))}.values())[: args.n]
    estimator = LatencyEstimator(threads=args.threads, cache=cache)
    meter = LatencyMeter(threads=args.threads, repeats=args.repeats, warmup=args.warmup, cache=cache)
    estimates, measured, cold_s, measure_s = [], [], [], []
    for arch in archs:
        t0 = time.perf_counter()
        estimates.append(estimator.estimate_ms(space, arch, input_size, num_classes))
        cold_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        measured.append(meter.measure(space, arch, input_size, num_classes))
        measure_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for arch in archs:
        estimator.estimate_ms(space, arch, input_size, num_classes)
    warm_s = (time.perf_counter() - t0) / len(archs)
    ratios = [m / e for m, e in zip(measured, estimates)]
    # pre-filter simulation: budget = median measured latency; calibrate on the first archs, filter the rest
    limit = statistics.median(measured)
    for e, m in zip(estimates[: args.calibrate], measured[: args.calibrate]):
        estimator.observe(e, m)
    scale = min(estimator.ratios)
    rest = list(zip(estimates[args.calibrate:], measured[args.calibrate:]))
    rejected = [(e, m) for e, m in rest if e * scale > limit * (1 + args.margin)]
    return {
        "archs": len(archs), "input_size": list(input_size), "num_classes": num_classes,
        "spearman": round(float(stats.spearmanr(estimates, measured).statistic), 4),
        "kendall": round(float(stats.kendalltau(estimates, measured).statistic), 4),
        "measured_ms": {"min": round(min(measured), 3), "median": round(limit, 3), "max": round(max(measured), 3)},
        "measured_over_estimate": {"min": round(min(ratios), 3), "median": round(statistics.median(ratios), 3),
                                   "max": round(max(ratios), 3)},
        "seconds_per_arch": {"estimate_cold_table": round(statistics.mean(cold_s), 4),
                             "estimate_warm_table": round(warm_s, 6), "measure": round(statistics.mean(measure_s), 4)},
        "measure_over_warm_estimate": round(statistics.mean(measure_s) / warm_s),
        "layers_in_table": estimator.layers_timed,
        "prefilter": {"budget_ms": round(limit, 3), "margin": args.margin, "calibrated_on": args.calibrate,
                      "scale": round(scale, 3), "filtered": len(rest), "over_budget": sum(m > limit for _, m in rest),
                      "rejected": len(rejected), "rejected_but_within_budget": sum(m <= limit for _, m in rejected)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="random archs per space (default: 30)")
    parser.add_argument("--spaces", default="nb201,resnet", help="comma list (default: nb201,resnet)")
    parser.add_argument("--resnet-image-size", type=int, default=224, help="resnet input resolution (default: 224)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing (default: 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed forward passes per arch (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forward passes first (default: 3)")
    parser.add_argument("--calibrate", type=int, default=5, help="archs the pre-filter is calibrated on")
    parser.add_argument("--margin", type=float, default=0.2, help="pre-filter margin over the budget (default: 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="latency cache file to use and keep (default: a fresh temporary one)")
    args = parser.parse_args()
    inputs = dict(INPUTS)
    inputs["resnet"] = ((3, args.resnet_image_size, args.resnet_image_size), 1000)
    cache = LatencyCache(args.cache or os.path.join(tempfile.mkdtemp(), "latency.json"))
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = {name: bench_space(name, *inputs[name], args, cache) for name in args.spaces.split(",")}
    print(json.dumps({"spaces": results, "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
                      "cpu_count": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                      "load_average_after": [round(x, 2) for x in os.getloadavg()],
                      "seconds": round(time.perf_counter() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
