"""Blockwise local distillation (BLD): each replacement learns its parent layers from the teacher's activations.

A replacement covering parent layers ``[s, e)`` gets the teacher's hidden state entering layer ``s``
and is trained to output the teacher's hidden state leaving layer ``e - 1`` (METHODS.md §3.3), so every
(layer, replacement) training is independent of every other: they run as Ray tasks, in any order, on
any node that sees the run directory. Inputs and targets are read from the on-disk activation cache
(:class:`~studentnas.puzzle.activations.ActivationStore`), a batch at a time.

* **Loss** (:data:`BLD_LOSSES`): ``nmse`` ``||y - t||^2 / (||t||^2 + 1e-6)`` per sample, averaged (the
  default); ``cosine`` ``1 - cos(y, t)`` of the flattened per-sample tensors; ``kl``: for spans that end
  at the last layer, KL(teacher || child) of the logits after the teacher's own head (temperature 1);
  other spans fall back to ``nmse``.
* **Budget**: ``budget`` samples seen per replacement (images, or sequences of the LM's context: tokens
  = budget x context), drawn without replacement per step from the cached set; AdamW with linear
  warm-up (5 % of the steps) and cosine decay to 10 % of ``lr``.
* **BatchNorm** layers train in train mode (batch statistics); afterwards their running statistics are
  re-estimated on the teacher's inputs, so that eval mode matches what the weights were trained under.
* **Held-out**: the normalised MSE on the ``score`` set's activations is recorded as ``nmse``.
* **Resumable**: the result of each replacement is ``bld/<id>.safetensors`` plus ``bld/<id>.json``, both
  written atomically; a finished replacement is never retrained. ``teacher`` entries are the parent
  itself and ``noop``/parameter-free ones have nothing to train: they get their held-out loss only.

Example:
    >>> import torch
    >>> round(float(BLD_LOSSES.get("nmse")(torch.ones(2, 3), torch.full((2, 3), 2.0))), 4)
    0.25
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.candidate import ray_worker_name
from studentnas.core.errors import BadInputError
from studentnas.core.registry import Registry
from studentnas.puzzle.activations import ActivationStore
from studentnas.puzzle.decompose import Decomposed, Family, family_for
from studentnas.puzzle.library import Replacement
from studentnas.puzzle.samples import TeacherSpec
from studentnas.runfiles.atomic import write_atomic, write_json_atomic

BLD_LOSSES: Registry = Registry("BLD loss")
EPS = 1e-6


@BLD_LOSSES.register("nmse")
def nmse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||out - target||^2 / (||target||^2 + eps)``, averaged over the batch."""
    diff = (out - target).flatten(1).pow(2).sum(1)
    return (diff / (target.flatten(1).pow(2).sum(1) + EPS)).mean()


