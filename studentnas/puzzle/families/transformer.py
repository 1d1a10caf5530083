"""What the transformer families (ViT, GPT) share: the replacement grid, its builders and the base family.

A pre-norm transformer block ``x = x + attn(norm1(x)); x = x + mlp(norm2(x))`` is two Puzzle
parent layers, ``attn_i`` and ``ffn_i``, each a :class:`Residual` around the teacher's own modules.
:class:`TransformerFamily` lists the same replacement grid for every transformer teacher and builds
every replacement; a concrete family (``vit``, ``gpt``) only decomposes its teacher and converts its
attention and MLP modules to and from plain weight tensors (:class:`AttnWeights`,
:class:`FfnWeights`). The modules live in :mod:`~studentnas.puzzle.families.transformer_modules`,
the weights and pruning in :mod:`~studentnas.puzzle.families.transformer_pruning`.

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

**Initialisation from the parent** is data-free: head pruning, fewer K/V heads and FFN pruning as the
pruning module's docstring describes; ``linear`` (``x + W norm(x) + b``) starts as a no-op and BLD
trains it (:class:`LinearResidual`).

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
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.puzzle.decompose import Decomposed, Family
from studentnas.puzzle.families.transformer_modules import LinearResidual, Residual
from studentnas.puzzle.families.transformer_pruning import (
    AttnWeights,
    FfnWeights,
    keep_heads,
    kv_for_heads,
    round_half_up,
    top_units,
)
from studentnas.puzzle.library import LayerInfo, Replacement

__all__ = ["BLOCK_KINDS", "DEFAULT_OPTIONS", "LAYER_KINDS", "TransformerFamily", "attn_replacements",
           "ffn_replacements", "parse_options", "split_blocks", "transformer_infos"]

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


# --------------------------------------------------------------------------------------------- options
def parse_options(options: Mapping[str, object] | None) -> dict[str, Any]:
    """``options`` over :data:`DEFAULT_OPTIONS`, checked; unknown keys and bad values are a :class:`BadInputError`.

    Example:
        >>> parse_options({"ffn_fractions": [0.5]})["ffn_fractions"]
        (0.5,)
        >>> parse_options({"heads": 2})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        studentnas.core.errors.BadInputError: transformer library options: unknown key(s) heads; valid keys: ...
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


def split_blocks(blocks: Iterable[nn.Module], sizes_of: Callable[[nn.Module], dict[str, int] | None],
                 residuals: Callable[[nn.Module], Sequence[nn.Module]],
                 ) -> tuple[list[nn.Module], list[tuple[str, dict[str, int] | None]]]:
    """Parent layers and ``(name, sizes)`` (the input of :func:`transformer_infos`) of a teacher's ``blocks``.

    Block ``i`` is named ``blocks.i``; a block ``sizes_of`` parses becomes the two layers
    ``residuals(block)`` (attention, FFN), any other block stays one layer.
    """
    layers: list[nn.Module] = []
    parsed: list[tuple[str, dict[str, int] | None]] = []
    for i, block in enumerate(blocks):
        sizes = sizes_of(block)
        parsed.append((f"blocks.{i}", sizes))
        if sizes is None:
            layers.append(block)
        else:
            layers += residuals(block)
    return layers, parsed


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
