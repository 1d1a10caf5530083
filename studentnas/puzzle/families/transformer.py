"""What the transformer families (ViT, GPT) share: residual layer wrappers, replacement modules and pruning.

A pre-norm transformer block ``x = x + attn(norm1(x)); x = x + mlp(norm2(x))`` is two Puzzle
parent layers, ``attn_i`` and ``ffn_i``, each a :class:`Residual` around the teacher's own modules.
:class:`TransformerFamily` lists the same replacement grid for every transformer teacher and builds
every replacement; a concrete family (``vit``, ``gpt``) only decomposes its teacher and converts its
attention and MLP modules to and from plain weight tensors (:class:`AttnWeights`,
:class:`FfnWeights`).

**Replacements** (``options`` keys and their defaults in :data:`DEFAULT_OPTIONS`):

* attention layers: ``teacher``; ``attn`` ``{"heads": h}`` keeps ``h`` query heads for every
  fraction in ``head_fractions`` (``h = round_half_up(H * f)``, at least 1); ``attn``
  ``{"kv_heads": k}`` is grouped-query attention with ``k`` K/V heads for every ``k`` in
  ``kv_heads`` that divides ``H`` and is below the parent's K/V heads; ``linear``; ``noop``.
* FFN layers: ``teacher``; ``ffn`` ``{"fraction": f}`` keeps ``round_half_up(ffn_dim * f)`` hidden
  units for every ``f`` in ``ffn_fractions``; ``linear``; ``noop``.
* with ``merge`` true, every parsed block (attention + FFN, layers ``2i, 2i+1``) also gets
  ``block_linear`` and ``block_noop`` spanning both layers.

Variants that equal the teacher (all heads, every hidden unit) are not listed; two fractions that
round to the same size are listed once. A block a family cannot parse is one ``unknown`` layer that
keeps only its ``teacher`` entry.

**Initialisation from the parent, data-free:**

* *Head pruning.* A head's importance is ``||W_o[:, head]||_F * ||W_q[head, :]||_F``: the norm of its
  slice of the output projection (how much it can write into the residual stream) times the norm of
  its query slice (how sharply it can attend). A K/V group's importance is the sum over its query
  heads. With ``h`` of ``H`` query heads kept, the K/V heads shrink in proportion: ``g`` groups
  (``g`` closest to ``G * h / H`` such that ``h / g`` heads fit in one group) with the largest
  importance are kept, and in each the ``h / g`` most important heads. Every kept query head thus
  keeps its own K/V head and the layer stays a slice of the parent; heads keep their order.
* *Fewer K/V heads* (modelopt's ``AverageKV``): the new K/V head ``j`` serves query heads
  ``j*H/k .. (j+1)*H/k - 1`` and its K and V projections are the mean of the parent K/V
  projections those query heads used.
* *FFN pruning.* Hidden unit ``i`` has importance ``||W_fc2[:, i]|| * ||W_fc1[i, :]||`` (how much
  it can read times how much it can write); the largest are kept, in order.
* *Linear* (``x + W norm(x) + b``, norm copied from the parent) starts at ``W = 0, b = 0``, that is
  as a no-op, and BLD trains it; :meth:`LinearResidual.fit_` sets it to the least-squares solution
  on recorded activations instead.

Example:
    >>> import torch
    >>> from torch import nn
    >>> layer = Residual(nn.LayerNorm(8), nn.Linear(8, 8))
    >>> x = torch.randn(2, 5, 8)
    >>> torch.equal(layer(x), x + layer.body(layer.norm(x)))
    True
    >>> keep_heads(torch.tensor([1.0, 4.0, 2.0, 3.0]), kv_heads=4, heads=2)   # MHA: the top 2 heads
    ([1, 3], [1, 3])
    >>> keep_heads(torch.tensor([1.0, 4.0, 2.0, 5.0]), kv_heads=2, heads=2)   # GQA: the best group, whole
    ([2, 3], [1])
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.errors import BadInputError
from studentnas.puzzle.decompose import Decomposed, Family
from studentnas.puzzle.library import LayerInfo, Replacement

#: Library options of the transformer families and their defaults.
DEFAULT_OPTIONS: dict[str, Any] = {
    "head_fractions": (0.5, 0.25),
    "kv_heads": (2, 1),
    "ffn_fractions": (0.75, 0.5, 0.25),
    "merge": True,
}

#: Replacement kinds per parent layer kind (``block_*`` span a whole attention + FFN block).
LAYER_KINDS: dict[str, tuple[str, ...]] = {
    "attn": ("teacher", "attn", "linear", "noop"),
    "ffn": ("teacher", "ffn", "linear", "noop"),
    "unknown": ("teacher",),
}
BLOCK_KINDS = ("block_linear", "block_noop")


# --------------------------------------------------------------------------------------------- modules
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


# --------------------------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class AttnWeights:
    """An attention's projections as plain tensors: ``wq (H*hd, D)``, ``wk``/``wv (G*hd, D)``, ``wo (D, H*hd)``.

    Biases may be None. Query head ``h`` uses K/V head ``h // (heads // kv_heads)``.
    """

    heads: int
    kv_heads: int
    head_dim: int
    wq: torch.Tensor
    wk: torch.Tensor
    wv: torch.Tensor
    wo: torch.Tensor
    bq: torch.Tensor | None = None
    bk: torch.Tensor | None = None
    bv: torch.Tensor | None = None
    bo: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return int(self.wq.shape[1])

    def _rows(self, heads: Sequence[int]) -> torch.Tensor:
        return torch.cat([torch.arange(h * self.head_dim, (h + 1) * self.head_dim) for h in heads])

    def head_importance(self) -> torch.Tensor:
        """``||W_o[:, head]||_F * ||W_q[head, :]||_F`` per query head, shape ``(heads,)``."""
        wq = self.wq.detach().reshape(self.heads, self.head_dim, -1)
        wo = self.wo.detach().reshape(self.wo.shape[0], self.heads, self.head_dim)
        return wq.flatten(1).norm(dim=1) * wo.transpose(0, 1).flatten(1).norm(dim=1)

    def select(self, heads: Sequence[int], kv_heads: Sequence[int]) -> AttnWeights:
        """Only query ``heads`` and K/V ``kv_heads`` (as :func:`keep_heads` returns them)."""
        q_rows, kv_rows = self._rows(heads), self._rows(kv_heads)

        def pick(t: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
            return None if t is None else t[rows].clone()

        return replace(self, heads=len(heads), kv_heads=len(kv_heads), wq=self.wq[q_rows].clone(),
                       wk=self.wk[kv_rows].clone(), wv=self.wv[kv_rows].clone(), wo=self.wo[:, q_rows].clone(),
                       bq=pick(self.bq, q_rows), bk=pick(self.bk, kv_rows), bv=pick(self.bv, kv_rows),
                       bo=None if self.bo is None else self.bo.clone())

    def average_kv(self, kv_heads: int) -> AttnWeights:
        """``kv_heads`` K/V heads, each the mean of the parent K/V projections its query heads used."""
        if kv_heads < 1 or self.heads % kv_heads:
            raise BadInputError(f"attn: kv_heads must divide the parent's {self.heads} heads, got {kv_heads}")
        group, parent_group = self.heads // kv_heads, self.heads // self.kv_heads

        def mean(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            per_kv = t.reshape(self.kv_heads, self.head_dim, *t.shape[1:])
            per_query = per_kv[torch.arange(self.heads) // parent_group]  # the K/V head of every query head
            return per_query.reshape(kv_heads, group, *per_kv.shape[1:]).mean(dim=1).reshape(-1, *t.shape[1:])

        return replace(self, kv_heads=kv_heads, wk=mean(self.wk), wv=mean(self.wv), bk=mean(self.bk),
                       bv=mean(self.bv))


@dataclass(frozen=True)
class FfnWeights:
    """An MLP's ``fc1`` (``w1 (F, D)``, ``b1``) and ``fc2`` (``w2 (D, F)``, ``b2``); biases may be None."""

    w1: torch.Tensor
    w2: torch.Tensor
    b1: torch.Tensor | None = None
    b2: torch.Tensor | None = None

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[0])

    def unit_importance(self) -> torch.Tensor:
        """``||W_fc2[:, i]|| * ||W_fc1[i, :]||`` per hidden unit, shape ``(hidden,)``."""
        return self.w2.detach().norm(dim=0) * self.w1.detach().norm(dim=1)

    def select(self, units: Sequence[int]) -> FfnWeights:
        idx = torch.as_tensor(list(units), dtype=torch.long)
        return FfnWeights(self.w1[idx].clone(), self.w2[:, idx].clone(),
                          None if self.b1 is None else self.b1[idx].clone(),
                          None if self.b2 is None else self.b2.clone())


