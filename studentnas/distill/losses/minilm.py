"""MiniLM self-attention distillation for transformer pairs (Wang et al. 2020/2021; METHODS.md §6.8).

The loss compares *relations* between the tokens of one self-attention layer of each network (the last
by default), never the hidden states, so the hidden sizes may differ:

* ``qk``: the attention distribution itself, ``softmax(Q K^T / sqrt(d))`` per head and query token
  (MiniLM v1's L_AT);
* ``vv``: the value relation ``softmax(V V^T / sqrt(d))`` (v1's L_VR);
* ``qq`` and ``kk``: the query-query and key-key relations that MiniLM v2 adds.

Each is a KL(teacher || student) summed over the key axis and averaged over the batch, the heads and
the query tokens; the loss is the sum over the chosen relations (default ``("qk", "vv")``: v1).

**Different head counts** (MiniLM v2's *relation heads*): each network's heads are concatenated back
into its B x N x (heads * head_dim) projection, which is re-split into ``relation_heads`` equal heads
of its own width; relations are then computed per relation head with ``d`` = that width. Both widths
must divide by ``relation_heads``. The default, ``gcd(H_s, H_t)``, always does, and when the head
counts agree it is that count, so the relation heads are exactly the model's heads and the loss is
MiniLM v1's. The token counts must agree (same image size and patch grid, or the same text).
Images have no padding, so no attention mask is applied.

:func:`capture_attention` records every timm ``Attention`` layer's Q, K, V during a forward pass.

Example:
    >>> import torch
    >>> t = AttentionQKV(*torch.randn(3, 2, 4, 5, 8))        # teacher: B=2, 4 heads, N=5, d=8
    >>> s = AttentionQKV(*torch.randn(3, 2, 2, 5, 6))        # student: 2 heads of 6: gcd -> 2 relation heads
    >>> MiniLMLoss()(s, t).shape
    torch.Size([])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.distill.losses.base import LOSSES, AttentionQKV, DistillLoss, ModelOutputs, pick

__all__ = ["RELATIONS", "MiniLMLoss", "capture_attention", "relation_log_probs"]

RELATIONS = ("qk", "vv", "qq", "kk")


def _regroup(x: torch.Tensor, heads: int) -> torch.Tensor:
    """B x H x N x d -> B x heads x N x (H*d/heads): concatenate the heads, re-split into ``heads``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, heads, h * d // heads).transpose(1, 2)


def relation_log_probs(a: torch.Tensor, b: torch.Tensor, heads: int) -> torch.Tensor:
    """``log softmax(A_r B_r^T / sqrt(d_r))`` over relation heads: B x heads x N x N.

    >>> q = torch.tensor([[[[1.0], [0.0]]]])            # B = H = 1, N = 2, d = 1
    >>> relation_log_probs(q, q, 1).exp()[0, 0]          # scores [[1, 0], [0, 0]]
    tensor([[0.7311, 0.2689],
            [0.5000, 0.5000]])
    """
    a_r, b_r = _regroup(a, heads), _regroup(b, heads)
    return F.log_softmax(a_r @ b_r.transpose(-2, -1) / math.sqrt(a_r.shape[-1]), dim=-1)


