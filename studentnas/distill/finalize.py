"""The end of a student's distillation: its best trial evaluated on the test split and exported with
its sidecar (:func:`finalize_student`), its cost, and the skeleton of ``RUN/distill/results.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from studentnas.core.candidate import Candidate
from studentnas.distill.batches import Batches
from studentnas.distill.evaluation import evaluate
from studentnas.distill.journal import TrialJournal, best_row
from studentnas.distill.prepare import JOURNAL, Prepared
from studentnas.distill.trainer import CHECKPOINT
from studentnas.distill.trial import TrialJob


def student_cost(space: Any, cand: Candidate, input_size: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    """The student's MACs and parameters (``space.cost``) and its measured batch-1 latency in ms."""
    from studentnas.hardware.latency import LatencyMeter

    cost = space.cost(cand.arch, input_size, num_classes)
    latency = LatencyMeter().measure(space, cand.arch, input_size, num_classes)
    return {"macs": cost.macs, "params": cost.params, "latency_ms": latency}


def finalize_student(prep: Prepared, cand: Candidate, mode: str, job: TrialJob, trials: int,
                     cost: dict[str, Any]) -> dict[str, Any] | None:
    """Evaluate the best trial on the test split and export it; the student's entry in results.json."""
    from studentnas.runfiles.models import write_model

    rows = TrialJournal(prep.folder / JOURNAL).rows(cand.id, mode)
    best = best_row(rows, job.epochs)
    summary: dict[str, Any] = {"trials": len(rows), "failed": sum(r["status"] != "ok" for r in rows),
                               "stopped_early": sum(bool(r.get("stopped_early")) for r in rows)}
    if best is None:
        return {**summary, "error": "no trial finished"}
    ckpt = Path(best["checkpoint"])
    ckpt = ckpt if ckpt.is_absolute() else prep.folder / ckpt
    state = torch.load(ckpt / CHECKPOINT, map_location="cpu", weights_only=False)
    model = job.build_student()
    model.load_state_dict(state["model"])
    test = evaluate(model, Batches(prep.test, prep.input_size, prep.teacher.mean, prep.teacher.std,
                                   job.batch_size))
    train_config = job.train_config(best["config"]).to_dict()
    run_cfg = prep.run.config
    out = prep.run.path / "students" / (f"{cand.id}.safetensors" if mode == "kd" else f"{cand.id}-ce.safetensors")
    entry = {**summary, "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
             "val_top1": best["val_top1"], "best_config": best["config"], "train_config": train_config,
             "trial_id": best["trial_id"], "experiment": best["experiment"], "file": str(out)}
    meta = {
        "space": run_cfg["space"], "arch": cand.arch.to_dict(), "label": prep.run.space.format_arch(cand.arch),
        "cost": cost, "scores": dict(cand.scores), "num_classes": job.num_classes, "input_size": list(prep.input_size),
        "teacher": prep.teacher.name, "run": str(prep.run.path), "seed": job.seed,
        "macs": cost["macs"], "params": cost["params"], "latency_ms": cost["latency_ms"],
        "test_top1": test["top1"], "test_top5": test["top5"], "best_config": best["config"],
        "distill": {"mode": mode, **{k: v for k, v in entry.items() if k != "file"}, "data": prep.settings["data"],
                    "classes": prep.settings["classes"], "epochs": job.epochs, "teacher_test_top1":
                    prep.teacher_test.get("top1"), "teacher_checkpoint": prep.teacher.checkpoint},
    }
    write_model(out, model.to(memory_format=torch.contiguous_format), meta, kind="student")
    return entry


def results_skeleton(prep: Prepared, modes: list[str], trials: int, scheduler: str) -> dict[str, Any]:
    """``RUN/distill/results.json`` before any student is finished: status, teacher, data, settings."""
    return {"status": "running", "teacher": {"name": prep.teacher.name, "checkpoint": prep.teacher.checkpoint,
                                             "test_top1": prep.teacher_test.get("top1"),
                                             "test_top5": prep.teacher_test.get("top5")},
            "data": prep.settings["data"], "train_images": len(prep.train), "val_images": len(prep.val),
            "test_images": len(prep.test), "modes": modes, "trials": trials, "epochs": prep.settings["epochs"],
            "scheduler": scheduler, "input_size": list(prep.input_size), "students": []}
