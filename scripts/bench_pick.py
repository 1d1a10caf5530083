"""Does the student `studentnas search` ranks first distil better than the ones a user would pick by hand?

Issue 13's end-to-end target, measured with a KD ground truth's own teacher and recipe:

1. `studentnas search` under --budget (default 25%MACs of the teacher) with the default objective (or
   --proxy) picks its top student (rank 1 of the run's front);
2. the by-hand picks under the same budget: the largest-#params student (exact: every arch of the space is
   costed when it has at most 2 million, else the largest of 100,000 uniform draws), and --random N students
   drawn uniformly from the space until N fit the budget (seeded);
3. every one of them is distilled by `studentnas bench kd` with the ground truth's recipe (teacher, epochs,
   images, lr, temperature, weights, batch size, image size) on --seeds, resumable with --resume;
4. the JSON reports each student's mean KD top-1 and the margins: top pick minus the random students' mean
   and minus the largest-#params student (target: >= 0.5 points each).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_pick.py --ground-truth studentnas/assets/kd_truth/kd_ground_truth.json \
        --out /tmp/pick --json pick.json
"""  # noqa: E501

# ruff: noqa: I001 - studentnas must be imported first (torchvision shim)
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import studentnas  # noqa: F401
from studentnas.core.budget import Budget
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError
from studentnas.engine.search import search
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.studies.kd_builder import bench_kd

TARGET_MARGIN = 0.5
EXHAUSTIVE = 2_000_000
DRAWS = 100_000


def _random_students(space: Any, budget: Budget, input_size: tuple[int, int, int], num_classes: int, n: int,
                     seed: int, skip: set[str]) -> list[Any]:
    """``n`` distinct archs drawn uniformly from ``space`` that fit ``budget`` (rejection sampling)."""
    rng, found = np.random.default_rng(seed), {}
    for _ in range(100_000):
        arch = space.sample(rng)
        if arch.id not in skip and arch.id not in found and budget.satisfied(space.cost(arch, input_size,
                                                                                         num_classes)):
            found[arch.id] = arch
            if len(found) == n:
                return list(found.values())
    raise BadInputError(f"only {len(found)} of {n} random students fit the budget after 100000 draws")


