"""Benchmark of the DisWOT proxy on the resnet101 query: seconds per candidate and the teacher's share.

Teacher ``resnet101`` (random init, seed 0), students sampled from the ``resnet`` space under the MAC
budget at 224x224, built as the evaluator builds them (seeded by arch id, channels_last), a
calibration batch from the shipped sample. Prints JSON.

  HF_HUB_OFFLINE=1 python scripts/bench_diswot.py [--candidates 5] [--budget-gmacs 5] [--proxies diswot]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import studentnas as sn
from studentnas.core.proxy import ProxyContext
from studentnas.data import images as data_mod
from studentnas.data.teachers import load_teacher
from studentnas.engine.evaluate import build_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--budget-gmacs", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--proxies", default="diswot", help="comma list, scored together per candidate")
    args = parser.parse_args()
    size = (3, 224, 224)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher = load_teacher("resnet101")
    images = data_mod.load_images(None, limit=args.batch_size)
    batch, labels = data_mod.calibration_batch(images, args.batch_size, size, teacher.mean, teacher.std, seed=0)
    batch = batch.contiguous(memory_format=torch.channels_last)
    ctx = ProxyContext(batch, labels, teacher.num_classes, teacher=teacher.model, teacher_trained=teacher.trained)
    proxies = [sn.get_proxy(name) for name in args.proxies.split(",")]
    space, rng = sn.get_space("resnet"), np.random.default_rng(0)
    rows = []
    while len(rows) < args.candidates:
        arch = space.sample(rng)
        cost = space.cost(arch, size, teacher.num_classes)
        if cost.macs >= args.budget_gmacs * 1e9:
            continue
        t0 = time.perf_counter()
        student = build_student(space, arch, 0, teacher.num_classes, 3).to(memory_format=torch.channels_last)
        build = time.perf_counter() - t0
        teacher_before = ctx.teacher_seconds
        t0 = time.perf_counter()
        view = ctx.for_candidate(cost)
        scores = {p.name: p.score(student, view) for p in proxies}
        seconds = time.perf_counter() - t0
        rows.append({"arch": arch.id, "gmacs": round(cost.macs / 1e9, 3), "build_s": round(build, 3),
                     "score_s": round(seconds, 3), "teacher_s": round(ctx.teacher_seconds - teacher_before, 3),
                     "scores": scores})
    later = rows[1:] or rows
    print(json.dumps({
        "teacher": "resnet101", "input_size": size, "batch_size": args.batch_size, "proxies": args.proxies,
        "threads": torch.get_num_threads(), "candidates": rows,
        "first_candidate_s": rows[0]["score_s"], "first_candidate_teacher_s": rows[0]["teacher_s"],
        "later_mean_s": round(sum(r["score_s"] for r in later) / len(later), 3),
        "later_teacher_s": round(sum(r["teacher_s"] for r in later), 6),
        "mean_s_all": round(sum(r["score_s"] for r in rows) / len(rows), 3),
        "teacher_share_all": round(ctx.teacher_seconds / sum(r["score_s"] for r in rows), 3),
    }, indent=1))


if __name__ == "__main__":
    main()
