"""Benchmarks of the distillation trainer and the Ray Tune driver. Prints JSON.

1. ``teacher_cache``: training images/s of the same KD epochs with the teacher run on every batch vs
   with its logits read from the on-disk cache, the one-off cost of filling the cache, and what that
   means for ``--trials`` repeated trials (all with one torch thread). The gain grows with the
   teacher's cost relative to the student's training step: the trained resnet18, and each of
   ``--timing-teachers`` (random weights, which do not change the timing).
2. ``ray_overhead``: training images/s of the same loop run plainly in this process vs inside one
   Ray Tune trial (``studentnas.distill.trial.run_trial``, 1 CPU, so 1 torch thread in both),
   alternated ``--repeats`` times so load drifts hit both alike. The target is >= 90 %. The ratio is of
   the medians over epochs 2..E (epoch 1 warms up); the wall times (Tuner.fit includes trial start and
   checkpoint persistence) are reported beside it.
3. ``asha_vs_fifo`` (with ``--tune-seconds S > 0``): Optuna TPE with ASHA and with FIFO, each given the
   same wall time (``TuneConfig.time_budget_s``) and ``--cpus`` concurrent 1-CPU trials: how many
   trials each started and finished, and the best validation top-1 among trials that ran every epoch.

The teacher is ``--teacher-checkpoint`` (a resnet18 trained by ``studentnas teacher train``) or one
trained here first. The machine's load average is included: timings on a shared machine are noisy.

  python scripts/bench_distill.py [--teacher-checkpoint t.safetensors] [--image-size 32] \\
      [--train-images 2000] [--epochs 3] [--tune-seconds 120]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import studentnas as sn
from studentnas.data.images import load_images
from studentnas.data.teachers import load_teacher
from studentnas.distill.batches import Batches, holdout_split
from studentnas.distill.experiment import make_scheduler, make_searcher
from studentnas.distill.hparams import HyperParamSpace
from studentnas.distill.resources import connect_ray
from studentnas.distill.teacher_cache import cached_teacher_logits
from studentnas.distill.teacher_train import train_teacher
from studentnas.distill.train_config import TrainConfig
from studentnas.distill.trainer import train
from studentnas.distill.trial import TrialJob, run_trial

KD = ({"name": "kd", "weight": 0.9, "T": 4.0},)


def _rates(history: list[dict]) -> list[float]:
    return [h["train_images_per_s"] for h in history]


def bench_cache(student_fn, train_b: Batches, teacher, config: TrainConfig, trials: int, folder: Path,
                repeats: int) -> dict:
    """KD epochs with the teacher run on every batch vs with its cached logits, alternated ``repeats`` times."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    logits, _ = cached_teacher_logits(teacher, Batches(train_b.data, train_b.input_size, train_b.mean, train_b.std,
                                                       train_b.batch_size), folder, data_spec="bench")
    fill_s = time.perf_counter() - t0
    with_teacher: list[float] = []
    cached: list[float] = []
    for _ in range(repeats):
        with_teacher += _rates(train(student_fn(), train_b, None, config, teacher=teacher).history)
        cached += _rates(train(student_fn(), train_b, None, config, teacher_logits=logits).history)
    n, epochs = train_b.num_images, config.epochs
    rate_t, rate_c = statistics.median(with_teacher), statistics.median(cached)
    return {
        "images_per_s_with_teacher": rate_t, "images_per_s_cached": rate_c, "speedup": rate_c / rate_t,
        "per_epoch_with_teacher": with_teacher, "per_epoch_cached": cached, "cache_fill_seconds": fill_s,
        "train_images": n, "epochs": epochs, "repeats": repeats, "trials": trials,
        "seconds_for_trials_with_teacher": trials * epochs * n / rate_t,
        "seconds_for_trials_cached": fill_s + trials * epochs * n / rate_c,
    }


def bench_ray(job: TrialJob, student_fn, train_b: Batches, val_b: Batches, storage: Path, repeats: int) -> dict:
    """Alternate plain runs and Ray Tune trials ``repeats`` times (one Ray instance), so that the machine's
    load drifts affect both alike; compare the medians of the per-epoch rates after each run's first epoch."""
    from ray import tune

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    started_ray = connect_ray(None, 1)
    ray_start = time.perf_counter() - t0
    plain_rates: list[list[float]] = []
    ray_rates: list[list[float]] = []
    walls: dict[str, list[float]] = {"plain": [], "tuner_fit": []}
    try:
        for k in range(repeats):
            t0 = time.perf_counter()
            plain = train(student_fn(), train_b, val_b, job.train_config({}), teacher=job.teacher,
                          teacher_logits=job.teacher_logits)
            walls["plain"].append(time.perf_counter() - t0)
            plain_rates.append(_rates(plain.history))
            t0 = time.perf_counter()
            trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), {"cpu": 1})
            grid = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=1),
                              run_config=tune.RunConfig(name=f"overhead-{k}", storage_path=str(storage),
                                                        verbose=0)).fit()
            walls["tuner_fit"].append(time.perf_counter() - t0)
            ray_rates.append([float(v) for v in grid[0].metrics_dataframe["train_images_per_s"]])
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    steady_plain = statistics.median(r for run in plain_rates for r in run[1:] or run)
    steady_ray = statistics.median(r for run in ray_rates for r in run[1:] or run)
    ratio = steady_ray / steady_plain
    return {"images_per_s_plain": plain_rates, "images_per_s_in_ray_trial": ray_rates,
            "median_plain_epochs_2_on": steady_plain, "median_in_ray_epochs_2_on": steady_ray,
            "ratio": ratio, "target": 0.9, "met": ratio >= 0.9, "repeats": repeats, "ray_init_s": ray_start,
            "wall_s": walls}


