"""Fit the ``zc_ensemble`` proxy's calibration from a ``studentnas bench proxies`` result, on tune cells only.

Reads OUT.json of a ground-truth benchmark, fits rank-combination weights of --members on its tune
cells (``studentnas.bench.ensemble.fit_rank_weights``, the same procedure as ``--fit``), and writes a
calibration JSON: the weights and each member's sorted scores on the tune cells (the reference the
proxy's percentiles are taken against). Report cells are never read. Prints a JSON summary.

    .venv/bin/python scripts/fit_ensemble.py /work/bench_runs/quality_cifar10.json \
        --members meco,nwot,synflow,zico,jacov,snip --out studentnas/assets/zc_ensemble_nb201.json
"""

# ruff: noqa: I001 - studentnas must be imported first (torchvision shim)
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

import studentnas  # noqa: F401
from studentnas.bench.ensemble import fit_rank_weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench_json", help="output of studentnas bench proxies (ground-truth mode)")
    parser.add_argument("--members", required=True, help="comma list of candidate member proxies")
    parser.add_argument("--out", required=True, help="calibration JSON to write")
    args = parser.parse_args()
    result = json.loads(Path(args.bench_json).read_text())
    tune = [r for r in result["per_arch"] if r["split"] == "tune" and r["accuracy"] is not None]
    members = [m.strip() for m in args.members.split(",") if m.strip()]
    missing = [m for m in members if any(m not in r["scores"] for r in tune)]
    if missing:
        print(f"error: {missing} not scored in {args.bench_json}", file=sys.stderr)
        return 2

    def column(name: str) -> np.ndarray:
        return np.array([r["scores"][name] if r["scores"][name] is not None else np.nan for r in tune])

    fit = fit_rank_weights({m: column(m) for m in members}, np.array([r["accuracy"] for r in tune]))
    reference = {m: sorted(float(v) for v in column(m) if np.isfinite(v)) for m in fit.weights}
    cfg = result["config"]
    payload = {"weights": fit.weights, "reference": reference,
               "source": {"bench": Path(args.bench_json).name, "dataset": cfg["dataset"], "split": "tune",
                          "n_tune": fit.n_tune, "split_seed": cfg["split_seed"], "sample_seed": cfg["sample_seed"],
                          "data": cfg["data"]["spec"], "batch_size": cfg["batch_size"],
                          "tune_spearman": fit.tune_spearman, "candidates": members}}
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, out)
    print(json.dumps({"weights": fit.weights, "tune_spearman": fit.tune_spearman, "n_tune": fit.n_tune,
                      "single_spearman": fit.single_spearman, "out": str(out)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
