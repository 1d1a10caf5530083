"""The modules the transformer families build: residual layer wrappers, the linear replacement, grouped attention.

A parent layer is a :class:`Residual` around the teacher's own ``norm`` and attention or MLP
modules; ``linear`` and ``block_linear`` are a :class:`LinearResidual`; the ViT family's fewer-K/V-heads
attention is a :class:`GroupedAttention`; :func:`linear_from` turns pruned weight tensors back into
``nn.Linear`` layers.

*Linear* (``x + W norm(x) + b``, norm copied from the parent) starts at ``W = 0, b = 0``, that is as a
no-op, and BLD trains it; :meth:`LinearResidual.fit_` sets it to the least-squares solution on
recorded activations instead.

Example:
    >>> import torch
    >>> from torch import nn
    >>> layer = Residual(nn.LayerNorm(8), nn.Linear(8, 8), drop_path=nn.Dropout(0.5)).eval()
    >>> x = torch.randn(2, 5, 8)
    >>> torch.equal(layer(x), x + layer.body(layer.norm(x)))   # drop_path is off in eval mode
    True
    >>> linear_from(torch.eye(3), None)
    Linear(in_features=3, out_features=3, bias=False)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.puzzle.families.transformer_pruning import AttnWeights


class Residual(nn.Module):
    """A pre-norm residual sub-block: ``x + drop_path(scale(body(norm(x))))``.

    Wrapping the teacher's own ``norm``, ``body`` (attention or MLP), ``scale`` (timm's LayerScale,
    or none) and ``drop_path`` modules makes one parent layer without copying a weight.
    """

    def __init__(self, norm: nn.Module, body: nn.Module, scale: nn.Module | None = None,
                 drop_path: nn.Module | None = None):
        super().__init__()
        self.norm, self.body = norm, body
        self.scale = scale if scale is not None else nn.Identity()
        self.drop_path = drop_path if drop_path is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.scale(self.body(self.norm(x))))


class LinearResidual(nn.Module):
    """``x + linear(norm(x))``: the ``linear`` and ``block_linear`` replacements (per token, so causal).

    It starts as a no-op (zero weight and bias); :meth:`fit_` sets the least-squares solution instead.

    Example:
        >>> import torch
        >>> lin = LinearResidual(torch.nn.LayerNorm(4), 4)
        >>> x = torch.randn(2, 3, 4)
        >>> torch.equal(lin(x), x)
        True
        >>> y = x + 2 * lin.norm(x) + 1          # a target that is exactly linear in norm(x)
        >>> lin.fit_(x, y, ridge=0.0) < 1e-6
        True
    """

    def __init__(self, norm: nn.Module, dim: int):
        super().__init__()
        self.norm = norm
        self.linear = nn.Linear(dim, dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(self.norm(x))

    @torch.no_grad()
    def fit_(self, inputs: torch.Tensor, outputs: torch.Tensor, ridge: float = 1e-4) -> float:
        """Set ``linear`` to the ridge least-squares fit of ``outputs - inputs`` on ``norm(inputs)``.

        ``inputs``/``outputs`` are the parent span's recorded activations ``(..., dim)``. Solved in
        float64 from the normal equations; returns the normalised MSE of the fitted module.
        """
        feats = self.norm(inputs).reshape(-1, inputs.shape[-1]).double()
        target = (outputs - inputs).reshape(-1, inputs.shape[-1]).double()
        design = torch.cat([feats, torch.ones(len(feats), 1, dtype=feats.dtype)], dim=1)
        gram = design.T @ design + ridge * len(design) * torch.eye(design.shape[1], dtype=design.dtype)
        solution = torch.linalg.solve(gram, design.T @ target)  # (dim + 1, dim)
        self.linear.weight.copy_(solution[:-1].T.to(self.linear.weight.dtype))
        self.linear.bias.copy_(solution[-1].to(self.linear.bias.dtype))
        err = (self(inputs) - outputs).pow(2).sum() / (outputs.pow(2).sum() + 1e-6)
        return float(err)


class GroupedAttention(nn.Module):
    """Self-attention with ``kv_heads`` K/V heads shared by ``heads // kv_heads`` query heads each (GQA).

    The ViT family's fewer-K/V-heads replacement, built from timm's fused ``qkv`` weights; optional
    per-head ``q_norm``/``k_norm`` (timm's ``qk_norm``) and ``causal`` masking.

    Example:
        >>> import torch
        >>> attn = GroupedAttention(dim=8, heads=4, kv_heads=2, head_dim=2)
        >>> attn(torch.randn(1, 3, 8)).shape, attn.k.weight.shape
        (torch.Size([1, 3, 8]), torch.Size([4, 8]))
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, qkv_bias: bool = True,
                 proj_bias: bool = True, causal: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 q_norm: nn.Module | None = None, k_norm: nn.Module | None = None):
        super().__init__()
        if heads % kv_heads:
            raise BadInputError(f"attention: heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.causal, self.attn_drop = causal, attn_drop
        self.q = nn.Linear(dim, heads * head_dim, bias=qkv_bias)
        self.k = nn.Linear(dim, kv_heads * head_dim, bias=qkv_bias)
        self.v = nn.Linear(dim, kv_heads * head_dim, bias=qkv_bias)
        self.q_norm = q_norm if q_norm is not None else nn.Identity()
        self.k_norm = k_norm if k_norm is not None else nn.Identity()
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    @classmethod
    def from_weights(cls, weights: AttnWeights, **kwargs: Any) -> GroupedAttention:
        """A module holding copies of ``weights``; ``kwargs`` as for the constructor (masking, dropout, norms)."""
        w = weights
        attn = cls(w.dim, w.heads, w.kv_heads, w.head_dim, qkv_bias=w.bq is not None, proj_bias=w.bo is not None,
                   **kwargs)
        attn.q, attn.k, attn.v = linear_from(w.wq, w.bq), linear_from(w.wk, w.bk), linear_from(w.wv, w.bv)
        attn.proj = linear_from(w.wo, w.bo)
        return attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q_norm(self.q(x).view(b, n, self.heads, self.head_dim).transpose(1, 2))
        k = self.k_norm(self.k(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2))
        v = self.v(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0,
                                             is_causal=self.causal)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)))


def linear_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` ``(out, in)`` and ``bias``."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer
