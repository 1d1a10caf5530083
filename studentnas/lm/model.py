"""A small decoder-only (GPT-style) language model over UTF-8 bytes, its presets and checkpoint loading.

The model reads top to bottom as timm's model files do: the modules (attention with grouped-query
heads, MLP, pre-norm block, the GPT), then the preset table (:data:`LMS`) and the public
constructors :func:`create_lm` / :func:`load_lm`. Tokens are bytes (vocabulary 256), so no
tokenizer has to be downloaded. Puzzle replaces blocks, attentions and MLPs of a trained GPT, so
every module takes its sizes explicitly: ``CausalSelfAttention(dim, heads=2, kv_heads=1,
head_dim=32)`` is a cheaper stand-in for a ``(dim, 4, 4, 32)`` parent.

Example:
    >>> import torch
    >>> model = create_lm("gpt_tiny", layers=2)
    >>> tokens = torch.tensor([list(b"hello")])
    >>> model(tokens).shape
    torch.Size([1, 5, 256])
    >>> sorted(LMS.list())
    ['gpt_small', 'gpt_tiny']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.registry import Registry, suggest
from studentnas.runfiles.models import MODEL_KINDS, load_weights, read_header


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a :class:`GPT`. ``head_dim = dim // heads``; ``kv_heads`` < ``heads`` is grouped-query attention."""

    vocab_size: int = 256
    context: int = 128
    dim: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for field in ("vocab_size", "context", "dim", "layers", "heads", "kv_heads", "ffn_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadInputError(f"GPT config: {field} must be a positive integer, got {value!r}")
        if self.dim % self.heads:
            raise BadInputError(f"GPT config: dim ({self.dim}) must be divisible by heads ({self.heads}); "
                                "change one of them")
        if self.heads % self.kv_heads:
            raise BadInputError(f"GPT config: heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads}); "
                                "pick kv_heads among the divisors of heads")
        if not 0.0 <= self.dropout < 1.0:
            raise BadInputError(f"GPT config: dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(f"GPT config: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; ``kv_heads < heads`` shares each K/V head among ``heads // kv_heads``
    query heads (GQA). The input and output width is ``dim``; the inner width is ``heads * head_dim``."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        if heads % kv_heads:
            raise BadInputError(f"attention: heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
        self.heads, self.kv_heads, self.head_dim, self.dropout = heads, kv_heads, head_dim, dropout
        self.q = nn.Linear(dim, heads * head_dim)
        self.k = nn.Linear(dim, kv_heads * head_dim)
        self.v = nn.Linear(dim, kv_heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.kv_heads != self.heads:
            group = self.heads // self.kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                             is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class MLP(nn.Module):
    """``fc2(GELU(fc1(x)))`` with an inner width of ``ffn_dim``."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, kv_heads, head_dim, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, ffn_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """Decoder-only transformer: token + learned position embeddings, ``layers`` blocks, a final norm and an
    untied linear head. ``forward(tokens (B, T)) -> logits (B, T, vocab_size)`` with ``T <= context``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.num_classes = config.vocab_size
        self.num_features = config.dim
        self.tok_emb = nn.Embedding(config.vocab_size, config.dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.context, config.dim))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.kv_heads, config.head_dim, config.ffn_dim, config.dropout)
            for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights and embeddings, zero biases, unit LayerNorms."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.pos_emb, std=0.02)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden state before the first block: token + position embeddings, dropout. ``(B, T) -> (B, T, D)``."""
        t = tokens.shape[-1]
        if t > self.config.context:
            raise BadInputError(f"GPT: {t} tokens exceed the context of {self.config.context}; "
                                "feed at most context tokens at a time")
        return self.drop(self.tok_emb(tokens) + self.pos_emb[:, :t])

    def forward_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden state after the final norm, ``(B, T, D)``."""
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the output of the last block (applies the final norm, then the head)."""
        return self.head(self.norm(hidden))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(tokens))


#: Presets: name -> :class:`GPTConfig`.
LMS: Registry = Registry("language model")
LMS.register("gpt_tiny")(GPTConfig(context=128, dim=128, layers=4, heads=4, kv_heads=4, ffn_dim=512))
LMS.register("gpt_small")(GPTConfig(context=256, dim=256, layers=6, heads=8, kv_heads=8, ffn_dim=1024))


def is_lm(name: str) -> bool:
    """Whether ``name`` is a language-model preset (``gpt_tiny``, ``gpt_small``)."""
    return name in LMS


def lm_config(name: str, **overrides: Any) -> GPTConfig:
    """The preset ``name`` with ``overrides`` (any :class:`GPTConfig` field) applied."""
    base: GPTConfig = LMS.get(name)
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    for key in overrides:
        if key not in fields:
            raise BadInputError(f"unknown GPT config field '{key}'.{suggest(key, sorted(fields))} "
                                f"Known: {', '.join(sorted(fields))}")
    return dataclasses.replace(base, **overrides)


def create_lm(name: str, **overrides: Any) -> GPT:
    """A randomly initialised GPT of preset ``name`` (``torch.manual_seed`` decides the weights)."""
    return GPT(lm_config(name, **overrides))


def read_lm_meta(path: str | Path) -> dict[str, Any] | None:
    """The metadata ``studentnas lm train`` stores in a ``.safetensors`` checkpoint, its ``config`` as a
    :class:`GPTConfig` (None for other files)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    meta = read_header(path)
    if meta is None or meta.get("kind") != "lm":
        return None
    try:
        meta["config"] = GPTConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise BadInputError(f"LM checkpoint '{path}' has unreadable metadata ({err}); "
                            "train it again with `studentnas lm train`") from None
    return meta


def load_lm(name: str, checkpoint: str | Path | None = None) -> GPT:
    """Preset ``name`` with weights from ``checkpoint`` (``.safetensors`` or ``.pth``), in eval mode.

    A checkpoint written by ``studentnas lm train`` carries its config (context, sizes), which is used
    as is; for other files the preset's sizes must match the weights. Without a checkpoint the model is
    randomly initialised.
    """
    from studentnas.data.teachers import read_state_dict

    config = lm_config(name)
    if checkpoint is None:
        return GPT(config).eval()
    meta = read_lm_meta(checkpoint)
    if meta is not None:
        if meta.get("model", name) != name:
            raise BadInputError(f"LM checkpoint '{checkpoint}' was trained as '{meta['model']}', not '{name}'; "
                                f"pass --model {meta['model']}")
        config = meta["config"]
    state = read_state_dict(checkpoint)
    model = GPT(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"{len(missing)} missing keys (e.g. {missing[:2]})" if missing else "",
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:2]})" if unexpected else "",
            f"{len(wrong)} shape mismatches (e.g. {wrong[0]}: checkpoint {tuple(state[wrong[0]].shape)}, "
            f"model {tuple(own[wrong[0]].shape)})" if wrong else "") if part)
        raise BadInputError(f"LM checkpoint '{checkpoint}' does not fit '{name}' ({detail}); "
                            "pass the --model it was trained as")
    model.load_state_dict(state, strict=True)
    return model.eval()


@MODEL_KINDS.register("lm")
def rebuild_lm(path: Path, meta: dict[str, Any]) -> GPT:
    """A language model written by ``studentnas lm train``: its recorded config with the weights of ``path``."""
    return load_weights(GPT(GPTConfig.from_dict(meta["config"])), path)
