"""Puzzle family ``vit``: timm ``VisionTransformer`` teachers.

The prefix is timm's ``forward_features`` up to the blocks (``patch_embed``, ``_pos_embed`` with the
class and register tokens and the position embedding, ``patch_drop``, ``norm_pre``); every
``Block`` is two parent layers, ``x + drop_path1(ls1(attn(norm1(x))))`` and
``x + drop_path2(ls2(mlp(norm2(x))))``; the suffix is ``norm`` then ``forward_head`` (pooling,
``fc_norm``, head). The prefix and suffix call timm's own ``_pos_embed``, ``pool`` and
``forward_head`` on the teacher's modules, so they follow the installed timm exactly.

Parsed blocks are timm's pre-norm ``Block`` with the standard ``Attention`` (fused ``qkv``, no
output norm or gate; ``qk_norm`` is fine) and ``Mlp``. Any other block (``ResPostBlock``,
``ParallelScalingBlock``, a SwiGLU MLP ...) is one ``unknown`` layer that keeps only its teacher entry.
Head pruning keeps timm's ``Attention`` (a sliced fused ``qkv``); fewer K/V heads become a
:class:`~studentnas.puzzle.families.transformer.GroupedAttention` built from the fused weights.
The replacement grid is :class:`~studentnas.puzzle.families.transformer.TransformerFamily`'s.

Example:
    >>> import studentnas, timm, torch
    >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, num_classes=10,
    ...                           depth=2).eval()
    >>> family = VitFamily()
    >>> dec = family.decompose(model, (3, 32, 32))
    >>> [info.name for info in dec.infos], dec.infos[0].in_shape
    (['blocks.0.attn', 'blocks.0.mlp', 'blocks.1.attn', 'blocks.1.mlp'], (65, 192))
    >>> x = torch.randn(2, 3, 32, 32)
    >>> torch.allclose(dec(x), model(x), atol=1e-6)
    True
"""

from __future__ import annotations

import copy

import torch
from timm.layers import Attention, Mlp
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.puzzle.decompose import FAMILIES, Decomposed
from studentnas.puzzle.families.transformer import TransformerFamily, split_blocks, transformer_infos
from studentnas.puzzle.families.transformer_modules import GroupedAttention, Residual, linear_from
from studentnas.puzzle.families.transformer_pruning import AttnWeights, FfnWeights

#: Teacher attributes the prefix and the suffix borrow (timm's methods read them by these names).
PREFIX_ATTRS = ("patch_embed", "cls_token", "reg_token", "pos_embed", "pos_drop", "patch_drop", "norm_pre",
                "dynamic_img_size", "no_embed_class", "num_prefix_tokens")
SUFFIX_ATTRS = ("norm", "attn_pool", "pool_include_prefix", "global_pool", "num_prefix_tokens", "fc_norm",
                "head_drop", "head")
#: ``VisionTransformer`` methods a subclass must not override for the decomposition to be exact.
_SAME_METHODS = ("forward", "forward_features", "forward_head", "_pos_embed", "pool")


