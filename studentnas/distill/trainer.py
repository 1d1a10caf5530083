"""The training loop of ``studentnas distill`` and ``studentnas teacher train``: one plain PyTorch loop,
run as is in this process and, unchanged, inside each Ray Tune trial.

Per step: the teacher (eval mode, under ``torch.no_grad``) gives logits, and features when a loss
needs them, or its logits come from an on-disk cache (:func:`cached_teacher_logits`); the student's
loss is ``ce_weight * CE(label smoothing) + sum_i weight_i * KD_i``, composed by
:func:`studentnas.distill.losses.compose_losses` from the config's weighted loss list; SGD
with Nesterov momentum and a per-step cosine learning rate from ``lr`` to 0. After every epoch the
student is evaluated on the validation batches (loss, top-1, top-5), a checkpoint is written
atomically to ``checkpoint_dir/trainer.pt`` (model, optimizer, schedule, loss connectors, history),
and ``on_epoch(stats, checkpoint_dir)`` is called: inside Ray it calls ``tune.report``.

Deterministic for a seed: each epoch's batch order and augmentation are drawn from a generator seeded
by (seed, epoch), and the epoch runs under its own forked torch RNG seeded the same way, so a run
resumed from the checkpoint of epoch k ends with the same weights as an uninterrupted one (same
thread count).

Example:
    >>> from studentnas import get_space
    >>> from studentnas.data.images import load_images
    >>> data = load_images(None, limit=40)
    >>> batches = Batches(data, (3, 16, 16), (0.5,), (0.5,), batch_size=20)
    >>> student = get_space("nb201").build(get_space("nb201").smallest(), num_classes=10)
    >>> result = train(student, batches, batches, TrainConfig(epochs=1, lr=0.01))
    >>> [sorted(k for k in result.history[0] if k.startswith("val_"))]
    [['val_loss', 'val_top1', 'val_top5']]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.data.images import to_tensor
from studentnas.distill.batches import Batches, seed_of
from studentnas.distill.evaluation import evaluate, topk_correct
from studentnas.distill.objective import build_objective, model_outputs
from studentnas.distill.train_config import TrainConfig, loss_kinds
from studentnas.runfiles.atomic import write_atomic

CHECKPOINT = "trainer.pt"


@dataclass
class TrainResult:
    """The trained student (its last epoch's weights) and one stats dict per epoch."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    objective: nn.Module | None = None
    resumed_from_epoch: int = 0

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


EpochHook = Callable[[dict[str, Any], Path | None], None]


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def _lr_factor(step: int, total: int) -> float:
    """Cosine schedule from 1 (step 0) to 0 (after the last step)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))


def train(student: nn.Module, train_batches: Batches, val_batches: Batches | None, config: TrainConfig, *,
          teacher: nn.Module | None = None, teacher_logits: torch.Tensor | None = None,
          checkpoint_dir: str | Path | None = None, on_epoch: EpochHook | None = None,
          threads: int | None = None) -> TrainResult:
    """Train ``student`` in place for ``config.epochs`` epochs (see the module docstring).

    Args:
        train_batches: shuffled (and possibly augmented) training batches; their ``batch_size`` is used.
        val_batches: evaluated after every epoch (``val_*`` stats), or None.
        teacher: needed when ``config.losses`` is not empty, unless ``teacher_logits`` covers them.
        teacher_logits: cached logits, one row per training image in data order (see
            :func:`cached_teacher_logits`); the teacher then runs only for feature losses.
        checkpoint_dir: where ``trainer.pt`` is written each epoch; an existing one whose config
            matches is resumed from (a different config is bad input).
        on_epoch: called with each epoch's stats and ``checkpoint_dir`` once the checkpoint is written.
        threads: torch CPU threads for this run (default: leave as is).
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    kinds = loss_kinds(config)
    uses_teacher = config.needs_teacher
    use_cache = teacher_logits is not None and uses_teacher
    teacher_runs = uses_teacher and (not use_cache or bool(set(kinds) - {"logits", "labels"}))
    if teacher_runs and teacher is None:
        raise BadInputError(f"the losses {[s['name'] for s in config.losses]} need the teacher's "
                            f"{'features' if use_cache else 'outputs'}; pass teacher=")
    if use_cache:
        if train_batches.augment:
            raise BadInputError("cached teacher logits need fixed inputs, but the training batches are augmented; "
                                "turn augmentation or the cache off")
        if teacher_logits.shape[0] != len(train_batches.data):
            raise BadInputError(f"cached teacher logits have {teacher_logits.shape[0]} rows for "
                                f"{len(train_batches.data)} training images; rebuild the cache")
    student.to(memory_format=torch.channels_last)
    if teacher is not None and teacher_runs:
        teacher.eval()
        teacher.to(memory_format=torch.channels_last)
        for p in teacher.parameters():
            p.requires_grad_(False)
    example = None
    if set(kinds) - {"logits", "labels"}:
        first = train_batches.data.images[: min(len(train_batches.data), train_batches.batch_size, 16)]
        example = to_tensor(first, train_batches.input_size, train_batches.mean, train_batches.std)
        example = example.contiguous(memory_format=torch.channels_last)
    objective = build_objective(config, student, teacher if teacher_runs else None, example)
    params = [*student.parameters(), *objective.parameters()]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                nesterov=config.momentum > 0)
    steps = len(train_batches)
    total_steps = steps * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total_steps))
    result = TrainResult(model=student, objective=objective)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    start = 0
    if ckpt_path is not None and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state["config"] != config.to_dict():
            raise BadInputError(f"checkpoint '{ckpt_path}' was written by another training config; delete "
                                f"'{ckpt_path.parent}' to start afresh, or resume with the same settings")
        student.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        result.history = list(state["history"])
        start = result.resumed_from_epoch = int(state["epoch"])
    run_teacher = teacher if teacher_runs else None
    for epoch in range(start, config.epochs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_of("epoch", config.seed, epoch))
            stats = _train_epoch(student, train_batches, epoch, objective, kinds, optimizer, schedule,
                                 run_teacher, teacher_logits if use_cache else None)
        stats.update(epoch=epoch + 1, teacher_cached=use_cache)
        if val_batches is not None:
            stats.update({f"val_{k}": v for k, v in evaluate(student, val_batches).items()})
        result.history.append(stats)
        if ckpt_path is not None:
            _write_checkpoint(ckpt_path, {"config": config.to_dict(), "epoch": epoch + 1,
                                          "model": student.state_dict(), "objective": objective.state_dict(),
                                          "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                                          "history": result.history})
        if on_epoch is not None:
            on_epoch(dict(stats), ckpt_path.parent if ckpt_path is not None else None)
    return result


def _train_epoch(student: nn.Module, batches: Batches, epoch: int, objective: nn.Module, kinds: tuple[str, ...],
                 optimizer: torch.optim.Optimizer, schedule: Any, teacher: nn.Module | None,
                 teacher_logits: torch.Tensor | None) -> dict[str, Any]:
    from studentnas.distill.losses import ModelOutputs

    student.train()
    objective.train()
    sums: dict[str, float] = {}
    correct = seen = 0
    lr = optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    for index, x, y in batches.epoch(epoch):
        x = x.contiguous(memory_format=torch.channels_last)
        t_out = None
        if teacher is not None:
            with torch.no_grad():
                t_out = model_outputs(teacher, x, kinds)
        if teacher_logits is not None:
            t_out = t_out or ModelOutputs()
            t_out.logits = teacher_logits[index]
        s_out = model_outputs(student, x, kinds)
        loss, parts = objective(s_out, t_out, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss.item()} at epoch {epoch + 1} "
                                     f"(parts: { {k: float(v) for k, v in parts.items()} }); lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        n = len(y)
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * n
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + float(value) * n
        correct += topk_correct(s_out.logits.detach(), y, 1)
        seen += n
    seconds = time.perf_counter() - t0
    stats: dict[str, Any] = {f"train_{k}": v / seen for k, v in sums.items()}
    stats.update(train_top1=100.0 * correct / seen, lr=lr, train_seconds=seconds,
                 train_images_per_s=seen / seconds if seconds > 0 else float("inf"))
    return stats
