"""Resident memory while the zero-cost suite scores many distinct NB201 cells; prints JSON.

Scores ``--cells`` sampled cells one after another, as the evaluator does (one ``for_candidate`` view
per cell, channels_last students), and records the resident set size every ``--every`` cells. A leak
shows as a steady climb after the first few hundred cells; the allocator's plateau does not.

Example:
    .venv/bin/python scripts/check_proxy_memory.py --cells 2000 --batch 16 --size 16
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

import studentnas  # noqa: F401  (torchvision shim first)
from studentnas import get_proxy, get_space
from studentnas.core.proxy import ProxyContext

SUITE = ("synflow", "snip", "grasp", "fisher", "grad_norm", "plain", "l2_norm", "jacov", "nwot", "epe_nas",
         "zen", "zico", "meco")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--proxies", default=",".join(SUITE))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    proxies = [get_proxy(name) for name in args.proxies.split(",") if name]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    ctx = replace(ProxyContext(images, torch.arange(args.batch) % 10, 10), suite=tuple(p.name for p in proxies))
    samples, start, failures = [], time.perf_counter(), 0
    for i in range(1, args.cells + 1):
        arch = space.sample(rng)
        torch.manual_seed(i)
        net = space.build(arch, num_classes=10).to(memory_format=torch.channels_last)
        view = ctx.for_candidate(space.cost(arch, (3, args.size, args.size)))
        for proxy in proxies:
            failures += not np.isfinite(proxy.score(net, view))
        if i % args.every == 0:
            gc.collect()
            samples.append({"cells": i, "rss_mb": round(rss_mb(), 1), "seconds": round(time.perf_counter() - start, 1)})
    rss = [s["rss_mb"] for s in samples]
    half = len(rss) // 2
    result = {"cells": args.cells, "batch": args.batch, "input": [3, args.size, args.size],
              "non_finite_scores": failures, "rss_first_half_max_mb": max(rss[:half] or rss),
              "rss_second_half_max_mb": max(rss[half:]), "samples": samples}
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
