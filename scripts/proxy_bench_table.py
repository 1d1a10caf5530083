"""Markdown tables for BENCHMARKS.md from ``studentnas bench proxies`` JSON outputs (no scoring, reads only).

For each ground-truth result: Spearman on all cells, on the report cells and on the tune cells,
Kendall and top-10% hit rate (all cells), seconds per cell, next to the published figure where one
is known (Abdelfattah et al. 2021 / NASWOT, all 15,625 cells). Also prints the #params Spearman of
the same sample next to its value over all 15,625 cells, which measures how "easy" the sample is.

    .venv/bin/python scripts/proxy_bench_table.py /work/bench_runs/quality_cifar10.json [...]
"""

# ruff: noqa: I001 - studentnas must be imported first (torchvision shim)
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

import studentnas  # noqa: F401
from studentnas.bench import ground_truth as gt
from studentnas.bench.correlation import spearman
from studentnas.core.registry import SPACES

# Published Spearman over all NB201 cells (CIFAR-10, CIFAR-100), as quoted by the issue.
PUBLISHED = {"synflow": (0.74, 0.76), "nwot": (0.79, 0.81), "jacov": (0.73, 0.70)}


def population_params_spearman(dataset: str, csv: str) -> float:
    """Spearman of #params with test accuracy over every cell of the ground truth (analytic, exact)."""
    truth, _ = gt.load_ground_truth(csv, dataset)
    space = SPACES.get("nb201")()
    archs = sorted(truth)
    params = [space.cost(space.from_string(a), gt.INPUT_SIZE[dataset], gt.NUM_CLASSES[dataset]).params for a in archs]
    return spearman(np.array(params, dtype=float), np.array([truth[a] for a in archs]))


def fmt(value: object) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.3f}"
    return "-" if value is None else str(value)


def table(path: Path, csv: str) -> str:
    result = json.loads(path.read_text())
    cfg = result["config"]
    dataset = cfg["dataset"]
    column = {"cifar10": 0, "cifar100": 1}.get(dataset)
    lines = [f"**{dataset}**, {cfg['cells']} cells ({cfg['n_report']} report / {cfg['n_tune']} tune), data: "
             f"{cfg['data']['source']}, batch {cfg['batch_size']}, `{path.name}`", "",
             "| proxy | Spearman, all | report cells | tune cells | Kendall, all | top-10% hit, all | s/cell | "
             "published |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in result["summary_all"].items():
        published = PUBLISHED.get(name, (None, None))[column] if column is not None else None
        lines.append(f"| {name} | {fmt(entry['spearman'])} | {fmt(result['summary'][name]['spearman'])} | "
                     f"{fmt(result['summary_tune'][name]['spearman'])} | {fmt(entry['kendall'])} | "
                     f"{fmt(entry['top_hit'])} | {fmt(entry['seconds_per_arch'])} | {fmt(published)} |")
    sample = result["summary_all"]["params"]["spearman"]
    population = population_params_spearman(dataset, csv)
    lines += ["", f"#params: Spearman {sample:.3f} on this sample vs {population:.3f} over all "
                  f"{15625} cells (the sample is {sample - population:+.3f} 'easier')."]
    if cfg.get("fit"):
        fit = cfg["fit"]
        lines.append(f"Fitted on the {fit['n_tune']} tune cells: `{fit['name']}` (tune Spearman "
                     f"{fit['tune_spearman']:.3f}); its report-cell Spearman is in the table.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--ground-truth", default="../shared/reference/nb201/nats_bench.csv")
    args = parser.parse_args()
    print("\n\n".join(table(p, args.ground_truth) for p in args.results))


if __name__ == "__main__":
    main()