def bench_schedulers(job: TrialJob, space: HyperParamSpace, seconds: float, cpus: int, storage: Path) -> dict:
    from ray import tune

    out = {}
    started_ray = connect_ray(None, cpus)
    try:
        for name in ("asha", "fifo"):
            searcher, _ = make_searcher(space, job.mode, job.seed, job.student, [])
            trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), {"cpu": 1})
            t0 = time.perf_counter()
            grid = tune.Tuner(trainable, tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=make_scheduler(name, job.epochs), num_samples=1000,
                time_budget_s=seconds), run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0)
            ).fit()
            wall = time.perf_counter() - t0
            finals = [r.metrics for r in grid if r.metrics and r.metrics.get("epoch") == job.epochs]
            out[name] = {"wall_s": wall, "trials_started": len(grid), "trials_full_length": len(finals),
                         "best_val_top1_full_length": max((m["val_top1"] for m in finals), default=None),
                         "best_val_top1_any": max((r.metrics.get("val_top1", 0) for r in grid if r.metrics),
                                                  default=None)}
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-checkpoint", help="a resnet18 trained with `studentnas teacher train`")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--trials", type=int, default=8, help="trials the cache saving is projected onto")
    parser.add_argument("--repeats", type=int, default=3, help="alternations of the compared runs")
    parser.add_argument("--timing-teachers", default="resnet50",
                        help="comma list of other timm teachers to time the cache with (random weights)")
    parser.add_argument("--tune-seconds", type=float, default=0.0, help="wall time per scheduler (0: skip)")
    parser.add_argument("--tune-epochs", type=int, default=4)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="cache,ray,schedulers",
                        help="which benchmarks to run (schedulers also needs --tune-seconds > 0)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="bench_distill_"))
    checkpoint = args.teacher_checkpoint
    teacher_meta = None
    if checkpoint is None:
        checkpoint = folder / "teacher.safetensors"
        teacher_meta = train_teacher("resnet18", "fashion-mnist", 2, checkpoint, image_size=args.image_size,
                                     train_images=5000, test_images=1000, quiet=True)
    teacher = load_teacher("resnet18", checkpoint)
    size = (3, args.image_size, args.image_size)
    data = load_images("fashion-mnist", "train", limit=args.train_images, seed=args.seed)
    train_part, val_part = holdout_split(data, 0.1, args.seed)
    train_b = Batches(train_part, size, teacher.mean, teacher.std, args.batch_size, shuffle=True, seed=args.seed,
                      drop_last=True)
    val_b = Batches(val_part, size, teacher.mean, teacher.std, args.batch_size)
    space = sn.get_space("nb201")
    arch = space.sample(np.random.default_rng(1))

    def student():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            return space.build(arch, num_classes=10)

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.05, losses=KD, ce_weight=0.1)
    result: dict = {"config": {**vars(args), "student": space.format_arch(arch), "teacher": str(checkpoint),
                               "teacher_test_top1": teacher_meta["test_top1"] if teacher_meta else None,
                               "torch": torch.__version__, "cpu_count": os.cpu_count()}}
    if "cache" in parts:
        result["teacher_cache"] = {"resnet18 (trained)": bench_cache(student, train_b, teacher.model, config,
                                                                     args.trials, folder / "cache", args.repeats)}
    import timm  # after studentnas, which installs the torchvision shim

    for name in filter(None, args.timing_teachers.split(",") if "cache" in parts else []):  # timing only
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            other = timm.create_model(name, num_classes=10).eval()
        result["teacher_cache"][f"{name} (random weights, timing only)"] = bench_cache(
            student, train_b, other, config, args.trials, folder / f"cache-{name}", args.repeats)

    fixed = HyperParamSpace.parse({"lr": 0.05, "weight_decay": 5e-4, "temperature": 4.0, "ce_weight": 0.1})
    logits, _ = cached_teacher_logits(teacher.model, Batches(train_part, size, teacher.mean, teacher.std,
                                                             args.batch_size), folder / "cache", data_spec="bench")
    job = TrialJob(student="bench", mode="kd", space_config=space.config(), arch=arch.to_dict(), seed=args.seed,
                   num_classes=10, input_size=size, mean=teacher.mean, std=teacher.std, train=train_part,
                   val=val_part, hparams=fixed, epochs=args.epochs, batch_size=args.batch_size,
                   teacher=teacher.model, teacher_logits=logits)
    # The trial builds its student with build_student (seeded by run seed and arch id): do the same here.
    from studentnas.engine.evaluate import build_student

    if "ray" in parts:
        result["ray_overhead"] = bench_ray(job, lambda: build_student(space, arch, args.seed, 10, 3), train_b, val_b,
                                           folder / "tune", args.repeats)
    if args.tune_seconds > 0 and "schedulers" in parts:
        tuned = TrialJob(**{**job.__dict__, "hparams": HyperParamSpace.parse(None), "epochs": args.tune_epochs})
        result["asha_vs_fifo"] = {"seconds_each": args.tune_seconds, "epochs": args.tune_epochs, "cpus": args.cpus,
                                  **bench_schedulers(tuned, tuned.hparams, args.tune_seconds, args.cpus,
                                                     folder / "tune")}
    result["loadavg_before_after"] = [load_before, os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
