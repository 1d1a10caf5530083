"""Seconds per NB201 cell for the whole zero-cost suite, split per pass; prints JSON.

The suite is scored as the evaluator scores it: one ``for_candidate`` view per cell, the proxies in
order, the student in channels_last. Each proxy's time is charged to the pass it reads (the first
reader pays for the pass, later readers cost microseconds), and the shared train-mode copy is timed
on its own.

Example:
    .venv/bin/python scripts/bench_zero_cost.py --cells 20 --batch 64 --size 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

import studentnas  # noqa: F401  (torchvision shim first)
from studentnas import get_proxy, get_space
from studentnas.core.proxy import ProxyContext
from studentnas.scoring import passes

# proxy -> the pass it reads (its time is charged there: the first reader pays the pass; jacov pays the
# input-gradient backward of the jacobian pass, which nwot alone never runs)
PASS_OF = {"snip": "gradient", "grad_norm": "gradient", "plain": "gradient", "fisher": "gradient",
           "grasp": "grasp", "nwot": "jacobian", "jacov": "jacobian", "epe_nas": "jacobian",
           "synflow": "synflow", "zen": "zen", "zico": "zico", "meco": "meco", "l2_norm": "weights only"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = get_space("nb201")
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.cells + 1)]
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    ctx = ProxyContext(images.contiguous(memory_format=torch.channels_last), torch.arange(args.batch) % 10, 10)
    ctx = replace(ctx, suite=tuple(PASS_OF))  # as LocalEvaluator sets it
    proxies = [get_proxy(name) for name in PASS_OF]
    per_pass = {"train_copy": 0.0, **{p: 0.0 for p in PASS_OF.values()}}
    for i, arch in enumerate(archs):  # the first cell warms up and is not counted
        torch.manual_seed(i)
        net = space.build(arch, num_classes=10).to(memory_format=torch.channels_last)
        view = ctx.for_candidate(space.cost(arch, (3, args.size, args.size)))
        t0 = time.perf_counter()
        passes.train_copy(net, view)
        spent = {"train_copy": time.perf_counter() - t0}
        for proxy in proxies:
            t0 = time.perf_counter()
            proxy.score(net, view)
            spent[PASS_OF[proxy.name]] = spent.get(PASS_OF[proxy.name], 0.0) + time.perf_counter() - t0
        if i:
            for key, value in spent.items():
                per_pass[key] += value
    total = sum(per_pass.values()) / args.cells
    result = {"cells": args.cells, "batch": args.batch, "input": [3, args.size, args.size], "threads": args.threads,
              "seconds_per_cell": round(total, 3),
              "seconds_per_cell_by_pass": {k: round(v / args.cells, 4) for k, v in per_pass.items()}}
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