class VitPrefix(nn.Module):
    """Image ``(B, C, H, W)`` -> tokens ``(B, N, D)``: timm's ``forward_features`` before the blocks."""

    def __init__(self, model: VisionTransformer):
        super().__init__()
        for name in PREFIX_ATTRS:
            setattr(self, name, getattr(model, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = VisionTransformer._pos_embed(self, self.patch_embed(x))  # type: ignore[arg-type]
        return self.norm_pre(self.patch_drop(x))


class VitSuffix(nn.Module):
    """Tokens after the last block -> logits: ``norm`` then timm's ``forward_head``."""

    def __init__(self, model: VisionTransformer):
        super().__init__()
        for name in SUFFIX_ATTRS:
            setattr(self, name, getattr(model, name))

    def pool(self, x: torch.Tensor, pool_type: str | None = None) -> torch.Tensor:
        return VisionTransformer.pool(self, x, pool_type)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return VisionTransformer.forward_head(self, self.norm(x))  # type: ignore[arg-type]


def block_sizes(block: nn.Module) -> dict[str, int] | None:
    """``{heads, kv_heads, head_dim, dim, ffn_dim}`` of a parseable timm ``Block``; None otherwise."""
    if type(block) is not Block:
        return None
    attn, mlp = block.attn, block.mlp
    plain_attn = (type(attn) is Attention and isinstance(attn.norm, nn.Identity)
                  and getattr(attn, "gate", None) is None and isinstance(attn.qkv, nn.Linear))
    plain_mlp = (type(mlp) is Mlp and isinstance(mlp.norm, nn.Identity) and isinstance(mlp.fc1, nn.Linear)
                 and isinstance(mlp.fc2, nn.Linear))
    if not (plain_attn and plain_mlp):
        return None
    return {"heads": attn.num_heads, "kv_heads": attn.num_heads, "head_dim": attn.head_dim,
            "dim": attn.qkv.in_features, "ffn_dim": mlp.fc1.out_features}


@FAMILIES.register()
class VitFamily(TransformerFamily):
    """timm ``VisionTransformer`` teachers (``vit_*``, ``deit_*`` without distillation token)."""

    name = "vit"

    def matches(self, model: nn.Module) -> bool:
        cls = type(model)
        return (isinstance(model, VisionTransformer)
                and all(getattr(cls, m) is getattr(VisionTransformer, m) for m in _SAME_METHODS)
                and all(hasattr(model, a) for a in PREFIX_ATTRS + SUFFIX_ATTRS))

    def decompose(self, model: nn.Module, input_shape: tuple[int, ...]) -> Decomposed:
        if not self.matches(model):
            raise BadInputError(f"the vit family takes timm VisionTransformer teachers, got {type(model).__name__}")
        prefix, suffix = VitPrefix(model), VitSuffix(model)  # type: ignore[arg-type]
        layers, blocks = split_blocks(model.blocks, block_sizes, lambda block: (
            Residual(block.norm1, block.attn, block.ls1, block.drop_path1),
            Residual(block.norm2, block.mlp, block.ls2, block.drop_path2)))
        with torch.no_grad():
            shape = tuple(prefix(torch.zeros(1, *input_shape)).shape[1:])
        return Decomposed(self.name, prefix, nn.ModuleList(layers), suffix, transformer_infos(blocks, shape),
                          tuple(input_shape), torch.float32, model)

    def attn_weights(self, attn: nn.Module) -> AttnWeights:
        inner = attn.num_heads * attn.head_dim
        wq, wk, wv = attn.qkv.weight.detach().split(inner)
        bq = bk = bv = None
        if attn.qkv.bias is not None:
            bq, bk, bv = attn.qkv.bias.detach().split(inner)
        bo = None if attn.proj.bias is None else attn.proj.bias.detach()
        return AttnWeights(attn.num_heads, attn.num_heads, attn.head_dim, wq, wk, wv, attn.proj.weight.detach(),
                           bq, bk, bv, bo)

    def make_attn(self, parent: nn.Module, weights: AttnWeights) -> nn.Module:
        w = weights
        if w.kv_heads != w.heads:
            return GroupedAttention.from_weights(
                w, attn_drop=parent.attn_drop.p, proj_drop=parent.proj_drop.p,
                q_norm=copy.deepcopy(parent.q_norm), k_norm=copy.deepcopy(parent.k_norm))
        attn = copy.deepcopy(parent)
        bias = None if w.bq is None else torch.cat([w.bq, w.bk, w.bv])
        attn.qkv = linear_from(torch.cat([w.wq, w.wk, w.wv]), bias)
        attn.proj = linear_from(w.wo, w.bo)
        attn.num_heads = w.heads
        if hasattr(attn, "attn_dim"):
            attn.attn_dim = w.heads * w.head_dim
        return attn

    def ffn_weights(self, mlp: nn.Module) -> FfnWeights:
        b1 = None if mlp.fc1.bias is None else mlp.fc1.bias.detach()
        b2 = None if mlp.fc2.bias is None else mlp.fc2.bias.detach()
        return FfnWeights(mlp.fc1.weight.detach(), mlp.fc2.weight.detach(), b1, b2)

    def make_ffn(self, parent: nn.Module, weights: FfnWeights) -> nn.Module:
        mlp = copy.deepcopy(parent)
        mlp.fc1, mlp.fc2 = linear_from(weights.w1, weights.b1), linear_from(weights.w2, weights.b2)
        return mlp