def linear_from(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` ``(out, in)`` and ``bias``."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


# --------------------------------------------------------------------------------------------- choices
def round_half_up(x: float) -> int:
    """``round`` without banker's rounding: ``round_half_up(1.5) == 2`` and ``round_half_up(2.5) == 3``."""
    return int(math.floor(x + 0.5))


def _top(importance: torch.Tensor, k: int) -> list[int]:
    order = torch.sort(importance, descending=True, stable=True).indices  # ties: the lower index first
    return sorted(int(i) for i in order[:k])


def top_units(importance: torch.Tensor, k: int) -> list[int]:
    """The ``k`` indices of largest ``importance``, in increasing order (ties go to the lower index)."""
    return _top(importance, k)


def kv_for_heads(heads: int, kv_heads: int, new_heads: int) -> int | None:
    """K/V heads for ``new_heads`` of ``heads`` query heads: closest to the parent's ratio, such that
    ``new_heads / g`` is whole and fits in one parent group; None when no such ``g`` exists."""
    group = heads // kv_heads
    fits = [g for g in range(1, kv_heads + 1) if new_heads % g == 0 and new_heads // g <= group]
    if not fits:
        return None
    target = kv_heads * new_heads / heads
    return min(fits, key=lambda g: (abs(g - target), -g))


def keep_heads(importance: torch.Tensor, kv_heads: int, heads: int) -> tuple[list[int], list[int]]:
    """Query heads and K/V heads to keep when pruning to ``heads`` query heads (see the module docstring).

    ``importance`` has one value per parent query head. Raises :class:`BadInputError` when ``heads``
    query heads cannot be laid out in whole groups of the parent.
    """
    parent_heads = len(importance)
    if not 1 <= heads <= parent_heads:
        raise BadInputError(f"attn: heads must be in 1..{parent_heads} (the parent's heads), got {heads}")
    groups = kv_for_heads(parent_heads, kv_heads, heads)
    if groups is None:
        raise BadInputError(f"attn: {heads} query heads cannot be split evenly over the parent's {kv_heads} K/V "
                            f"groups of {parent_heads // kv_heads}; pick a head count that can")
    per_group = heads // groups
    by_group = importance.reshape(kv_heads, parent_heads // kv_heads)
    kept_groups = _top(by_group.sum(dim=1), groups)
    kept_heads = [g * by_group.shape[1] + h for g in kept_groups for h in _top(by_group[g], per_group)]
    return kept_heads, kept_groups


# --------------------------------------------------------------------------------------------- options
def parse_options(options: Mapping[str, object] | None) -> dict[str, Any]:
    """``options`` over :data:`DEFAULT_OPTIONS`, checked; unknown keys and bad values are a :class:`BadInputError`.

    Example:
        >>> parse_options({"ffn_fractions": [0.5]})["ffn_fractions"]
        (0.5,)
        >>> parse_options({"heads": 2})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        studentnas.errors.BadInputError: transformer library options: unknown key(s) heads; valid keys: ffn_fractions...
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise BadInputError(f"transformer library options: unknown key(s) {', '.join(unknown)}; "
                            f"valid keys: {', '.join(sorted(DEFAULT_OPTIONS))}")
    out = {**DEFAULT_OPTIONS, **options}
    for key in ("head_fractions", "ffn_fractions"):
        values = out[key]
        if isinstance(values, (int, float)):
            values = (values,)
        if not isinstance(values, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in values):
            raise BadInputError(f"transformer library options: {key} must be fractions in (0, 1], got {values!r}; "
                                f"e.g. {DEFAULT_OPTIONS[key]}")
        out[key] = tuple(float(v) for v in values)
    values = out["kv_heads"]
    if isinstance(values, int):
        values = (values,)
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise BadInputError(f"transformer library options: kv_heads must be positive integers, got {values!r}; "
                            "e.g. (2, 1)")
    out["kv_heads"] = tuple(values)
    if not isinstance(out["merge"], bool):
        raise BadInputError(f"transformer library options: merge must be true or false, got {out['merge']!r}")
    return out


def attn_replacements(info: LayerInfo, opts: Mapping[str, Any]) -> list[Replacement]:
    """The grid for one attention layer (teacher first); see the module docstring."""
    i, heads, kv = info.index, int(info.extra["heads"]), int(info.extra["kv_heads"])
    out = [Replacement(i, i + 1, "teacher")]
    seen: set[int] = set()
    for f in opts["head_fractions"]:
        h = max(1, round_half_up(heads * f))
        if h < heads and h not in seen and kv_for_heads(heads, kv, h) is not None:
            seen.add(h)
            out.append(Replacement(i, i + 1, "attn", {"heads": h}))
    for k in dict.fromkeys(opts["kv_heads"]):
        if k < kv and heads % k == 0:
            out.append(Replacement(i, i + 1, "attn", {"kv_heads": k}))
    return out + [Replacement(i, i + 1, "linear"), Replacement(i, i + 1, "noop")]


def ffn_replacements(info: LayerInfo, opts: Mapping[str, Any]) -> list[Replacement]:
    """The grid for one FFN layer (teacher first); see the module docstring."""
    i, hidden = info.index, int(info.extra["ffn_dim"])
    out = [Replacement(i, i + 1, "teacher")]
    seen: set[int] = set()
    for f in opts["ffn_fractions"]:
        n = max(1, round_half_up(hidden * f))
        if n < hidden and n not in seen:
            seen.add(n)
            out.append(Replacement(i, i + 1, "ffn", {"fraction": f}))
    return out + [Replacement(i, i + 1, "linear"), Replacement(i, i + 1, "noop")]


def transformer_infos(blocks: Sequence[tuple[str, Mapping[str, int] | None]],
                      shape: tuple[int, ...]) -> list[LayerInfo]:
    """LayerInfos for ``blocks`` given as ``(name, sizes or None)``: two layers (attn, ffn) per parsed block,
    one ``unknown`` layer per block without sizes. ``shape`` is the hidden shape without the batch."""
    infos: list[LayerInfo] = []
    for b, (name, sizes) in enumerate(blocks):
        if sizes is None:
            infos.append(LayerInfo(len(infos), name, "unknown", shape, shape, 0, {"block": b}))
            continue
        for kind, part in (("attn", "attn"), ("ffn", "mlp")):
            infos.append(LayerInfo(len(infos), f"{name}.{part}", kind, shape, shape, 0, {**sizes, "block": b}))
    return infos


# --------------------------------------------------------------------------------------------- family
class TransformerFamily(Family):
    """The replacement grid and builders shared by pre-norm transformer teachers.

    A subclass decomposes its teacher into :class:`Residual` layers (attention, then FFN, per block;
    see :func:`transformer_infos`) and converts its modules to and from weights:
    :meth:`attn_weights`/:meth:`make_attn` and :meth:`ffn_weights`/:meth:`make_ffn`.
    """

    @abstractmethod
    def attn_weights(self, attn: nn.Module) -> AttnWeights:
        """The projections of the teacher's attention module ``attn``."""

    @abstractmethod
    def make_attn(self, parent: nn.Module, weights: AttnWeights) -> nn.Module:
        """An attention module like ``parent`` (dropout, norms, masking) holding ``weights``."""

    @abstractmethod
    def ffn_weights(self, mlp: nn.Module) -> FfnWeights:
        """The two projections of the teacher's MLP ``mlp``."""

    @abstractmethod
    def make_ffn(self, parent: nn.Module, weights: FfnWeights) -> nn.Module:
        """An MLP like ``parent`` (activation, dropout) holding ``weights``."""

    def replacements(self, dec: Decomposed, options: Mapping[str, object]) -> list[Replacement]:
        opts = parse_options(options)
        out: list[Replacement] = []
        for info in dec.infos:
            if info.kind == "attn":
                out += attn_replacements(info, opts)
            elif info.kind == "ffn":
                out += ffn_replacements(info, opts)
            else:
                out.append(Replacement(info.index, info.index + 1, "teacher"))
        if opts["merge"]:
            for a, b in zip(dec.infos, dec.infos[1:]):
                if _is_block_pair(a, b):
                    out += [Replacement(a.index, a.index + 2, kind) for kind in BLOCK_KINDS]
        return out

    def build(self, dec: Decomposed, replacement: Replacement) -> nn.Module:
        r = replacement
        if not 0 <= r.start < r.end <= len(dec.infos):
            raise BadInputError(f"replacement {r.label} lies outside the teacher's layers 0..{len(dec.infos) - 1}")
        if r.kind in BLOCK_KINDS:
            if r.width != 2 or not _is_block_pair(dec.infos[r.start], dec.infos[r.start + 1]):
                raise BadInputError(f"replacement {r.label}: {r.kind} must span the attention and FFN layers of "
                                    "one block (layers 2i..2i+1 of a parsed block)")
        else:
            kind = dec.infos[r.start].kind
            if r.width != 1 or r.kind not in LAYER_KINDS.get(kind, ("teacher",)):
                raise BadInputError(f"replacement {r.label}: a {kind} layer takes one-layer replacements of kind "
                                    f"{', '.join(LAYER_KINDS.get(kind, ('teacher',)))}")
        return _BUILDERS[r.kind](self, dec, r).train(dec.layers[r.start].training)


def _is_block_pair(a: LayerInfo, b: LayerInfo) -> bool:
    return (a.kind, b.kind) == ("attn", "ffn") and a.extra.get("block") == b.extra.get("block")


def _parent(dec: Decomposed, index: int) -> Residual:
    layer = dec.layers[index]
    if not isinstance(layer, Residual):
        raise BadInputError(f"layer {index} ({dec.infos[index].name}) is not a parsed sub-block; only 'teacher' "
                            "replaces it")
    return layer


def _wrap(parent: Residual, body: nn.Module) -> Residual:
    return Residual(copy.deepcopy(parent.norm), body, copy.deepcopy(parent.scale), copy.deepcopy(parent.drop_path))


def _build_teacher(family: TransformerFamily, dec: Decomposed, r: Replacement) -> nn.Module:
    return copy.deepcopy(dec.layers[r.start])


def _build_attn(family: TransformerFamily, dec: Decomposed, r: Replacement) -> nn.Module:
    cfg, parent = r.options, _parent(dec, r.start)
    unknown = sorted(set(cfg) - {"heads", "kv_heads"})
    if unknown or len(cfg) != 1:
        raise BadInputError(f"replacement {r.label}: attn takes exactly one of 'heads' (fewer query heads) or "
                            f"'kv_heads' (fewer K/V heads), got {sorted(cfg) or 'none'}")
    weights = family.attn_weights(parent.body)
    if "heads" in cfg:
        kept, kept_kv = keep_heads(weights.head_importance(), weights.kv_heads, int(cfg["heads"]))
        weights = weights.select(kept, kept_kv)
    else:
        kv = int(cfg["kv_heads"])
        if not 1 <= kv <= weights.kv_heads:
            raise BadInputError(f"replacement {r.label}: kv_heads must be in 1..{weights.kv_heads} "
                                "(the parent's K/V heads)")
        weights = weights.average_kv(kv)
    return _wrap(parent, family.make_attn(parent.body, weights))


def _build_ffn(family: TransformerFamily, dec: Decomposed, r: Replacement) -> nn.Module:
    cfg, parent = r.options, _parent(dec, r.start)
    fraction = cfg.get("fraction")
    if set(cfg) != {"fraction"} or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise BadInputError(f"replacement {r.label}: ffn takes {{'fraction': f}} with f in (0, 1]")
    weights = family.ffn_weights(parent.body)
    keep = max(1, round_half_up(weights.hidden * fraction))
    return _wrap(parent, family.make_ffn(parent.body, weights.select(top_units(weights.unit_importance(), keep))))


def _build_linear(family: TransformerFamily, dec: Decomposed, r: Replacement) -> nn.Module:
    parent = _parent(dec, r.start)
    return LinearResidual(copy.deepcopy(parent.norm), int(dec.infos[r.start].extra["dim"]))


def _build_noop(family: TransformerFamily, dec: Decomposed, r: Replacement) -> nn.Module:
    return nn.Identity()


#: Builders by replacement kind (``block_linear`` takes the block's first norm, as ``linear`` does).
_BUILDERS: dict[str, Callable[[TransformerFamily, Decomposed, Replacement], nn.Module]] = {
    "teacher": _build_teacher,
    "attn": _build_attn,
    "ffn": _build_ffn,
    "linear": _build_linear,
    "noop": _build_noop,
    "block_linear": _build_linear,
    "block_noop": _build_noop,
}
