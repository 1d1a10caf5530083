"""Choose `studentnas search`'s default objective from a KD ground truth, and check it on other benchmarks.

Reads the JSON of `studentnas bench proxies --ground-truth kd_ground_truth.json` (every proxy scored on every
student, students split into tune and report halves by a hash of their id), fits the choice on the tune half
only (studentnas.bench.objective_choice: single proxies and log-linear blends params:1+X:w ranked by pairwise
accuracy among students of MACs within --band), and reports the chosen objective beside every single proxy on
the report half. Each --judge BENCH.json (e.g. an NB201 `bench proxies` run) reports the chosen objective
beside params there. Writes --json and prints a table.

    .venv/bin/python scripts/choose_objective.py kd_proxies.json --judge nb201_proxies.json --json choice.json
    .venv/bin/python scripts/choose_objective.py kd_proxies.json --objective params:1+snip:0.5   # judge one, no fit
"""

# ruff: noqa: I001 - studentnas must be imported first (torchvision shim)
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import studentnas  # noqa: F401
from studentnas.bench.correlation import band_tag
from studentnas.bench.objective_choice import CHOICE_BAND, choose_objective, judge_objective
from studentnas.core.errors import BadInputError
from studentnas.runfiles.atomic import write_json_atomic


def _line(name: str, f: dict[str, Any], band: float) -> str:
    def num(v: Any, d: int = 3) -> str:
        return f"{v:.{d}f}" if isinstance(v, float) and math.isfinite(v) else "-"

    tags = [band_tag(band), band_tag(2 * band)]
    pairs = "  ".join(f"{num(f[f'pairwise_{t}'])} ({f[f'pairs_{t}']:>3})" for t in tags)
    return (f"  {name:<28} {pairs}  tau {num(f['kendall'])}  rho {num(f['spearman'])}  "
            f"regret@1 {num(f['regret_at_1'], 2)}  regret@5 {num(f['regret_at_5'], 2)}  n {f['n']}")


def _rows(path: str) -> list[dict[str, Any]]:
    try:
        return json.loads(Path(path).read_text())["per_arch"]
    except (OSError, ValueError, KeyError) as err:
        raise BadInputError(f"'{path}' is not a `studentnas bench proxies` result ({type(err).__name__}); pass the "
                            "file its --json wrote") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kd_bench", help="`bench proxies` JSON over a KD ground truth")
    parser.add_argument("--objective", help="judge this objective instead of fitting one (e.g. params:1+snip:0.5)")
    parser.add_argument("--judge", action="append", default=[], help="another `bench proxies` JSON to check on")
    parser.add_argument("--band", type=float, default=CHOICE_BAND, help="MACs band of the choice (default 0.1)")
    parser.add_argument("--json", required=True, help="where to write the choice")
    args = parser.parse_args()
    try:
        rows = _rows(args.kd_bench)
        doc: dict[str, Any] = {"kd_bench": args.kd_bench, "band": args.band}
        head = f"pairs@{band_tag(args.band)}%  pairs@{band_tag(2 * args.band)}% MACs (pair counts)"
        if args.objective:
            objective = args.objective
            doc["kd"] = judge_objective(rows, objective, args.band)
        else:
            choice = choose_objective(rows, args.band)
            objective = choice["chosen"]["name"]
            doc["choice"] = choice
            print(f"tune half ({choice['n_tune']} students), best 10 of {len(choice['tune'])} candidates; {head}")
            for name, f in list(choice["tune"].items())[:10]:
                print(_line(name, f, args.band))
            print(f"report half ({choice['n_report']} students, never read by the choice): chosen {objective}")
            tag = f"pairwise_{band_tag(args.band)}"
            for name, f in sorted(choice["report"].items(),
                                  key=lambda kv: -kv[1][tag] if math.isfinite(kv[1][tag]) else 1.0):
                print(_line(name, f, args.band))
        doc["objective"] = objective
        doc["judged"] = {}
        for path in [args.kd_bench] * bool(args.objective) + args.judge:
            judged = judge_objective(_rows(path), objective, args.band)
            doc["judged"][path] = judged
            for split, figures in judged.items():
                print(f"{path} [{split}]: {head}")
                for name, f in figures.items():
                    print(_line(name, f, args.band))
        write_json_atomic(Path(args.json), doc)
    except BadInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
