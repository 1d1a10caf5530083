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
    >>> from studentnas.data import load_images
    >>> data = load_images(None, limit=40)
    >>> batches = Batches(data, (3, 16, 16), (0.5,), (0.5,), batch_size=20)
    >>> student = get_space("nb201").build(get_space("nb201").smallest(), num_classes=10)
    >>> result = train(student, batches, batches, TrainConfig(epochs=1, lr=0.01))
    >>> [sorted(k for k in result.history[0] if k.startswith("val_"))]
    [['val_loss', 'val_top1', 'val_top5']]
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studentnas.atomic import write_atomic
from studentnas.data import ImageSet, stratified_indices, to_tensor
from studentnas.errors import BadInputError

CHECKPOINT = "trainer.pt"
CACHE_FORMAT = 1

# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """What one training run does. ``losses`` are KD loss specs ``{"name": ..., "weight": ..., **kwargs}``
    (names from ``studentnas list losses``); with none, the run is plain cross-entropy training.

    Example:
        >>> TrainConfig(epochs=2, losses=({"name": "kd", "weight": 1.0, "temperature": 4.0},)).needs_teacher
        True
        >>> TrainConfig(epochs=0)
        Traceback (most recent call last):
        ...
        studentnas.errors.BadInputError: epochs 0: must be a whole number >= 1; e.g. --epochs 10
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.0
    ce_weight: float = 1.0
    losses: tuple[dict[str, Any], ...] = ()
    augment: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                flag = name.replace("_", "-")
                raise BadInputError(f"{name} {value!r}: must be a whole number >= {low}; e.g. --{flag} "
                                    f"{10 if name == 'epochs' else 64}")
        checks = {"lr": (0.0, False), "weight_decay": (0.0, True), "momentum": (0.0, True),
                  "label_smoothing": (0.0, True), "ce_weight": (0.0, True)}
        for name, (low, inclusive) in checks.items():
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < low or (value == low and not inclusive):
                raise BadInputError(f"{name} {getattr(self, name)!r}: must be a finite number "
                                    f"{'>=' if inclusive else '>'} {low:g}")
        if self.label_smoothing >= 1 or self.momentum >= 1:
            raise BadInputError(f"label_smoothing {self.label_smoothing} and momentum {self.momentum} must be < 1")
        object.__setattr__(self, "losses", tuple(dict(s) for s in self.losses))
        if self.ce_weight == 0 and not self.losses:
            raise BadInputError("ce_weight 0 with no KD loss leaves nothing to train; give ce_weight > 0 or a loss")

    @property
    def needs_teacher(self) -> bool:
        return bool(self.losses)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["losses"] = [dict(s) for s in self.losses]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "losses" else v) for k, v in data.items() if k in known})


# ------------------------------------------------------------------------------------------------ data


def _seed_of(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and platforms)."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


