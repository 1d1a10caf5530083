"""Realising a Puzzle choice: assemble the student from BLD weights, recalibrate BN, export, global KD.

* :func:`realise` builds the :class:`~studentnas.puzzle.decompose.Assembled` student from the chosen
  replacements with their BLD weights; prefix and suffix are copies of the teacher's, so training the
  student never touches the teacher.
* :func:`recalibrate_bn` re-estimates every BatchNorm's running statistics on training samples
  (cumulative average, no gradient): stitched blocks were trained on the teacher's activations, so
  their statistics drift once they feed each other (METHODS.md §3.9).
* :func:`export_puzzle_student` writes ``<name>.safetensors`` + ``<name>.json`` (kind ``puzzle-student``:
  teacher, family, chosen replacements, costs, quality) and :func:`rebuild_puzzle_student` rebuilds the
  module from them (registered for :func:`studentnas.load_model`).
* :func:`global_kd_lm` is the short global distillation of LM students (METHODS.md §3.8):
  KL(teacher || student) on next-byte logits with AdamW. Image students are distilled by
  ``studentnas distill`` itself (:mod:`studentnas.puzzle.handoff`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    >>> recalibrate_bn(net, torch.randn(40, 1, 4, 4) * 3 + 1, batch_size=8)
    >>> round(float(net[1].running_var.mean()), 1) > 1.0, net.training
    (True, False)
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.puzzle.bld import kl_logits, load_trained
from studentnas.puzzle.decompose import Assembled, Decomposed, Family, family_for, ordered_cover
from studentnas.puzzle.library import Replacement
from studentnas.puzzle.samples import TeacherSpec
from studentnas.runfiles.models import MODEL_KINDS, load_weights, read_model_meta, write_model


def realise(dec: Decomposed, family: Family, chosen: Sequence[Replacement], root: str | Path | None) -> Assembled:
    """The student for ``chosen`` (covering every layer once) with the BLD weights of the run in ``root``
    (``None``: the family's initialisation from the parent layers), independent of the teacher; eval mode."""
    order = ordered_cover(chosen, len(dec.layers))
    blocks = [family.build(dec, rep) if root is None else load_trained(dec, family, rep, root) for rep in order]
    student = Assembled(copy.deepcopy(dec.prefix), blocks, copy.deepcopy(dec.suffix),
                        [(r.start, r.end) for r in order], dec.num_features)
    for p in student.parameters():
        p.requires_grad_(True)
    return student.eval()


def recalibrate_bn(model: nn.Module, inputs: torch.Tensor, batch_size: int = 64, max_batches: int = 200) -> None:
    """Reset and re-estimate BatchNorm running statistics on ``inputs`` (no-op without BatchNorm)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        model.eval()
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    model.train()
    with torch.no_grad():
        for i, start in enumerate(range(0, len(inputs), batch_size)):
            if i >= max_batches:
                break
            model(inputs[start : start + batch_size])
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


def export_puzzle_student(out: str | Path, student: Assembled, spec: TeacherSpec, family: str,
                          chosen: Sequence[Replacement], info: dict[str, Any]) -> Path:
    """Write the student's weights and a JSON sidecar that :func:`rebuild_puzzle_student` rebuilds it from."""
    meta = {"teacher": spec.to_dict(), "family": family,
            "replacements": [r.to_dict() for r in sorted(chosen, key=lambda r: r.start)],
            "input_shape": list(spec.input_shape), **info}
    write_model(out, student, meta, kind="puzzle-student")
    return Path(out)


def load_puzzle_student(path: str | Path) -> Assembled:
    """Rebuild an exported Puzzle student; :func:`studentnas.load_model` loads it (and any other kind) too."""
    meta = read_model_meta(path)
    if meta.get("kind") != "puzzle-student":
        raise BadInputError(f"'{path}' is not a Puzzle student (its kind is {meta.get('kind')!r}); "
                            "load it with studentnas.load_model")
    return rebuild_puzzle_student(Path(path), meta)


@MODEL_KINDS.register("puzzle-student")
def rebuild_puzzle_student(path: Path, meta: dict[str, Any]) -> Assembled:
    """A Puzzle student: the teacher's architecture is rebuilt and decomposed, the chosen replacements
    built in its place, and the weights of ``path`` loaded."""
    spec = TeacherSpec.from_dict({**meta["teacher"], "checkpoint": None})
    model = spec.load()
    family = family_for(model, meta["family"])
    dec = family.decompose(model, spec.input_shape)
    chosen = [Replacement.from_dict(r) for r in meta["replacements"]]
    student = Assembled(copy.deepcopy(dec.prefix), [family.build(dec, r) for r in chosen], copy.deepcopy(dec.suffix),
                        [(r.start, r.end) for r in chosen], dec.num_features)
    return load_weights(student, path)


def global_kd_lm(student: nn.Module, teacher: nn.Module, sequences: torch.Tensor, *, steps: int, batch_size: int = 16,
                 lr: float = 3e-4, seed: int = 0) -> dict[str, Any]:
    """KL(teacher || student) on next-byte logits over random windows of ``sequences`` (AdamW, cosine LR)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    teacher.eval()
    student.train()
    start, curve = time.perf_counter(), []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
        index = torch.randint(len(sequences), (min(batch_size, len(sequences)),), generator=gen)
        x = sequences[index]
        with torch.no_grad():
            target = teacher(x)
        loss = kl_logits(student(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.append(loss.item())
    student.eval()
    return {"steps": steps, "tokens": steps * min(batch_size, len(sequences)) * sequences.shape[1],
            "final_kl": curve[-1] if curve else None, "seconds": time.perf_counter() - start}
