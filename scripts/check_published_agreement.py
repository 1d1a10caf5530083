"""Spearman agreement of our zero-cost scores with NASLib's published NB201 values; prints JSON.

Each sampled cell is built with ``space.build(arch, num_classes=10)`` under ``torch.manual_seed(0)`` and
scored on 64 stratified Fashion-MNIST training images (3 x 32 x 32, mean 0.5, std 0.25). Non-finite
scores become -1e8, as NASLib's predictor does. This is a quick standalone check; ``studentnas bench
proxies`` is the full benchmark.

Example:
    .venv/bin/python scripts/check_published_agreement.py --cells 150 --threads 2
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import studentnas  # noqa: F401  (torchvision shim first)
from studentnas import get_proxy, get_space
from studentnas.core.proxy import ProxyContext
from studentnas.data import images as data

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/nb201/naslib_zc_nasbench201.json"
PUBLISHED = ("synflow", "snip", "grasp", "fisher", "grad_norm", "plain", "l2_norm", "jacov", "nwot", "epe_nas")
TARGETS = {"synflow": 0.95, "nwot": 0.85, "jacov": 0.85}


def finite(value: float) -> float:
    return value if math.isfinite(value) else -1e8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or ImageNet16-120")
    parser.add_argument("--cells", type=int, default=150)
    parser.add_argument("--proxies", default=",".join(PUBLISHED))
    parser.add_argument("--seed", type=int, default=0, help="seed of the cell sample")
    parser.add_argument("--batch", type=int, default=64, help="calibration images")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = json.loads(args.reference.read_text())[args.dataset]
    keys = sorted(table)
    picked = [keys[i] for i in np.random.default_rng(args.seed).choice(len(keys), min(args.cells, len(keys)),
                                                                        replace=False)]
    images = data.load_images("fashion-mnist", split="train", limit=args.batch, seed=0)
    x, y = data.calibration_batch(images, n=args.batch, input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3,
                                  seed=0)
    space = get_space("nb201")
    names = [n for n in args.proxies.split(",") if n]
    ctx = replace(ProxyContext(x.contiguous(memory_format=torch.channels_last), y, 10), suite=tuple(names))
    proxies = [get_proxy(n) for n in names]
    ours: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, float] = {n: 0.0 for n in names}
    start = time.perf_counter()
    for key in picked:
        arch = space.from_naslib_tuple(ast.literal_eval(key))
        torch.manual_seed(0)
        net = space.build(arch, num_classes=10).to(memory_format=torch.channels_last)
        view = ctx.for_candidate(space.cost(arch))
        for proxy in proxies:
            t0 = time.perf_counter()
            ours[proxy.name].append(finite(proxy.score(net, view)))
            seconds[proxy.name] += time.perf_counter() - t0
    result = {"dataset": args.dataset, "cells": len(picked), "batch": args.batch, "threads": args.threads,
              "seconds_per_cell": round((time.perf_counter() - start) / len(picked), 3),
              "seconds_per_cell_by_proxy": {n: round(s / len(picked), 4) for n, s in seconds.items()},
              "spearman": {}}
    for name in names:
        if name not in PUBLISHED:
            continue
        theirs = [finite(float(table[k][name]["score"])) for k in picked]
        rho = float(spearmanr(ours[name], theirs).statistic)
        result["spearman"][name] = {"rho": round(rho, 4), "target": TARGETS.get(name)}
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
