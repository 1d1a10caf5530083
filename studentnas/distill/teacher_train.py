"""``studentnas teacher train``: train or fine-tune a timm teacher on the user's data.

For users without a checkpoint (and for the tests and benchmarks, on Fashion-MNIST). The training
split is divided into a training part and a stratified held-out validation part (``val_fraction``),
the teacher is trained with :func:`studentnas.distill.trainer.train` (cross-entropy, cosine LR,
random crop + flip unless ``augment=False``) and evaluated on the test split. The output is

* ``OUT.safetensors``: the state dict, loadable by ``--teacher-checkpoint`` everywhere (the head's
  class count and the input channels are read from the weights by :func:`studentnas.data.teachers.load_teacher`);
  the same JSON as the sidecar is in its metadata;
* ``OUT.json``: kind ``teacher``, model, classes, image size, data, epochs, test top-1/top-5, per-epoch
  history, versions.

Both are written together by :func:`studentnas.runfiles.models.write_model`, and
:func:`studentnas.load_model` rebuilds the teacher (:func:`rebuild_teacher`). Training checkpoints go
to ``OUT.ckpt/`` each epoch: rerunning the same command after an interruption resumes there, and the
folder is removed once the teacher is written.

Example::

    >>> meta = train_teacher("resnet18", "fashion-mnist", epochs=1, out="t.safetensors",
    ...                      image_size=32, train_images=600)   # downloads and trains  # doctest: +SKIP
    >>> meta["test_top1"]   # the training above  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studentnas.core.console import sayer
from studentnas.core.errors import BadInputError
from studentnas.data import images as data_mod
from studentnas.data.teachers import check_teacher_name, load_teacher
from studentnas.distill.batches import Batches, holdout_split
from studentnas.distill.evaluation import evaluate
from studentnas.distill.train_config import TrainConfig
from studentnas.distill.trainer import train
from studentnas.runfiles.models import MODEL_KINDS, write_model
from studentnas.runfiles.paths import check_model_out


def train_teacher(model: str, data: str, epochs: int, out: str | Path, *, image_size: int | None = None,
                  batch_size: int = 64, lr: float = 0.05, weight_decay: float = 5e-4, seed: int = 0,
                  pretrained: bool = False, train_images: int | None = None, test_images: int | None = None,
                  val_fraction: float = 0.1, augment: bool = True, label_smoothing: float = 0.0,
                  threads: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Train a timm ``model`` on ``data`` and write ``out`` + sidecar; returns the sidecar's dict.

    Args:
        model: timm model name (``studentnas list teachers``).
        data: a :mod:`studentnas.data.images` spec with train and test splits (fashion-mnist, cifar10:PATH,
            an ImageFolder with train/ and val|test/).
        image_size: training resolution (default: the model's own); record it for ``--image-size``.
        train_images, test_images: use at most this many images of each split (stratified, seeded).
        pretrained: start from timm's hub weights (a new head sized to the data's classes).
        threads: torch CPU threads (default: torch's, one per core; on a busy machine fewer threads
            than cores can be several times faster).
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BadInputError(f"--threads {threads!r}: must be a whole number >= 1, e.g. --threads 1")
    out = check_model_out(out, "teacher.safetensors")
    check_teacher_name(model)
    if data is None:
        raise BadInputError("--data is required: fashion-mnist, cifar10:PATH, cifar100:PATH or an ImageFolder "
                            "directory with train/ and test/ (the shipped sample has no training split)")
    data_mod.check_data_spec(data)
    if image_size is not None and image_size < 8:
        raise BadInputError(f"--image-size {image_size}: must be at least 8 pixels, e.g. --image-size 32")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                         augment=augment, label_smoothing=label_smoothing)
    start = time.perf_counter()
    train_set = data_mod.load_images(data, "train", limit=train_images, seed=seed)
    test_set = data_mod.load_images(data, "test", limit=test_images, seed=seed)
    train_part, val_part = holdout_split(train_set, val_fraction, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = load_teacher(model, pretrained=pretrained, num_classes=len(train_set.classes))
    chans, height, width = teacher.input_size
    size = (chans, image_size or height, image_size or width)
    say = sayer(quiet)
    say(f"teacher train: {model} ({'pretrained' if pretrained else 'random init'}, {len(train_set.classes)} classes) "
        f"on {len(train_part)} images at {size[1]}x{size[2]}, {epochs} epochs")

    def on_epoch(stats: dict[str, Any], _ckpt: Path | None) -> None:
        val = f", val top-1 {stats['val_top1']:.2f} %" if "val_top1" in stats else ""
        say(f"teacher train: epoch {stats['epoch']}/{epochs}: loss {stats['train_loss']:.4f}, train top-1 "
            f"{stats['train_top1']:.2f} %{val} ({stats['train_images_per_s']:.0f} images/s)")

    batches = Batches(train_part, size, teacher.mean, teacher.std, batch_size, shuffle=True, augment=augment,
                      seed=seed, drop_last=True)
    val_batches = Batches(val_part, size, teacher.mean, teacher.std, batch_size) if val_part is not None else None
    ckpt_dir = out.with_name(out.name + ".ckpt")
    result = train(teacher.model, batches, val_batches, config, checkpoint_dir=ckpt_dir, on_epoch=on_epoch,
                   threads=threads)
    test = evaluate(teacher.model, Batches(test_set, size, teacher.mean, teacher.std, batch_size))
    meta = {
        "model": model, "num_classes": len(train_set.classes), "classes": list(train_set.classes),
        "in_chans": chans, "image_size": [size[1], size[2]], "input_size": list(size),
        "mean": list(teacher.mean), "std": list(teacher.std), "data": data, "data_source": train_set.source,
        "test_source": test_set.source, "train_images": len(train_part),
        "val_images": len(val_part) if val_part is not None else 0, "test_images": len(test_set),
        "epochs": epochs, "pretrained": pretrained, "train_config": config.to_dict(),
        "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
        "val_top1": result.last.get("val_top1"), "history": result.history,
        "resumed_from_epoch": result.resumed_from_epoch, "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
    }
    meta = write_model(out, teacher.model, meta, kind="teacher")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return meta


@MODEL_KINDS.register("teacher")
def rebuild_teacher(path: Path, meta: dict[str, Any]) -> nn.Module:
    """A teacher written by :func:`train_teacher`: timm's ``meta["model"]`` with the weights of ``path``."""
    return load_teacher(meta["model"], path, num_classes=meta["num_classes"]).model
