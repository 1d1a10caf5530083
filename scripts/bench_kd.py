"""``bench kd`` overhead: Ray-parallel training throughput per core against the plain trainer loop.

Issue 13's target: Ray-parallel throughput >= 0.9x of the plain trainer loop per core. The same
trainings (``--students`` students x ``--seeds`` seeds, one fixed KD recipe) are built twice with
:func:`studentnas.studies.kd_builder.bench_kd`, each in a fresh folder:

1. ``--workers 1``: in this process, one training after the other (the plain loop, torch 1 thread);
2. ``--workers W`` on a local Ray: W one-CPU tasks at a time.

Per-core ratio = (plain training seconds / Ray training seconds) / W, from the builder's own
``training_wall_s`` (the training loop only: teacher evaluation and logit caching happen before it in
both runs; Ray's start-up is inside the Ray figure). Beside it, the machine's own W-process ceiling
(:func:`studentnas.hardware.capacity.machine_parallel_capacity`), measured in the same run: on 2
vCPUs that share a core, no W-worker scheme can beat it. The KD accuracies of both runs must be
identical (same seeds), which the JSON also checks.

  OMP_NUM_THREADS=1 python scripts/bench_kd.py --out /tmp/bench_kd --json bench_kd.json

A teacher is trained first (resnet18, Fashion-MNIST at ``--image-size``) unless ``--teacher-checkpoint``. At the
shipped ground truth's size (its teacher, 28 px, 10,000 images; 2 epochs instead of 6 to halve the cost):

  OMP_NUM_THREADS=1 python scripts/bench_kd.py --out /tmp/bench_kd_gt --teacher cifar_resnet20 \
      --teacher-checkpoint studentnas/assets/cifar_resnet20_fashion_mnist.safetensors --image-size 28 \
      --epochs 2 --train-images 10000 --test-images 2000 --json bench_kd_gt.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import studentnas  # noqa: F401  (the torchvision shim first)
from studentnas.core.errors import BadInputError
from studentnas.distill.teacher_train import train_teacher
from studentnas.hardware.capacity import machine_parallel_capacity
from studentnas.studies.kd_builder import bench_kd


def _tops(doc: dict[str, Any]) -> list[Any]:
    return [(s["id"], s.get("kd_top1")) for s in doc["students"]]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    checkpoint = args.teacher_checkpoint
    if checkpoint is None and args.teacher != "resnet18":
        raise BadInputError(f"--teacher {args.teacher} needs --teacher-checkpoint (only a resnet18 is trained here)")
    if checkpoint is None:
        checkpoint = str(out / "teacher.safetensors")
        if not Path(checkpoint).is_file():
            train_teacher("resnet18", "fashion-mnist", 1, checkpoint, image_size=args.image_size, train_images=1024,
                          test_images=256, seed=0, quiet=True)
    common = dict(teacher=args.teacher, teacher_checkpoint=checkpoint, band=args.band, students=args.students,
                  seeds=args.seeds, epochs=args.epochs, train_images=args.train_images, test_images=args.test_images,
                  image_size=args.image_size, batch_size=64, quiet=True)
    runs = {}
    for name, workers in (("plain", 1), ("ray", args.workers)):
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        runs[name] = bench_kd(out=folder, workers=workers, **common)
    plain, ray = runs["plain"]["training_wall_s"], runs["ray"]["training_wall_s"]
    speedup = plain / ray
    capacity = machine_parallel_capacity(args.workers)
    return {
        "bench": "bench_kd_throughput", "command": " ".join(sys.argv), "workers": args.workers,
        "trainings": runs["plain"]["trained_now"], "epochs": args.epochs, "train_images": args.train_images,
        "plain_training_s": plain, "ray_training_s": ray, "speedup": speedup,
        "per_core_ratio": speedup / args.workers, "target_per_core": 0.9,
        "meets_target": speedup / args.workers >= 0.9, "machine": capacity,
        "share_of_machine_ceiling": speedup / capacity["capacity"],
        "same_accuracies": _tops(runs["plain"]) == _tops(runs["ray"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="scratch folder (the teacher and both builds)")
    p.add_argument("--teacher", default="resnet18", help="the teacher's timm name (default resnet18)")
    p.add_argument("--teacher-checkpoint", help="its weights (default: train a resnet18, 1 epoch)")
    p.add_argument("--test-images", type=int, default=256)
    p.add_argument("--students", type=int, default=4)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-images", type=int, default=1024)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--band", default="10%:40%")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    try:
        result = measure(args)
    except BadInputError as err:
        print(f"bench_kd: error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
