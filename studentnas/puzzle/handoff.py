"""Puzzle students as a run directory for ``studentnas distill``, and the global KD that goes through it.

For every budget that an image-teacher run realises, ``OUT/puzzle/candidates/<budget>/`` is a run
directory like a search's (``run.json``, ``candidates.jsonl``, ``pareto.json``; :mod:`studentnas.engine.rundir`).
Its candidates are the budget's MIP, greedy and random selections, as archs of the ``puzzle`` space
(``search_spaces/puzzle.py``), which builds them with their BLD weights. Their scores are the
qualities measured before global KD: ``puzzle_neg_kl`` (minus the KL to the teacher on the test
samples; the front's objective) and ``puzzle_top1``. ``run.json`` says which selection each one is.

So ``studentnas distill OUT/puzzle/candidates/50pctmacs --top 2 --trials 8 --data fashion-mnist`` tunes
and distils them like searched students. The pipeline's own short global KD (METHODS.md §3.8) is
:func:`global_kd`: one trial of that same command with the fixed recipe :data:`GKD_RECIPE`, on
``OUT/puzzle/gkd/<budget>/``, a run directory that holds the MIP student alone (a distill folder keeps
one set of students, so the user's distillation and the pipeline's never share one).

Example:
    >>> sorted(GKD_RECIPE)
    ['ce_weight', 'loss', 'lr', 'momentum', 'temperature', 'weight_decay']
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from studentnas.core.candidate import Candidate
from studentnas.core.pareto import front
from studentnas.engine.rundir import JOURNAL, RUN_JSON, RunDir
from studentnas.runfiles.atomic import write_atomic, write_json_atomic

SCORE, TOP1 = "puzzle_neg_kl", "puzzle_top1"
CANDIDATES_DIR, GKD_DIR = "candidates", "gkd"
# Hinton KD at T = 1 plus half cross-entropy, SGD with cosine LR (studentnas.distill.hparams keys)
GKD_RECIPE: dict[str, Any] = {"lr": 0.01, "weight_decay": 5e-4, "momentum": 0.9, "temperature": 1.0,
                              "ce_weight": 0.5, "loss": "kd"}


Selection = tuple[str, Any, Mapping[str, float]]  # (role, replacements, measured quality)


def write_candidates_run(folder: str | Path, space: Any, teacher: Any, selections: Sequence[Selection], *,
                         data: str | None, seed: int, budget: Sequence[str]) -> dict[str, str]:
    """Write the run directory of one budget's selections; returns each selection's arch id.

    ``selections`` are ``(role, replacements, quality)``: ``role`` names the selection (``mip``,
    ``greedy``, ``random1`` ...), ``quality`` is :func:`studentnas.puzzle.scoring.evaluate_model`'s
    result (``kl``, ``acc``). Equal selections become one candidate with every role. The files are
    rewritten whole (atomically) on every call, so a resumed run leaves the same directory.
    """
    folder = Path(folder)
    cands: dict[str, Candidate] = {}
    roles: dict[str, list[str]] = {}
    ids: dict[str, str] = {}
    for role, replacements, quality in selections:
        arch = space.arch_of(replacements)
        ids[role] = arch.id
        roles.setdefault(arch.id, []).append(role)
        if arch.id not in cands:
            scores = {SCORE: -float(quality["kl"]), **({TOP1: float(quality["acc"])} if "acc" in quality else {})}
            cands[arch.id] = Candidate(arch, space.cost(arch), scores, created_at=time.time())
    config = {"kind": "puzzle", "teacher": teacher.name, "teacher_checkpoint": teacher.checkpoint,
              "pretrained": False, "space": space.config(), "proxies": [SCORE, TOP1], "front_objectives": [SCORE,
              "macs"], "input_size": list(teacher.input_shape), "data": data, "seed": seed, "budget": list(budget),
              "roles": roles}
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / RUN_JSON, config)
    lines = "".join(c.to_json() + "\n" for c in cands.values())
    write_atomic(folder / JOURNAL, lambda tmp: Path(tmp).write_text(lines))
    RunDir(folder).write_pareto(front(list(cands.values()), [SCORE, "macs"]), SCORE, [SCORE, "macs"], space)
    return ids


def global_kd(folder: str | Path, arch_id: str, data: str, *, epochs: int, train_images: int,
              test_images: int | None, seed: int, ray_address: str | None = None,
              quiet: bool = True) -> tuple[Path, dict[str, Any]]:
    """Distil candidate ``arch_id`` of ``folder`` with ``studentnas distill`` (one trial of
    :data:`GKD_RECIPE`, FIFO, ``train_images`` training images of ``data``); resumes a finished or
    interrupted one. Returns the exported student's path and its ``results.json`` entry."""
    from studentnas.distill import distill

    folder = Path(folder)
    recipe = folder / "gkd_recipe.json"
    write_json_atomic(recipe, GKD_RECIPE)
    started = time.perf_counter()
    result = distill(folder, data, ids=[arch_id], epochs=epochs, trials=1, search_space=recipe, scheduler="fifo",
                     ray_address=ray_address, resume=(folder / "distill" / "distill.json").is_file(),
                     train_images=train_images, test_images=test_images, seed=seed, quiet=quiet)
    entry = result.results["students"][0]
    kd = entry["kd"] or {}
    if "file" not in kd:
        raise RuntimeError(f"global KD of {arch_id} in {folder} finished no trial: {kd.get('error', kd)}")
    info = {"engine": "studentnas distill", "run": str(folder), "student": arch_id, "epochs": epochs,
            "train_images": result.results["train_images"], "images": epochs * result.results["train_images"],
            "recipe": GKD_RECIPE,
            "distill_test_top1": kd.get("test_top1"), "results": str(result.path),
            "seconds": time.perf_counter() - started}
    return Path(kd["file"]), info