@BLD_LOSSES.register("cosine")
def cosine(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` of the flattened per-sample tensors, averaged over the batch."""
    return (1 - F.cosine_similarity(out.flatten(1), target.flatten(1), dim=1, eps=EPS)).mean()


def kl_logits(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) at temperature 1, summed over classes and averaged over samples (and tokens)."""
    s = F.log_softmax(student.reshape(-1, student.shape[-1]).float(), dim=-1)
    t = F.log_softmax(teacher.reshape(-1, teacher.shape[-1]).float(), dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean()


@dataclass(frozen=True)
class BLDConfig:
    """How each replacement is trained; ``budget`` is samples seen (images or LM sequences)."""

    budget: int = 4096
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "nmse"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("budget", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise BadInputError(f"BLD {name} {value!r}: must be a whole number >= 1, e.g. --bld-budget 4096")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise BadInputError(f"BLD lr {self.lr!r}: must be a positive number, e.g. --bld-lr 1e-3")
        if self.loss not in ("nmse", "cosine", "kl"):
            raise BadInputError(f"BLD loss '{self.loss}': must be nmse, cosine or kl (kl applies to the last layer)")

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.budget / self.batch_size))


@dataclass(frozen=True)
class BLDJob:
    """One replacement's training, self-contained so a Ray worker can run it anywhere."""

    root: str  # RUN/puzzle
    teacher: dict[str, Any]  # TeacherSpec.to_dict()
    family: str
    replacement: dict[str, Any]
    config: dict[str, Any]  # BLDConfig as a dict
    threads: int = 1


_CONTEXTS: dict[str, tuple[Decomposed, Family]] = {}


def teacher_context(teacher: dict[str, Any], family: str) -> tuple[Decomposed, Family]:
    """The decomposed teacher for this process, built once per (teacher, family) and reused."""
    key = json.dumps([teacher, family], sort_keys=True)
    if key not in _CONTEXTS:
        spec = TeacherSpec.from_dict(teacher)
        model = spec.load()
        fam = family_for(model, family)
        _CONTEXTS[key] = (fam.decompose(model, spec.input_shape), fam)
    return _CONTEXTS[key]


def result_paths(root: str | Path, rep: Replacement) -> tuple[Path, Path]:
    folder = Path(root) / "bld"
    return folder / f"{rep.id}.safetensors", folder / f"{rep.id}.json"


def finished(root: str | Path, rep: Replacement) -> dict[str, Any] | None:
    """The stored result of ``rep``'s BLD, or None when it has not finished."""
    weights, meta = result_paths(root, rep)
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    return data if (weights.is_file() or not data.get("has_weights", True)) else None


def _lr_at(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def heldout_loss(module: nn.Module, dec: Decomposed, rep: Replacement, store: ActivationStore,
                 batch_size: int = 64) -> float:
    """The normalised MSE of ``module`` on ``store``'s activations (sample-weighted mean)."""
    n = store.shape(rep.start)[0]
    total = 0.0
    module.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            index = slice(start, min(n, start + batch_size))
            x, y = store.batch(rep.start, index), store.batch(rep.end, index)
            total += float(nmse(module(x), y)) * (index.stop - index.start)
    return total / n


def _save(path: Path, module: nn.Module) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    write_atomic(path, lambda tmp: save_file(state, tmp))


def _recalibrate_bn(module: nn.Module, store: ActivationStore, layer: int, batch_size: int,
                    max_batches: int = 32) -> None:
    """Re-estimate the module's BatchNorm statistics on the teacher's inputs after training, so that
    eval mode (scoring, the assembled student) sees the statistics the weights were trained under."""
    from studentnas.puzzle.realise import recalibrate_bn

    n = store.shape(layer)[0]
    rows = min(n, batch_size * max_batches)
    recalibrate_bn(module, store.batch(layer, slice(0, rows)), batch_size=batch_size)


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def train_replacement(job: BLDJob) -> dict[str, Any]:
    """Train one replacement (or only measure it, for teacher/no-op entries) and store the result.

    A replacement whose training fails (a non-finite loss, a shape it cannot handle) is stored with
    ``status`` 'failed: reason' and no weights; the MIP then leaves it out and the run goes on.
    """
    import studentnas._compat  # noqa: F401 - Ray workers need the torchvision shim before timm

    torch.set_num_threads(job.threads)
    rep = Replacement.from_dict(job.replacement)
    done = finished(job.root, rep)
    if done is not None:
        return done
    try:
        return _train(job, rep)
    except (FloatingPointError, RuntimeError, ValueError) as err:
        meta = {"id": rep.id, "label": rep.label, "replacement": rep.to_dict(), "has_weights": False,
                "status": f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}
        write_json_atomic(result_paths(job.root, rep)[1], meta)
        return meta


def _train(job: BLDJob, rep: Replacement) -> dict[str, Any]:
    config = BLDConfig(**job.config)
    dec, family = teacher_context(job.teacher, job.family)
    train_store, score_store = ActivationStore(job.root, "bld"), ActivationStore(job.root, "score")
    start = time.perf_counter()
    torch.manual_seed(int.from_bytes(bytes.fromhex(rep.id)[:6], "big") ^ config.seed)
    module = family.build(dec, rep)
    params = [] if rep.is_teacher else _trainable(module)
    curve: list[float] = []
    use_kl = config.loss == "kl" and rep.end == len(dec.layers)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = BLD_LOSSES.get(
        "nmse" if config.loss == "kl" else config.loss)
    if params:
        n = train_store.shape(rep.start)[0]
        rng = np.random.default_rng([config.seed, int(rep.id, 16) % 2**32])
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        warmup = max(1, config.steps // 20)
        batch = min(config.batch_size, n)
        module.train()
        for p in dec.suffix.parameters():
            p.requires_grad_(False)
        for step in range(config.steps):
            for group in opt.param_groups:
                group["lr"] = config.lr * _lr_at(step, config.steps, warmup)
            index = np.sort(rng.choice(n, size=batch, replace=False))
            x = train_store.batch(rep.start, index)
            out = module(x)
            if use_kl:
                loss = kl_logits(dec.suffix(out), train_store.batch("logits", index))
            else:
                loss = loss_fn(out, train_store.batch(rep.end, index))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"BLD loss became {float(loss)} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            curve.append(loss.item())
    if params:
        _recalibrate_bn(module, train_store, rep.start, config.batch_size)
    weights, meta_path = result_paths(job.root, rep)
    weights.parent.mkdir(parents=True, exist_ok=True)
    has_weights = bool(params)
    if has_weights:
        _save(weights, module)
    stride = max(1, len(curve) // 50)
    meta = {"id": rep.id, "label": rep.label, "replacement": rep.to_dict(), "has_weights": has_weights,
            "status": "ok", "nmse": heldout_loss(module, dec, rep, score_store), "steps": len(curve),
            "samples_seen": len(curve) * (min(config.batch_size, train_store.shape(rep.start)[0]) if curve else 0),
            "loss": config.loss if params else None, "loss_curve": curve[::stride],
            "final_train_loss": curve[-1] if curve else None, "seconds": time.perf_counter() - start,
            "config": asdict(config), "worker": ray_worker_name()}
    write_json_atomic(meta_path, meta)
    return meta


def load_trained(dec: Decomposed, family: Family, rep: Replacement, root: str | Path) -> nn.Module:
    """``rep``'s module with its BLD weights (the parent's own for teacher entries), in eval mode."""
    module = family.build(dec, rep)
    weights, _ = result_paths(root, rep)
    if weights.is_file():
        from safetensors.torch import load_file

        try:
            module.load_state_dict(load_file(str(weights)))
        except Exception as err:  # noqa: BLE001 - a torn or foreign file: retrain it
            raise BadInputError(f"BLD weights {weights} do not load ({type(err).__name__}); delete the file and "
                                "rerun to retrain that replacement") from None
    return module.eval()


def run_bld(jobs: Sequence[BLDJob], *, workers: int = 1, ray_address: str | None = None,
            on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run every job: in this process when ``workers == 1`` and no cluster, else as Ray tasks
    (``workers`` CPUs locally, or the cluster at ``ray_address``). Finished jobs are skipped."""
    todo = [j for j in jobs if finished(j.root, Replacement.from_dict(j.replacement)) is None]
    results = [finished(j.root, Replacement.from_dict(j.replacement)) for j in jobs if j not in todo]
    for meta in results:
        if on_result is not None and meta is not None:
            on_result(meta)
    if workers <= 1 and ray_address is None:
        for job in todo:
            meta = train_replacement(job)
            results.append(meta)
            if on_result is not None:
                on_result(meta)
        return [r for r in results if r is not None]
    import ray

    from studentnas.engine.parallel import init_ray

    owns = not ray.is_initialized()
    if owns:
        init_ray(ray_address, max(1, workers))
    try:
        task = ray.remote(num_cpus=1, max_retries=2)(train_replacement)
        pending = {task.remote(job): job for job in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                pending.pop(ref)
                meta = ray.get(ref)
                results.append(meta)
                if on_result is not None:
                    on_result(meta)
    finally:
        if owns:
            ray.shutdown()
    return [r for r in results if r is not None]
