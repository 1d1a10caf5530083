"""Evaluation of a classifier on :class:`~studentnas.distill.batches.Batches`: mean cross-entropy,
top-1 and top-5 accuracy (:func:`evaluate`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.distill.batches import Batches


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many rows of ``logits`` rank their label among the top ``min(k, classes)``.

    >>> topk_correct(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]), 1)
    1
    """
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (percent) of ``model`` on every batch (eval mode).

    Top-5 is top-min(5, classes). The model's train/eval mode is restored afterwards.

    Example:
        >>> from studentnas.data.images import load_images
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
            top1 += topk_correct(logits, y, 1)
            top5 += topk_correct(logits, y, 5)
            n += len(y)
    finally:
        model.train(was_training)
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n}
