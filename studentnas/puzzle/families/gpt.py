"""Puzzle family ``gpt``: the project's decoder-only language model (:class:`studentnas.lm.model.GPT`).

The prefix is ``drop(tok_emb(tokens) + pos_emb[:, :T])`` (the model's own ``embed``), every
``Block`` is two parent layers ``x + attn(norm1(x))`` and ``x + mlp(norm2(x))``, and the suffix is
``head(norm(x))``. Replacements reuse the model's own :class:`~studentnas.lm.model.CausalSelfAttention`
(fewer query heads, fewer K/V heads) and :class:`~studentnas.lm.model.MLP` at smaller sizes, so every
replacement stays causal; ``linear`` works per token. The replacement grid is
:class:`~studentnas.puzzle.families.transformer.TransformerFamily`'s.

Example:
    >>> import torch
    >>> from studentnas.lm import create_lm
    >>> model = create_lm("gpt_tiny", layers=2).eval()
    >>> dec = GptFamily().decompose(model, (16,))
    >>> [info.kind for info in dec.infos], dec.infos[0].extra["heads"], dec.input_dtype
    (['attn', 'ffn', 'attn', 'ffn'], 4, torch.int64)
    >>> tokens = torch.randint(0, 256, (2, 16))
    >>> torch.equal(dec(tokens), model(tokens))
    True
"""

from __future__ import annotations

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.lm.model import GPT, MLP, Block, CausalSelfAttention
from studentnas.puzzle.decompose import FAMILIES, Decomposed
from studentnas.puzzle.families.transformer import TransformerFamily, split_blocks, transformer_infos
from studentnas.puzzle.families.transformer_modules import Residual, linear_from
from studentnas.puzzle.families.transformer_pruning import AttnWeights, FfnWeights


class GptPrefix(nn.Module):
    """Tokens ``(B, T)`` -> hidden ``(B, T, D)``: token plus position embeddings, dropout (``GPT.embed``)."""

    def __init__(self, model: GPT):
        super().__init__()
        self.config = model.config
        self.tok_emb, self.pos_emb, self.drop = model.tok_emb, model.pos_emb, model.drop

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return GPT.embed(self, tokens)  # type: ignore[arg-type]


class GptSuffix(nn.Module):
    """Hidden after the last block -> logits ``(B, T, V)``: ``head(norm(x))``."""

    def __init__(self, model: GPT):
        super().__init__()
        self.norm, self.head = model.norm, model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x))


def block_sizes(block: nn.Module) -> dict[str, int] | None:
    """``{heads, kv_heads, head_dim, dim, ffn_dim}`` of a parseable GPT ``Block``; None otherwise."""
    if type(block) is not Block or type(block.attn) is not CausalSelfAttention or type(block.mlp) is not MLP:
        return None
    attn = block.attn
    return {"heads": attn.heads, "kv_heads": attn.kv_heads, "head_dim": attn.head_dim, "dim": attn.q.in_features,
            "ffn_dim": block.mlp.fc1.out_features}


@FAMILIES.register()
class GptFamily(TransformerFamily):
    """The project's GPT language models (``studentnas.lm``: ``gpt_tiny``, ``gpt_small``)."""

    name = "gpt"

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, GPT)

    def decompose(self, model: nn.Module, input_shape: tuple[int, ...]) -> Decomposed:
        if not self.matches(model):
            raise BadInputError(f"the gpt family takes studentnas.lm GPT teachers, got {type(model).__name__}")
        context = model.config.context
        if len(input_shape) != 1 or not 1 <= int(input_shape[0]) <= context:
            raise BadInputError(f"gpt teacher: the input shape must be (T,) with 1 <= T <= {context} (the context), "
                                f"got {tuple(input_shape)}")
        layers, blocks = split_blocks(model.blocks, block_sizes, lambda block: (
            Residual(block.norm1, block.attn), Residual(block.norm2, block.mlp)))
        shape = (int(input_shape[0]), model.config.dim)
        return Decomposed(self.name, GptPrefix(model), nn.ModuleList(layers), GptSuffix(model),
                          transformer_infos(blocks, shape), (int(input_shape[0]),), torch.long, model)

    def attn_weights(self, attn: nn.Module) -> AttnWeights:
        return AttnWeights(attn.heads, attn.kv_heads, attn.head_dim,
                           *(p.detach() for p in (attn.q.weight, attn.k.weight, attn.v.weight, attn.proj.weight,
                                                  attn.q.bias, attn.k.bias, attn.v.bias, attn.proj.bias)))

    def make_attn(self, parent: nn.Module, weights: AttnWeights) -> nn.Module:
        w = weights
        attn = CausalSelfAttention(w.dim, w.heads, w.kv_heads, w.head_dim, parent.dropout)
        attn.q, attn.k, attn.v = linear_from(w.wq, w.bq), linear_from(w.wk, w.bk), linear_from(w.wv, w.bv)
        attn.proj = linear_from(w.wo, w.bo)
        return attn

    def ffn_weights(self, mlp: nn.Module) -> FfnWeights:
        return FfnWeights(mlp.fc1.weight.detach(), mlp.fc2.weight.detach(), mlp.fc1.bias.detach(),
                          mlp.fc2.bias.detach())

    def make_ffn(self, parent: nn.Module, weights: FfnWeights) -> nn.Module:
        mlp = MLP(weights.w1.shape[1], weights.hidden, parent.drop.p)
        mlp.fc1, mlp.fc2 = linear_from(weights.w1, weights.b1), linear_from(weights.w2, weights.b2)
        return mlp