def _largest_params(space: Any, budget: Budget, input_size: tuple[int, int, int], num_classes: int,
                    seed: int) -> Any:
    """The arch of most parameters that fits ``budget`` (fewer MACs on a tie): every arch of the space when it
    has at most :data:`EXHAUSTIVE` of them, else the best of :data:`DRAWS` uniform draws."""
    genes = space.genes()
    names = [g.name for g in genes]
    if math.prod(len(g.choices) for g in genes) <= EXHAUSTIVE:
        archs = (space.make(**dict(zip(names, values))) for values in itertools.product(*[g.choices for g in genes]))
    else:
        rng = np.random.default_rng(seed)
        archs = (space.sample(rng) for _ in range(DRAWS))
    best, key = None, None
    for arch in archs:
        cost = space.cost(arch, input_size, num_classes)
        if budget.satisfied(cost) and (key is None or (cost.params, -cost.macs) > key):
            best, key = arch, (cost.params, -cost.macs)
    if best is None:
        raise BadInputError(f"no arch of space {space.name} fits budget {budget.describe()}")
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ground-truth", required=True, help="kd_ground_truth.json whose teacher and recipe to use")
    parser.add_argument("--budget", default="25%MACs", help="the search budget (default: 25%%MACs of the teacher)")
    parser.add_argument("--proxy", default=None, help="the search's objective (default: studentnas search's)")
    parser.add_argument("--candidates", type=int, default=200, help="candidates per search (default 200)")
    parser.add_argument("--random", type=int, default=4, help="random students under the budget (default 4)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the searches and the random draw")
    parser.add_argument("--workers", type=int, default=None, help="parallel trainings (default: every CPU)")
    parser.add_argument("--out", required=True, help="folder for the searches and the trainings")
    parser.add_argument("--resume", action="store_true", help="continue the trainings in --out")
    parser.add_argument("--json", required=True, help="the result")
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        truth = json.loads(Path(args.ground_truth).read_text())
        teacher, recipe = truth["teacher"], truth["recipe"]
        kd = recipe["kd"]
        kd_loss = next(loss for loss in kd["losses"] if loss["name"] == "kd")
        out = Path(args.out)
        image = int(truth["image_size"])
        common = {"teacher": teacher["name"], "budget": args.budget, "teacher_checkpoint": teacher["checkpoint"],
                  "image_size": image, "candidates": args.candidates, "seed": args.seed, "quiet": True,
                  "resume": True}
        picked = search(**common, proxy=args.proxy, out=out / "search")
        top, space = picked.pareto[0], picked.space
        budget = Budget.parse([args.budget]).resolve(Cost.from_dict(picked.config["teacher_cost"]))
        input_size, classes = (3, image, image), int(truth["num_classes"])
        big = _largest_params(space, budget, input_size, classes, args.seed)
        randoms = _random_students(space, budget, input_size, classes, args.random, args.seed, {top.id, big.id})
        roles = {big.id: "largest #params", top.id: "top pick"}
        roles.update({a.id: f"random {i + 1}" for i, a in enumerate(randoms)})
        named = [json.dumps(a.to_dict()) for a in [top.arch, big, *randoms]]
        doc = bench_kd(teacher=teacher["name"], teacher_checkpoint=teacher["checkpoint"], out=out / "kd",
                       named=list(dict.fromkeys(named)), students=0, seeds=args.seeds, epochs=kd["epochs"],
                       lr=kd["lr"], temperature=kd_loss["T"], kd_weight=kd_loss["weight"],
                       ce_weight=kd["ce_weight"], batch_size=kd["batch_size"], train_images=recipe["train_images"],
                       test_images=recipe["test_images"], data=truth["data"], image_size=image,
                       seed=recipe["seed"], resume=args.resume or (out / "kd" / "config.json").is_file(),
                       workers=args.workers, quiet=False)
    except BadInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    students = {s["id"]: s for s in doc["students"]}

    def mean(arch_id: str) -> float:
        return float(students[arch_id]["kd_top1_mean"])

    random_means = [mean(a.id) for a in randoms]
    result = {
        "ground_truth": args.ground_truth, "budget": args.budget, "proxy": picked.objective,
        "teacher": teacher["name"], "teacher_top1": teacher.get("test_top1"), "seeds": args.seeds,
        "students": [{"role": roles[s["id"]], "id": s["id"], "label": s["label"], "macs": s["macs"],
                      "params": s["params"], "kd_top1": s["kd_top1"], "kd_top1_mean": s["kd_top1_mean"],
                      "kd_top1_std": s["kd_top1_std"]} for s in doc["students"]],
        "search_run": str(picked.path), "top_pick": mean(top.id), "largest_params": mean(big.id),
        "random_mean": statistics.fmean(random_means),
        "margin_vs_random": mean(top.id) - statistics.fmean(random_means),
        "margin_vs_largest_params": mean(top.id) - mean(big.id), "target_margin": TARGET_MARGIN,
        "wall_s": time.perf_counter() - started,
    }
    result["met"] = bool(result["margin_vs_random"] >= TARGET_MARGIN
                         and result["margin_vs_largest_params"] >= TARGET_MARGIN)
    write_json_atomic(Path(args.json), result)
    for s in sorted(result["students"], key=lambda s: -s["kd_top1_mean"]):
        print(f"{s['role']:<16} {s['label']:<40} {s['macs'] / 1e6:6.2f} MMACs {s['params'] / 1e3:7.1f} K params "
              f"KD top-1 {s['kd_top1_mean']:.2f} +- {s['kd_top1_std'] or 0.0:.2f}")
    print(f"top pick ({picked.objective}) {result['top_pick']:.2f}; random mean {result['random_mean']:.2f} "
          f"(margin {result['margin_vs_random']:+.2f}); largest #params {result['largest_params']:.2f} "
          f"(margin {result['margin_vs_largest_params']:+.2f}); target >= +{TARGET_MARGIN}: "
          f"{'met' if result['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
