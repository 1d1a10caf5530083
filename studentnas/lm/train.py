"""``studentnas lm train`` and ``lm eval``: train the byte-level GPT on a text corpus and measure it.

Training draws random contiguous windows of the training split (:func:`~studentnas.lm.corpus.windows`)
and minimises next-byte cross-entropy with AdamW (betas 0.9/0.95, weight decay on matrices and
embeddings only), a linear warm-up to ``lr`` and a cosine decay to ``min_lr_ratio * lr``, and
gradient clipping. Every ``eval_every`` steps (and at the end) the validation loss is measured on
up to ``eval_windows`` fixed, non-overlapping windows of the validation split. At the end the whole
validation and test splits are scored. Loss is in nats per byte; perplexity is ``exp(loss)`` (per
byte); bits per byte are ``loss / ln 2``; top-1 is the share of bytes predicted exactly.

Outputs, both written atomically:

* ``OUT.safetensors``: the weights, with the sidecar's JSON (including the model config) in its
  metadata; load with :func:`studentnas.load_model` or :func:`studentnas.lm.load_lm`.
* ``OUT.json`` (kind ``lm``, written with the weights by :func:`studentnas.runfiles.models.write_model`):
  config, steps, tokens seen, val/test loss, perplexity, bits per byte, top-1, the eval
  history, tokens per second (wall clock, and per CPU second of this process, which a busy machine
  does not skew), the corpus (source, licence, split, sizes) and versions.

A checkpoint (model, optimizer, step, both random generators) is written atomically to
``OUT.safetensors.ckpt/lm.pt`` every ``checkpoint_every`` steps. Rerunning with ``resume=True``
continues from it and ends with the same weights as an uninterrupted run; the folder is removed
when the model is written. The same seed gives the same weights (on the same torch and threads).

Example:
    >>> meta = train_lm("lm.safetensors", model="gpt_tiny", data="fortunes", steps=30)   # ~45 s  # doctest: +SKIP
    >>> meta["val"]["loss"] < 3.5   # the training above  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from studentnas.core.console import Progress, sayer
from studentnas.core.errors import BadInputError
from studentnas.lm.corpus import Corpus, eval_windows, load_corpus, windows
from studentnas.lm.model import GPT, LMS, lm_config, load_lm
from studentnas.runfiles.atomic import write_atomic
from studentnas.runfiles.models import write_model
from studentnas.runfiles.paths import check_model_out

CHECKPOINT = "lm.pt"


@dataclass(frozen=True)
class LMTrainConfig:
    """Everything that shapes the trained weights (a resumed run must match it exactly)."""

    model: str = "gpt_tiny"
    data: str = "fortunes"
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int | None = None  # default: 5 % of the steps, at most 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    context: int | None = None  # default: the preset's
    seed: int = 0

    def __post_init__(self) -> None:
        LMS.get(self.model)  # unknown model: suggestions
        for name, low in (("steps", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                flag = name.replace("_", "-")
                raise BadInputError(f"--{flag} {value!r}: must be a whole number >= {low}, e.g. --{flag} 100")
        if self.warmup is not None and (not isinstance(self.warmup, int) or not 0 <= self.warmup <= self.steps):
            raise BadInputError(f"--warmup {self.warmup!r}: must be a whole number of steps in [0, --steps]")
        if self.context is not None and (not isinstance(self.context, int) or self.context < 2):
            raise BadInputError(f"--context {self.context!r}: must be a whole number >= 2, e.g. --context 128")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise BadInputError(f"--lr {self.lr!r}: must be a positive number, e.g. --lr 2e-3")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise BadInputError(f"min_lr_ratio {self.min_lr_ratio!r}: must be in [0, 1]")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise BadInputError(f"--weight-decay {self.weight_decay!r}: must be >= 0, e.g. 0.1")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise BadInputError(f"grad_clip {self.grad_clip!r}: must be >= 0 (0: no clipping)")

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else min(100, self.steps // 20)

    def gpt_config(self):  # noqa: ANN201 - GPTConfig
        return lm_config(self.model) if self.context is None else lm_config(self.model, context=self.context)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def lr_at(step: int, config: LMTrainConfig) -> float:
    """Learning rate of ``step`` (0-based): linear warm-up to ``lr``, then cosine to ``min_lr_ratio * lr``.

    Example:
        >>> cfg = LMTrainConfig(steps=101, lr=1.0, warmup=10, min_lr_ratio=0.1)
        >>> [round(lr_at(s, cfg), 3) for s in (0, 9, 10, 55, 100)]
        [0.1, 1.0, 1.0, 0.55, 0.1]
    """
    warm = config.warmup_steps
    if step < warm:
        return config.lr * (step + 1) / warm
    span = max(1, config.steps - 1 - warm)
    progress = min(1.0, (step - warm) / span)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate_lm(model: GPT, tokens: torch.Tensor, max_windows: int | None = None,
                batch_size: int = 64) -> dict[str, float]:
    """Next-byte loss (nats/byte), perplexity, bits per byte and top-1 on non-overlapping windows of ``tokens``.

    Example:
        >>> import torch
        >>> from studentnas.lm.model import create_lm
        >>> torch.manual_seed(0) and None
        >>> stats = evaluate_lm(create_lm("gpt_tiny", layers=1), torch.arange(300) % 256, batch_size=2)
        >>> 5.3 < stats["loss"] < 5.8, stats["tokens"]   # an untrained model: about ln(256) = 5.55
        (True, 256)
    """
    was_training = model.training
    model.eval()
    x_all, y_all = eval_windows(tokens, model.config.context, max_windows)
    total, correct, count = 0.0, 0, 0
    for i in range(0, len(x_all), batch_size):
        x, y = x_all[i:i + batch_size], y_all[i:i + batch_size]
        logits = model(x)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
        count += y.numel()
    model.train(was_training)
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_byte": loss / math.log(2),
            "top1": 100.0 * correct / count, "tokens": count}


def _param_groups(model: GPT, weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _write_atomic(path: Path, state: dict[str, Any]) -> None:
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def train_lm(out: str | Path, *, model: str = "gpt_tiny", data: str = "fortunes", steps: int = 1000,
             batch_size: int = 32, lr: float = 2e-3, warmup: int | None = None, weight_decay: float = 0.1,
             context: int | None = None, seed: int = 0, eval_every: int = 200, eval_windows: int = 64,
             checkpoint_every: int = 200, resume: bool = False, quiet: bool = False,
             corpus: Corpus | None = None, final_eval_windows: int | None = None) -> dict[str, Any]:
    """Train preset ``model`` on ``data`` for ``steps`` steps; write ``out`` + sidecar; return the sidecar's dict.

    Args:
        eval_every: validation every this many steps (on ``eval_windows`` fixed windows); 0: only at the end.
        checkpoint_every: write the resume checkpoint every this many steps.
        resume: continue from ``out``'s checkpoint (an absent one starts afresh). Without it an existing
            checkpoint is bad input, so an unfinished run is never overwritten by accident.
        corpus: an already loaded corpus (``data`` then only names it in the sidecar).
        final_eval_windows: score the final model on this many windows per split (default: the whole
            validation and test splits; the sidecar records the tokens scored).
    """
    config = LMTrainConfig(model=model, data=data, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                           weight_decay=weight_decay, context=context, seed=seed)
    for name, value in (("eval_every", eval_every), ("eval_windows", eval_windows),
                        ("checkpoint_every", checkpoint_every)):
        low = 0 if name == "eval_every" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            flag = name.replace("_", "-")
            raise BadInputError(f"--{flag} {value!r}: must be a whole number >= {low}, e.g. --{flag} 100")
    out = check_model_out(out, "lm.safetensors")
    ckpt_path = out.with_name(out.name + ".ckpt") / CHECKPOINT
    if ckpt_path.is_file() and not resume:
        raise BadInputError(f"an unfinished training run's checkpoint is at {ckpt_path}; pass --resume to continue "
                            f"it, or delete {ckpt_path.parent} to start afresh")
    gpt_config = config.gpt_config()
    corpus = corpus if corpus is not None else load_corpus(data)
    for split in ("train", "val", "test"):
        if len(getattr(corpus, split)) < gpt_config.context + 1:
            raise BadInputError(f"corpus '{data}': its {split} split has {len(getattr(corpus, split))} bytes, fewer "
                                f"than context + 1 = {gpt_config.context + 1}; give more text or a smaller --context")
    say = sayer(quiet)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = GPT(gpt_config)
        optimizer = torch.optim.AdamW(_param_groups(net, weight_decay), lr=lr, betas=(0.9, 0.95))
        gen = torch.Generator().manual_seed(seed)
        start, history, train_seconds, cpu_seconds, resumed_from = 0, [], 0.0, 0.0, 0
        if resume and ckpt_path.is_file():
            state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            if state.get("config") != config.to_dict():
                raise BadInputError(f"checkpoint '{ckpt_path}' was written with other settings; resume with the same "
                                    f"--model/--data/--steps/--batch-size/--lr/--seed, or delete {ckpt_path.parent}")
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            start = resumed_from = int(state["step"])
            history, train_seconds = list(state["history"]), float(state["train_seconds"])
            cpu_seconds = float(state["cpu_seconds"])
            say(f"lm train: resuming at step {start} of {steps} from {ckpt_path}")
        n_params = sum(p.numel() for p in net.parameters())
        say(f"lm train: {model} ({n_params / 1e6:.2f} M params, context {gpt_config.context}) on {corpus.source}: "
            f"{len(corpus.train):,} training bytes, {steps} steps of {batch_size} x {gpt_config.context} tokens")
        net.train()
        last_loss = float("nan")
        with Progress(total=steps, desc="lm train", quiet=quiet, initial=start, unit="step") as bar:
            for step in range(start, steps):
                tick, cpu_tick = time.perf_counter(), time.process_time()
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, config)
                x, y = windows(corpus.train, gpt_config.context, batch_size, gen)
                logits = net(x)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                optimizer.step()
                train_seconds += time.perf_counter() - tick
                cpu_seconds += time.process_time() - cpu_tick
                last_loss = loss.item()
                if not math.isfinite(last_loss):
                    raise BadInputError(f"lm train: the loss became {last_loss} at step {step + 1}; lower --lr "
                                        f"(now {lr})")
                done = step + 1
                stats: dict[str, Any] = {"loss": last_loss}
                if (eval_every and done % eval_every == 0) or done == steps:
                    val = evaluate_lm(net, corpus.val, eval_windows)
                    history.append({"step": done, "train_loss": last_loss, "val_loss": val["loss"],
                                    "val_top1": val["top1"], "lr": lr_at(step, config)})
                    stats["val"] = val["loss"]
                bar.update(1, **stats)
                if done % checkpoint_every == 0 and done < steps:
                    _write_atomic(ckpt_path, {"config": config.to_dict(), "step": done, "model": net.state_dict(),
                                              "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                                              "torch_rng": torch.get_rng_state(), "history": history,
                                              "train_seconds": train_seconds, "cpu_seconds": cpu_seconds})
    trained_tokens = steps * batch_size * gpt_config.context  # the seconds carry over a resume too
    tokens_per_s = trained_tokens / train_seconds if train_seconds else 0.0
    tick = time.perf_counter()
    val = evaluate_lm(net, corpus.val, final_eval_windows)
    test = evaluate_lm(net, corpus.test, final_eval_windows)
    eval_seconds = time.perf_counter() - tick
    meta = {
        "model": model, "config": gpt_config.to_dict(), "train_config": config.to_dict(),
        "params": n_params, "steps": steps, "tokens_seen": steps * batch_size * gpt_config.context,
        "train_loss": last_loss, "val": val, "test": test, "history": history, "corpus": corpus.describe(),
        "tokens_per_s": tokens_per_s, "train_seconds": train_seconds, "final_eval_seconds": eval_seconds,
        "train_cpu_seconds": cpu_seconds, "tokens_per_cpu_s": trained_tokens / cpu_seconds if cpu_seconds else 0.0,
        "resumed_from_step": resumed_from, "threads": torch.get_num_threads(),
    }
    net.eval()
    meta = write_model(out, net, meta, kind="lm")
    shutil.rmtree(ckpt_path.parent, ignore_errors=True)
    return meta


def eval_lm(model: str, checkpoint: str | Path, data: str = "fortunes",
            max_windows: int | None = None) -> dict[str, Any]:
    """Validation and test loss, perplexity, bits per byte and top-1 of a trained LM on ``data``."""
    net = load_lm(model, checkpoint)
    corpus = load_corpus(data, min_bytes=net.config.context + 1)
    return {"model": model, "checkpoint": str(checkpoint), "data": data, "corpus": corpus.describe(),
            "val": evaluate_lm(net, corpus.val, max_windows), "test": evaluate_lm(net, corpus.test, max_windows)}