def _check_qkv(x: Any, role: str) -> AttentionQKV:
    if not (isinstance(x, Sequence) and len(x) == 3 and all(isinstance(t, torch.Tensor) for t in x)):
        raise ValueError(f"loss 'minilm' needs the {role}'s attention as (q, k, v), got {type(x).__name__}")
    q, k, v = x
    if q.ndim != 4 or q.shape != k.shape or q.shape[:3] != v.shape[:3]:
        raise ValueError(f"loss 'minilm': the {role}'s q, k, v must be B x heads x N x d, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    return AttentionQKV(q, k, v)


@LOSSES.register()
class MiniLMLoss(DistillLoss):
    """MiniLM self-attention distillation: KL of the attention and value relations of one layer.

    Over relation heads when the head counts differ (METHODS §6.8).

    Args:
        relations: which relations to match, from ``qk`` (attention), ``vv`` (values), ``qq``, ``kk``;
            ``["qk", "vv"]`` is MiniLM v1, ``["qq", "kk", "vv"]`` v2.
        relation_heads: heads both sides are re-split into; ``None`` = ``gcd`` of the two head counts.
        layer, teacher_layer: which entry of ``ModelOutputs.attn`` (-1: the last block); MiniLM v2 takes
            an upper-middle layer of large teachers.

    Example:
        >>> import torch, math
        >>> # one head, 2 tokens, d = 1. Student q = k = (1, 0): rows softmax([1, 0]) and (1/2, 1/2).
        >>> # Teacher q = 0: uniform rows. Values equal -> no value term. KL of row 0:
        >>> # 1/2 ln((1/2) / (e/(e+1))) + 1/2 ln((1/2) / (1/(e+1))) = ln((e+1)/2) - 1/2; row 1: 0.
        >>> one = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1)
        >>> s, t = AttentionQKV(one, one, one), AttentionQKV(0 * one, one, one)
        >>> round(float(MiniLMLoss()(s, t)), 6) == round((math.log((math.e + 1) / 2) - 0.5) / 2, 6)
        True
    """

    name = "minilm"
    inputs = ("attn",)

    def __init__(self, relations: Sequence[str] = ("qk", "vv"), relation_heads: int | None = None,
                 layer: int = -1, teacher_layer: int = -1):
        super().__init__()
        rel = [relations] if isinstance(relations, str) else list(relations)
        bad = [r for r in rel if r not in RELATIONS]
        if not rel or bad or len(set(rel)) != len(rel):
            raise BadInputError(f"loss 'minilm': relations must be distinct names from {', '.join(RELATIONS)}, got "
                                f"{relations!r}; e.g. ['qk', 'vv'] (MiniLM v1) or ['qq', 'kk', 'vv'] (v2)")
        if relation_heads is not None and (not isinstance(relation_heads, int) or isinstance(relation_heads, bool)
                                           or relation_heads < 1):
            raise BadInputError(f"loss 'minilm': relation_heads must be a positive int or null (gcd of the head "
                                f"counts), got {relation_heads!r}")
        for what, value in (("layer", layer), ("teacher_layer", teacher_layer)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadInputError(f"loss 'minilm': {what} must be a block index (-1: the last), got {value!r}")
        self.relations = tuple(rel)
        self.relation_heads = relation_heads
        self.layer, self.teacher_layer = layer, teacher_layer

    def heads_for(self, s: AttentionQKV, t: AttentionQKV) -> int:
        """The number of relation heads for this pair, checked against both widths."""
        h_s, h_t = s.q.shape[1], t.q.shape[1]
        heads = self.relation_heads or math.gcd(h_s, h_t)
        for role, x in (("student", s), ("teacher", t)):
            for name, m in zip("qkv", x):
                width = m.shape[1] * m.shape[3]
                if width % heads:
                    raise BadInputError(f"loss 'minilm': the {role}'s {name} width {width} does not split into "
                                        f"{heads} relation heads; pick relation_heads dividing both models' widths "
                                        f"(null: gcd({h_s}, {h_t}) = {math.gcd(h_s, h_t)})")
        return heads

    def forward(self, s: AttentionQKV, t: AttentionQKV) -> torch.Tensor:
        s, t = _check_qkv(s, "student"), _check_qkv(t, "teacher")
        if s.q.shape[0] != t.q.shape[0] or s.q.shape[2] != t.q.shape[2]:
            raise ValueError(f"loss 'minilm': student and teacher must see the same batch and tokens, got "
                             f"B x N = {s.q.shape[0]} x {s.q.shape[2]} and {t.q.shape[0]} x {t.q.shape[2]}; use "
                             "the same image size and patch grid")
        t = AttentionQKV(*(x.detach().to(s.q.dtype) for x in t))
        heads = self.heads_for(s, t)
        total = s.q.new_zeros(())
        for rel in self.relations:
            a, b = getattr(s, rel[0]), getattr(s, rel[1])
            log_s = relation_log_probs(a, b, heads)
            log_t = relation_log_probs(getattr(t, rel[0]), getattr(t, rel[1]), heads)
            kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # B x heads x N
            total = total + kl.mean()
        return total

    def forward_outputs(self, student: ModelOutputs, teacher: ModelOutputs,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
        s = pick(student.get("attn", "student", self.name), self.layer, "student", self.name, "layer")
        t = pick(teacher.get("attn", "teacher", self.name), self.teacher_layer, "teacher", self.name, "layer")
        return self(s, t)


def _attention_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules()
            if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "num_heads", None), int)]


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[AttentionQKV]]:
    """Record Q, K, V (B x heads x N x head_dim, after timm's q_norm/k_norm) of every timm-style attention
    layer (a module with a ``qkv`` Linear and ``num_heads``) during the forward passes inside the block.

    The records keep their autograd graph, so the student's receive gradients.

    Example:
        >>> import studentnas, timm
        >>> vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=16, depth=2, num_classes=3)
        >>> with capture_attention(vit) as attn:
        ...     logits = vit(torch.randn(1, 3, 32, 32))
        >>> len(attn), tuple(attn[-1].q.shape)         # 2 blocks; 3 heads over 1 + 2 x 2 tokens of width 64
        (2, (1, 3, 5, 64))
    """
    layers = _attention_layers(model)
    if not layers:
        raise BadInputError(f"{type(model).__name__} has no self-attention layer with a qkv projection (timm's "
                            "Attention); MiniLM distillation needs a transformer, pick another loss for CNNs")
    records: list[AttentionQKV] = []

    def hook_for(attn: nn.Module):  # noqa: ANN202 - a forward hook
        def hook(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            b, n, _ = out.shape
            q, k, v = out.reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
            q = attn.q_norm(q) if hasattr(attn, "q_norm") else q
            k = attn.k_norm(k) if hasattr(attn, "k_norm") else k
            records.append(AttentionQKV(q, k, v))
        return hook

    handles = [layer.qkv.register_forward_hook(hook_for(layer)) for layer in layers]
    try:
        yield records
    finally:
        for h in handles:
            h.remove()
