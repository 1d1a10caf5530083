"""Cutting a teacher into ``prefix -> layers -> suffix`` and the family plugins that know how.

Puzzle treats a teacher as a chain: a ``prefix`` (stem, patch embedding, token embedding) turns the
input into a hidden state, every parent *layer* maps a hidden state to one of the same kind
(shape-preserving, or down-sampling for the first block of a ResNet stage), and a ``suffix``
(pooling, norm, classifier or LM head) turns the last hidden state into logits. Every layer
module includes its own residual connection, so a no-op replacement is ``nn.Identity``.

A :class:`Family` plugin (registered in :data:`FAMILIES`, one file per family in
``studentnas/puzzle/families/``) recognises a teacher, decomposes it, lists the replacements its
library offers for every layer and builds each one initialised from the parent's weights. Layers
a family does not understand are reported with kind ``unknown`` and get only their own block.

Example:
    >>> import torch
    >>> from torch import nn
    >>> dec = Decomposed("toy", nn.Identity(), nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)]), nn.Identity(),
    ...                  [], (4,))
    >>> x = torch.ones(1, 4)
    >>> torch.equal(dec(x, {0: (2, nn.Identity())}), x)   # one module standing in for both layers
    True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.registry import Registry
from studentnas.puzzle.library import LayerInfo, Replacement

#: Chosen modules by the first layer of their span: ``{start: (end, module)}``.
Overrides = Mapping[int, tuple[int, nn.Module]]


@dataclass
class Decomposed:
    """A teacher as ``prefix``, parent ``layers`` and ``suffix``; calling it runs the chain.

    ``input_shape`` is one example's input without the batch dimension (``(3, 32, 32)`` for images,
    ``(T,)`` for token ids, whose dtype is ``input_dtype``).
    """

    family: str
    prefix: nn.Module
    layers: nn.ModuleList
    suffix: nn.Module
    infos: list[LayerInfo]
    input_shape: tuple[int, ...]
    input_dtype: torch.dtype = torch.float32
    model: nn.Module | None = None  # the whole teacher, when the parts are views of it

    def __call__(self, x: torch.Tensor, overrides: Overrides | None = None) -> torch.Tensor:
        return self.run_from(0, self.prefix(x), overrides)

    def run_from(self, layer: int, hidden: torch.Tensor, overrides: Overrides | None = None,
                 stop: int | None = None) -> torch.Tensor:
        """Run layers ``layer .. stop-1`` on ``hidden`` (then the suffix when ``stop`` is None)."""
        overrides = overrides or {}
        end = len(self.layers) if stop is None else stop
        i = layer
        while i < end:
            if i in overrides:
                span_end, module = overrides[i]
                hidden = module(hidden)
                i = span_end
            else:
                hidden = self.layers[i](hidden)
                i += 1
        return self.suffix(hidden) if stop is None else hidden

    @property
    def num_features(self) -> int:
        """Channels (image hidden states ``(C, H, W)``) or width (token hidden states ``(T, D)``) at the end."""
        shape = self.infos[-1].out_shape if self.infos else (0,)
        return int(shape[0] if len(shape) == 3 else shape[-1])

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A deterministic input of the right shape and dtype (zeros or token 0)."""
        return torch.zeros(batch, *self.input_shape, dtype=self.input_dtype)

    def modules_for(self, start: int, end: int) -> list[nn.Module]:
        return [self.layers[i] for i in range(start, end)]


class Assembled(nn.Module):
    """A student assembled from a :class:`Decomposed` teacher's prefix/suffix and chosen modules.

    ``blocks[i]`` stands in for parent layers ``spans[i]``; this is the module ``studentnas puzzle``
    exports (its state dict) and global distillation trains. It follows timm's model contract
    (``forward_features``, ``forward_head``, ``num_features``: the channels or width of the last hidden
    state) so proxies and ``studentnas distill`` treat it like any student.
    """

    def __init__(self, prefix: nn.Module, blocks: Sequence[nn.Module], suffix: nn.Module,
                 spans: Sequence[tuple[int, int]], num_features: int = 0):
        super().__init__()
        self.prefix, self.blocks, self.suffix = prefix, nn.ModuleList(blocks), suffix
        self.spans = [tuple(s) for s in spans]
        self.num_features = num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.prefix(x)
        for block in self.blocks:
            hidden = block(hidden)
        return hidden

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.suffix(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class Family(ABC):
    """A kind of teacher Puzzle understands (ResNet, ViT, GPT-style LM).

    Lifecycle: :meth:`matches` picks the family of a teacher, :meth:`decompose` cuts it,
    :meth:`replacements` lists the library for every layer (always including ``teacher`` for each
    layer), and :meth:`build` makes one replacement's module, initialised from the parent layers.
    """

    name: str = ""

    @abstractmethod
    def matches(self, model: nn.Module) -> bool:
        """True when this family can decompose ``model``."""

    @abstractmethod
    def decompose(self, model: nn.Module, input_shape: tuple[int, ...]) -> Decomposed:
        """Cut ``model`` (in eval mode) into prefix, layers and suffix; fill every layer's ``LayerInfo``."""

    @abstractmethod
    def replacements(self, dec: Decomposed, options: Mapping[str, object]) -> list[Replacement]:
        """Every replacement the library offers, ``teacher`` ones included; ``options`` narrows the grid."""

    @abstractmethod
    def build(self, dec: Decomposed, replacement: Replacement) -> nn.Module:
        """The module for ``replacement`` (hidden -> hidden over its span), initialised from the parent."""


FAMILIES: Registry = Registry("Puzzle teacher family", "studentnas.puzzle.families")


def family_for(model: nn.Module, name: str | None = None) -> Family:
    """The registered family that understands ``model`` (or the one called ``name``)."""
    if name is not None:
        return FAMILIES.get(name)()
    for key in FAMILIES.list():
        family = FAMILIES.get(key)()
        if family.matches(model):
            return family
    raise BadInputError(f"Puzzle does not understand a teacher of type {type(model).__name__}; supported families: "
                        f"{', '.join(FAMILIES.list())} (timm ResNets, timm ViTs, the project's GPT LM)")


def ordered_cover(chosen: Sequence[Replacement], num_layers: int) -> list[Replacement]:
    """``chosen`` sorted by first layer; a :class:`BadInputError` unless it covers every layer exactly once."""
    order = sorted(chosen, key=lambda r: r.start)
    position = 0
    for rep in order:
        if rep.start != position:
            raise BadInputError(f"replacements must cover layers 0..{num_layers - 1} exactly once; layer {position} "
                                f"is {'missing' if rep.start > position else 'covered twice'}; re-solve the MIP")
        position = rep.end
    if position != num_layers:
        raise BadInputError(f"replacements stop at layer {position - 1}, the teacher has {num_layers} layers")
    return order


def assemble(dec: Decomposed, family: Family, chosen: Sequence[Replacement]) -> Assembled:
    """Build the student for ``chosen`` replacements, which must cover every parent layer exactly once."""
    order = ordered_cover(chosen, len(dec.layers))
    return Assembled(dec.prefix, [family.build(dec, r) for r in order], dec.suffix, [(r.start, r.end) for r in order],
                     dec.num_features)