class Batches:
    """An :class:`ImageSet` served as normalised batches in the model's input format.

    Each batch is converted on the fly (:func:`studentnas.data.to_tensor`: channels, resize, mean/std).
    With ``shuffle`` the order of epoch ``e`` is a permutation drawn from (seed, e); with ``augment``
    each image is randomly cropped from a copy padded by H/8 (zeros after normalisation, the mean
    colour) and flipped left-right with probability 1/2, drawn from the same generator. With
    ``drop_last`` an incomplete last batch is dropped when there is at least one full batch.

    Example:
        >>> from studentnas.data import load_images
        >>> b = Batches(load_images(None, limit=30), (1, 8, 8), (0.5,), (0.5,), batch_size=16, shuffle=True)
        >>> [(tuple(x.shape), len(i)) for i, x, y in b.epoch(0)]
        [((16, 1, 8, 8), 16), ((14, 1, 8, 8), 14)]
        >>> len(b), len(Batches(b.data, (1, 8, 8), (0.5,), (0.5,), 16, drop_last=True))
        (2, 1)
    """

    def __init__(self, data: ImageSet, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 batch_size: int, *, shuffle: bool = False, augment: bool = False, seed: int = 0,
                 drop_last: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise BadInputError(f"batch size {batch_size!r}: must be a whole number >= 1, e.g. --batch-size 64")
        if len(data) == 0:
            raise BadInputError(f"no images in {data.source}; give more data")
        self.data = data
        self.input_size = tuple(int(v) for v in input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.drop_last = drop_last and len(data) >= batch_size

    def __len__(self) -> int:
        full, rest = divmod(len(self.data), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    @property
    def num_images(self) -> int:
        """Images served per epoch (all of them, less a dropped last batch)."""
        return len(self.data) - (len(self.data) % self.batch_size if self.drop_last else 0)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(indices into the data, images N x C x H x W, labels) for each batch of ``epoch``."""
        gen = torch.Generator().manual_seed(_seed_of("batches", self.seed, epoch))
        order = torch.randperm(len(self.data), generator=gen) if self.shuffle else torch.arange(len(self.data))
        for start in range(0, self.num_images, self.batch_size):
            index = order[start : start + self.batch_size]
            numpy_index = index.numpy()
            x = to_tensor(self.data.images[numpy_index], self.input_size, self.mean, self.std)
            if self.augment:
                x = _crop_flip(x, gen)
            yield index, x, torch.from_numpy(self.data.labels[numpy_index].copy())


def holdout_split(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """(train, validation) parts of ``data``: ``round(fraction * N)`` images, stratified by class and
    seeded, are held out (at least one when ``fraction > 0``); ``fraction = 0`` holds out nothing.

    Example:
        >>> from studentnas.data import load_images
        >>> train_part, val_part = holdout_split(load_images(None, limit=100), 0.2, seed=0)
        >>> len(train_part), len(val_part), np.bincount(val_part.labels).tolist()
        (80, 20, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    if not 0 <= fraction < 1:
        raise BadInputError(f"validation fraction {fraction!r}: must be in [0, 1), e.g. --val-fraction 0.1")
    if fraction == 0:
        return data, None
    n_val = max(1, round(fraction * len(data)))
    if n_val >= len(data):
        raise BadInputError(f"validation fraction {fraction} of {len(data)} images leaves none to train on; "
                            "use more images or a smaller --val-fraction")
    val = np.sort(stratified_indices(data.labels, n_val, _seed_of("holdout", seed) % 2**32))
    keep = np.setdiff1d(np.arange(len(data)), val)

    def part(index: np.ndarray, what: str) -> ImageSet:
        return ImageSet(data.images[index], data.labels[index], data.classes, f"{data.source}; {what} {len(index)}")

    return part(keep, "training part"), part(val, "held-out validation part")


def _crop_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, height, width = x.shape
    pad = max(1, height // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).tolist()
    flips = (torch.rand(n, generator=gen) < 0.5).tolist()
    out = [padded[i, :, top : top + height, left : left + width] for i, (top, left) in enumerate(offsets)]
    return torch.stack([img.flip(-1) if flip else img for img, flip in zip(out, flips)])


# ----------------------------------------------------------------------------------------------- losses


def available_losses() -> list[str]:
    """KD losses a config may name (``studentnas list losses`` without ``ce``, which is the CE term)."""
    from studentnas.distill.losses import LOSSES

    return [name for name in sorted(LOSSES.list()) if name != "ce"]


def loss_parameters(name: str) -> list[str]:
    """The options of a registered loss besides name and weight, e.g. ``['T']`` for ``kd``."""
    from studentnas.distill.losses import LOSSES

    return LOSSES.get(name).parameter_names()


def loss_specs(config: TrainConfig) -> list[dict[str, Any]]:
    """The whole objective as a weighted loss list: the CE term first, then ``config.losses``.

    Example:
        >>> loss_specs(TrainConfig(ce_weight=0.1, label_smoothing=0.1, losses=({"name": "kd", "weight": 0.9},)))
        [{'name': 'ce', 'weight': 0.1, 'label_smoothing': 0.1}, {'name': 'kd', 'weight': 0.9}]
    """
    return [{"name": "ce", "weight": config.ce_weight, "label_smoothing": config.label_smoothing},
            *(dict(s) for s in config.losses)]


def loss_kinds(config: TrainConfig) -> tuple[str, ...]:
    """What the objective consumes (``logits``, ``labels``, ``features``, ``pre_logits``, ``attn``)."""
    from studentnas.distill.losses import INPUT_KINDS, LOSSES, parse_loss_specs

    used = {kind for term in parse_loss_specs(loss_specs(config)) for kind in LOSSES.get(term.name).inputs}
    return tuple(kind for kind in INPUT_KINDS if kind in used)


def _stage_hooks(model: nn.Module) -> list[str]:
    info = getattr(model, "feature_info", None)
    if isinstance(info, list) and info and all(isinstance(d, dict) and d.get("module") for d in info):
        return [d["module"] for d in info]
    raise BadInputError(f"feature losses need the stage outputs of {type(model).__name__}, which has neither timm's "
                        "forward_intermediates nor a feature_info list naming its stage modules; use a logit loss")


def model_outputs(model: nn.Module, x: torch.Tensor, kinds: Sequence[str]):  # noqa: ANN201 - ModelOutputs
    """One forward pass of ``model`` collecting what ``kinds`` asks for, as the losses' ``ModelOutputs``.

    ``features`` are the stage outputs (timm's ``forward_intermediates``, else hooks on the modules
    ``feature_info`` names), ``pre_logits`` the pooled embedding, ``attn`` every attention layer's Q, K, V.

    Example:
        >>> from studentnas import get_space
        >>> net = get_space("nb201").build(get_space("nb201").smallest(), num_classes=10)
        >>> out = model_outputs(net, torch.randn(2, 3, 16, 16), ("logits", "features", "pre_logits"))
        >>> tuple(out.logits.shape), [tuple(f.shape) for f in out.features], tuple(out.pre_logits.shape)
        ((2, 10), [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)], (2, 64))
    """
    import contextlib

    from studentnas.distill.losses import ModelOutputs, capture_attention

    kinds = set(kinds)
    if not kinds & {"features", "pre_logits", "attn"}:
        return ModelOutputs(logits=model(x))
    stages: list[torch.Tensor] = []
    with contextlib.ExitStack() as stack:
        attn = stack.enter_context(capture_attention(model)) if "attn" in kinds else None
        if "features" in kinds and callable(getattr(model, "forward_intermediates", None)):
            final, stages = model.forward_intermediates(x)
        else:
            handles = [model.get_submodule(n).register_forward_hook(lambda _m, _i, o: stages.append(o))
                       for n in (_stage_hooks(model) if "features" in kinds else [])]
            try:
                final = model.forward_features(x)
            finally:
                for h in handles:
                    h.remove()
    prefix = getattr(model, "num_prefix_tokens", None)
    return ModelOutputs(logits=model.forward_head(final), features=list(stages) or None,
                        pre_logits=model.forward_head(final, pre_logits=True) if "pre_logits" in kinds else None,
                        attn=list(attn) if attn is not None else None,
                        prefix_tokens=prefix if isinstance(prefix, int) else None)


def build_objective(config: TrainConfig, student: nn.Module, teacher: nn.Module | None,
                    example: torch.Tensor | None):  # noqa: ANN201 - ComposedLoss
    """The composed loss of ``config`` (:func:`studentnas.distill.losses.compose_losses`). Losses with
    learned connectors are sized from one eval-mode pass of both networks over ``example`` images."""
    from studentnas.distill.losses import compose_losses

    specs = loss_specs(config)
    kinds = loss_kinds(config)
    s_out = t_out = None
    if example is not None and set(kinds) - {"logits", "labels"}:
        modes = [(m, m.training) for m in (student, teacher) if m is not None]
        try:
            with torch.no_grad():
                for m, _ in modes:
                    m.eval()
                s_out = model_outputs(student, example, kinds)
                t_out = model_outputs(teacher, example, kinds) if teacher is not None else None
        finally:
            for m, mode in modes:
                m.train(mode)
    return compose_losses(specs, s_out, t_out)


# ------------------------------------------------------------------------------------------ evaluation


def _forward(model: nn.Module, x: torch.Tensor, features: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not features:
        return model(x), None
    f = model.forward_features(x)
    return model.forward_head(f), f


def _topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (percent) of ``model`` on every batch (eval mode).

    Top-5 is top-min(5, classes). The model's train/eval mode is restored afterwards.

    Example:
        >>> from studentnas.data import load_images
        >>> class Ranked(nn.Module):   # always ranks class 0 first, then 1, 2, ...
        ...     def forward(self, x): return torch.arange(10.0, 0.0, -1.0).expand(len(x), 10)
        >>> b = Batches(load_images(None, limit=10), (1, 4, 4), (0.5,), (0.5,), 5)   # one image per class
        >>> # CE = logsumexp(1..10) - mean(10..1) = 10.4586 - 5.5; top-1: class 0 only; top-5: classes 0-4
        >>> {k: round(v, 4) for k, v in evaluate(Ranked(), b).items()}
        {'loss': 4.9586, 'top1': 10.0, 'top5': 50.0}
    """
    was_training = model.training
    model.eval()
    loss = top1 = top5 = 0.0
    n = 0
    try:
        for _, x, y in batches.epoch(0):
            logits = model(x.contiguous(memory_format=torch.channels_last))
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            top1 += _topk_correct(logits, y, 1)
            top5 += _topk_correct(logits, y, 5)
            n += len(y)
    finally:
        model.train(was_training)
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n}


# ----------------------------------------------------------------------------------------- teacher cache


def module_digest(model: nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and values): a teacher's identity.

    Example:
        >>> module_digest(nn.Linear(2, 2)) == module_digest(nn.Linear(2, 2))   # two random inits
        False
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def cache_key(teacher_id: str, batches: Batches, data_spec: str | None) -> dict[str, Any]:
    """What the cached logits depend on: the teacher, the data (spec, source, a digest of the images
    and labels) and the transforms (input size, mean, std). Augmented batches cannot be cached."""
    if batches.augment:
        raise BadInputError("teacher logits can be cached only for fixed inputs, and these batches are augmented; "
                            "turn augmentation off or the teacher cache off")
    images = hashlib.sha256(np.ascontiguousarray(batches.data.images).tobytes())
    images.update(np.ascontiguousarray(batches.data.labels).tobytes())
    return {"format": CACHE_FORMAT, "teacher": teacher_id, "data": data_spec, "source": batches.data.source,
            "images_sha256": images.hexdigest(), "n": len(batches.data), "input_size": list(batches.input_size),
            "mean": list(batches.mean), "std": list(batches.std)}


def cached_teacher_logits(teacher: nn.Module, batches: Batches, cache_dir: str | Path, teacher_id: str | None = None,
                          data_spec: str | None = None) -> tuple[torch.Tensor, bool]:
    """The teacher's logits for every image of ``batches`` (in data order), and whether they came from disk.

    They are stored as ``cache_dir/<key digest>.safetensors`` with the key in the metadata, keyed by
    :func:`cache_key` (``teacher_id`` defaults to :func:`module_digest` of the teacher). Written
    atomically, so concurrent trials at worst compute the same file twice.

    Example:
        >>> import tempfile
        >>> from studentnas.data import load_images
        >>> d = tempfile.mkdtemp()
        >>> b = Batches(load_images(None, limit=8), (3, 8, 8), (0.5,), (0.5,), 4)
        >>> t = nn.Sequential(nn.Flatten(), nn.Linear(192, 10))
        >>> first, hit = cached_teacher_logits(t, b, d); again, hit2 = cached_teacher_logits(t, b, d)
        >>> tuple(first.shape), hit, hit2, torch.equal(first, again)
        ((8, 10), False, True, True)
    """
    from safetensors.torch import load_file, save_file

    key = cache_key(teacher_id or module_digest(teacher), batches, data_spec)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"{name}.safetensors"
    if path.is_file():
        try:
            logits = load_file(str(path))["logits"]
            if logits.shape[0] == len(batches.data):
                return logits, True
        except Exception:  # noqa: BLE001 - an unreadable cache entry is recomputed, never trusted
            pass
    was_training = teacher.training
    teacher.eval()
    out = torch.empty(0)
    with torch.no_grad():
        for index, x, _ in Batches(batches.data, batches.input_size, batches.mean, batches.std,
                                   batches.batch_size).epoch(0):
            logits = teacher(x.contiguous(memory_format=torch.channels_last)).float()
            if out.numel() == 0:
                out = torch.empty(len(batches.data), logits.shape[1])
            out[index] = logits
    teacher.train(was_training)
    write_atomic(path, lambda tmp: save_file({"logits": out.contiguous()}, tmp,
                                             metadata={"studentnas_cache_key": json.dumps(key, sort_keys=True)}))
    return out, False


# -------------------------------------------------------------------------------------------- training


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
            torch.manual_seed(_seed_of("epoch", config.seed, epoch))
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
        correct += _topk_correct(s_out.logits.detach(), y, 1)
        seen += n
    seconds = time.perf_counter() - t0
    stats: dict[str, Any] = {f"train_{k}": v / seen for k, v in sums.items()}
    stats.update(train_top1=100.0 * correct / seen, lr=lr, train_seconds=seconds,
                 train_images_per_s=seen / seconds if seconds > 0 else float("inf"))
    return stats
