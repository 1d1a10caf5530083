"""Replace-one-block scoring: how much the teacher changes when only one replacement stands in.

For a replacement over parent layers ``[s, e)`` the teacher's cached hidden state entering layer ``s``
(score set, float32) runs through the replacement and then the rest of the teacher (layers ``e ..``
and the head). Against the teacher's own logits on the same samples this gives (METHODS.md §3.4):

* ``kl``: KL(teacher || child) at temperature 1, per sample (per token for LMs), averaged; the MIP's
  default objective, lower is better. The teacher's own block scores ~0 (measured, not assumed);
* ``acc``: top-1 accuracy against the labels (images) or the next byte (LMs), higher is better;
* ``loss``: cross-entropy against the same targets.

:func:`evaluate_model` measures the same quantities for a whole network (the teacher, or an assembled
student) from raw inputs, so scores of blocks and of assembled students are on one scale.

Each replacement's scores are journalled in ``RUN/puzzle/scores.jsonl`` (:func:`scores_journal`, one
``{"id", "label", "status", "quality"}`` line each, fsynced); a resumed run scores only what is missing
(:func:`journalled_scores`). The journal is a cache: lines that do not read are named with their
numbers in one warning and those replacements scored again.

Example:
    >>> import torch
    >>> t = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> m = quality_from_logits(t, t, torch.tensor([0, 0]))
    >>> round(m["kl"], 6), m["acc"]
    (0.0, 50.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.console import warn
from studentnas.puzzle.activations import ActivationStore
from studentnas.puzzle.decompose import Decomposed
from studentnas.puzzle.library import Replacement
from studentnas.runfiles.journal import Journal

SCORES = "scores.jsonl"


def _score_row(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not isinstance(value.get("status"), str):
        raise TypeError("a score row is a JSON object with 'id' and 'status' strings")
    return value


def scores_journal(root: str | Path) -> Journal[dict[str, Any]]:
    """The scoring journal ``root/scores.jsonl`` of a Puzzle run folder."""
    return Journal(Path(root) / SCORES, parse=_score_row)


def journalled_scores(journal: Journal[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{replacement id: its last score row}``; lines that do not read are named in one warning and left
    out (their replacements are scored again). A line cut short by a kill is left out silently."""
    rows, bad = journal.scan()
    if bad:
        warn(f"ignored {len(bad)} unreadable line(s) of '{journal.path}': {'; '.join(bad)}; those replacements are "
             "scored again (remove the lines to silence this)")
    return {row["id"]: row for row in rows}


class _Totals:
    def __init__(self) -> None:
        self.kl = self.loss = 0.0
        self.correct = self.count = 0

    def add(self, student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor | None) -> None:
        s = F.log_softmax(student.reshape(-1, student.shape[-1]).float(), dim=-1)
        t = F.log_softmax(teacher.reshape(-1, teacher.shape[-1]).float(), dim=-1)
        self.kl += float((t.exp() * (t - s)).sum())
        if targets is not None:
            flat = targets.reshape(-1)
            self.loss += float(F.nll_loss(s, flat, reduction="sum"))
            self.correct += int((s.argmax(-1) == flat).sum())
        self.count += s.shape[0]

    def result(self, with_targets: bool) -> dict[str, float]:
        out = {"kl": max(0.0, self.kl / self.count)}
        if with_targets:
            out["acc"] = 100.0 * self.correct / self.count
            out["loss"] = self.loss / self.count
        return out


def quality_from_logits(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor | None) -> dict[str, float]:
    """``kl`` (and ``acc``/``loss`` with targets) of ``student`` logits against ``teacher`` logits."""
    totals = _Totals()
    totals.add(student, teacher, targets)
    return totals.result(targets is not None)


def lm_targets(tokens: torch.Tensor) -> tuple[slice, torch.Tensor]:
    """For LM windows: the positions that have a next byte inside the window, and those next bytes."""
    return slice(0, tokens.shape[1] - 1), tokens[:, 1:]


def score_replacement(module: nn.Module, dec: Decomposed, rep: Replacement, store: ActivationStore,
                      inputs: torch.Tensor, labels: torch.Tensor | None, *, is_lm: bool,
                      batch_size: int = 64) -> dict[str, float]:
    """Quality of the teacher with only ``rep`` (as ``module``) substituted, on the cached score set."""
    module.eval()
    totals = _Totals()
    n = store.shape(rep.start)[0]
    with torch.no_grad():
        for start in range(0, n, batch_size):
            index = slice(start, min(n, start + batch_size))
            hidden = store.batch(rep.start, index)
            logits = dec.run_from(rep.end, module(hidden))
            teacher = store.batch("logits", index)
            if is_lm:
                keep, targets = lm_targets(inputs[index])
                totals.add(logits[:, keep], teacher[:, keep], targets)
            else:
                totals.add(logits, teacher, None if labels is None else labels[index])
    return totals.result(is_lm or labels is not None)


def evaluate_model(model: nn.Module, teacher: nn.Module, inputs: torch.Tensor, labels: torch.Tensor | None, *,
                   is_lm: bool, batch_size: int = 64, teacher_logits: torch.Tensor | None = None) -> dict[str, Any]:
    """``kl`` to ``teacher`` and ``acc``/``loss`` of a whole network on ``inputs`` (eval mode, no grad)."""
    was = model.training
    model.eval()
    totals = _Totals()
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size]
            out = model(x)
            ref = teacher(x) if teacher_logits is None else teacher_logits[start : start + batch_size]
            if is_lm:
                keep, targets = lm_targets(x)
                totals.add(out[:, keep], ref[:, keep], targets)
            else:
                totals.add(out, ref, None if labels is None else labels[start : start + batch_size])
    model.train(was)
    return totals.result(is_lm or labels is not None)
