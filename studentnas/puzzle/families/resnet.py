"""Puzzle family for timm ResNet teachers (``BasicBlock`` and ``Bottleneck``), following METHODS.md §3.9.

**Decomposition.** The prefix is the stem (``conv1, bn1, act1, maxpool``), the parent layers are
every block of ``layer1 .. layer4`` in order (the timm block modules themselves, residual and final
ReLU included) and the suffix is the head (global pool, dropout, fc, run by the teacher's own
``forward_head``). Prefix and suffix hold the teacher's modules, never copies. A block whose type
or make-up this family does not handle (a custom module, grouped convs, anti-aliasing, a norm other
than ``BatchNorm2d``) gets kind ``unknown`` and only its ``teacher`` entry.

**Library per block** (every built module maps the parent's input shape to its output shape):

- ``teacher``: a deep copy of the parent block (BLD never trains the teacher's own module).
- ``bottleneck`` / ``basic`` with ``{"width": f}``: the parent's type with its mid channels cut to
  ``round(f * mid)``. The channels kept are those ranked highest by a data-free importance,
  ``|gamma_c|`` of the mid BN times ``||W_next[:, c]||_2`` (the L2 norm of the next conv's input
  slice for channel ``c``): how large the channel is after BN times how much the next conv reads
  it. Conv and BN weights are sliced consistently (reduce conv out, 3x3 in/out, expand conv in,
  the BNs) and kept in their original order, so ``width=1.0`` reproduces the parent exactly. The
  shortcut (downsample) and SE module are copied.
- ``basic`` for a bottleneck parent: a 3x3-3x3 ``BasicBlock`` at the bottleneck's reduce width with
  the parent's stride and shortcut. Its first conv is the parent's 1x1 reduce placed on the centre
  tap (BN copied); the second conv is He-random with its BN's gamma at zero (timm's
  ``zero_init_last``), so the block starts as its shortcut path and BLD learns the rest.
- ``linear``: one 1x1 conv (the block's stride) plus BN, no activation. It starts as the parent's
  shortcut path: the downsample conv's centre tap and BN when there is one, an exact identity
  otherwise (random zero-mean He init only for a shortcut of another make).
- ``noop``: ``nn.Identity``, only where the stride is 1 and ``C_in == C_out``.
- ``merge`` with ``{"width": w}``: one block of the first parent's type standing in for two
  consecutive blocks of the same stage, initialised from the first (width-pruned as above). The
  second block of a stage keeps shape, so the first block's stride and channels already map the
  pair's input to its output.

Random initialisations draw from a generator seeded by the replacement's id, so a build is
deterministic.

Example:
    >>> import timm
    >>> from studentnas.puzzle.decompose import assemble
    >>> teacher = timm.create_model("resnet18", num_classes=10).eval()
    >>> family = ResNetFamily()
    >>> dec = family.decompose(teacher, (3, 32, 32))
    >>> x = torch.randn(2, 3, 32, 32)
    >>> torch.equal(dec(x), teacher(x))
    True
    >>> [(info.name, info.kind, info.extra["stride"]) for info in dec.infos[1:3]]
    [('layer1.1', 'basic', 1), ('layer2.0', 'basic', 2)]
    >>> reps = family.replacements(dec, {"widths": (0.5,), "merge_widths": (0.5,)})
    >>> [r.label for r in reps if r.start == 2]
    ['teacher@2', 'basic(width=0.5)@2', 'linear@2', 'merge(width=0.5)@2-3']
    >>> chosen = [r for r in reps if r.kind == "merge"]
    >>> student = assemble(dec, family, chosen).eval()
    >>> student(x).shape, len(student.blocks)
    (torch.Size([2, 10]), 4)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.puzzle.decompose import FAMILIES, Decomposed, Family
from studentnas.puzzle.families.resnet_library import (
    BUILDERS,
    check_span,
    mergeable,
    parse_options,
    single_replacements,
    width_replacements,
)
from studentnas.puzzle.library import LayerInfo, Replacement

__all__ = ["BLOCK_KINDS", "ResNetFamily", "ResNetHead", "ResNetStem", "block_kind"]

#: timm block classes this family understands, by the kind name Puzzle uses.
BLOCK_KINDS: dict[type, str] = {BasicBlock: "basic", Bottleneck: "bottleneck"}


# ---------------------------------------------------------------------------------------------------------------------
# Prefix and suffix: views of the teacher's own modules


class ResNetStem(nn.Module):
    """The teacher's stem (``conv1, bn1, act1, maxpool``), holding the teacher's own modules."""

    def __init__(self, model: ResNet):
        super().__init__()
        self.conv1, self.bn1, self.act1, self.maxpool = model.conv1, model.bn1, model.act1, model.maxpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))


class ResNetHead(nn.Module):
    """The teacher's head (global pool, dropout, fc), run by the teacher class's own ``forward_head``."""

    def __init__(self, model: ResNet):
        super().__init__()
        self.global_pool, self.fc = model.global_pool, model.fc
        self.drop_rate = float(getattr(model, "drop_rate", 0.0))
        self._forward_head = type(model).forward_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_head(self, x)


# ---------------------------------------------------------------------------------------------------------------------
# Reading a block


def _convs(block: nn.Module, kind: str) -> list[nn.Module]:
    names = ("conv1", "conv2", "conv3") if kind == "bottleneck" else ("conv1", "conv2")
    return [getattr(block, n, None) for n in names]


def _bns(block: nn.Module, kind: str) -> list[nn.Module]:
    names = ("bn1", "bn2", "bn3") if kind == "bottleneck" else ("bn1", "bn2")
    return [getattr(block, n, None) for n in names]


def block_kind(block: nn.Module) -> str:
    """``basic``/``bottleneck`` for a timm block this family can prune and rebuild, else ``unknown``."""
    kind = BLOCK_KINDS.get(type(block), "unknown")
    if kind == "unknown":
        return kind
    plain_convs = all(type(c) is nn.Conv2d and c.groups == 1 for c in _convs(block, kind))
    plain_bns = all(type(b) is nn.BatchNorm2d and b.affine and b.track_running_stats for b in _bns(block, kind))
    no_aa = isinstance(getattr(block, "aa", nn.Identity()), nn.Identity)
    return kind if plain_convs and plain_bns and no_aa else "unknown"


def _stride_conv(block: nn.Module, kind: str) -> nn.Conv2d:
    """The conv that carries the block's stride (3x3 of a bottleneck, first 3x3 of a basic block)."""
    return block.conv2 if kind == "bottleneck" else block.conv1


def _layer_extra(block: nn.Module, kind: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> dict:
    extra: dict[str, Any] = {"in_channels": in_shape[0], "out_channels": out_shape[0], "type": type(block).__name__}
    if kind == "unknown":
        spatial = in_shape[1] // out_shape[1] if len(in_shape) == 3 and len(out_shape) == 3 else 1
        return {**extra, "stride": max(1, spatial), "mid_channels": None}
    mid = block.conv2.out_channels if kind == "bottleneck" else block.conv1.out_channels
    return {**extra, "stride": int(_stride_conv(block, kind).stride[0]), "mid_channels": int(mid)}


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block (BN running stats untouched), each module's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _trace_shapes(prefix: nn.Module, layers: Sequence[nn.Module],
                  example: torch.Tensor) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each layer's (input, output) shape without the batch dim, from one forward pass of ``example``."""
    shapes = []
    with torch.no_grad():
        hidden = prefix(example)
        for layer in layers:
            out = layer(hidden)
            shapes.append((tuple(hidden.shape[1:]), tuple(out.shape[1:])))
            hidden = out
    return shapes


def _in_chans(model: ResNet) -> int:
    return next(m for m in model.conv1.modules() if isinstance(m, nn.Conv2d)).in_channels


@FAMILIES.register()
class ResNetFamily(Family):
    """timm ``ResNet`` teachers with ``BasicBlock`` (resnet18/34) or ``Bottleneck`` (resnet26/50/101) blocks."""

    name = "resnet"

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, ResNet)

    def decompose(self, model: nn.Module, input_shape: tuple[int, ...]) -> Decomposed:
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3:
            raise BadInputError(f"ResNet input_shape {input_shape} must be (channels, height, width), e.g. (3, 32, 32)")
        prefix, suffix = ResNetStem(model), ResNetHead(model)
        names, blocks = [], []
        for stage in range(1, 5):
            for j, block in enumerate(getattr(model, f"layer{stage}")):
                names.append((f"layer{stage}.{j}", stage))
                blocks.append(block)
        layers = nn.ModuleList(blocks)
        example = torch.zeros(1, *input_shape)
        try:
            with _eval_mode(model):
                shapes = _trace_shapes(prefix, layers, example)
        except RuntimeError as err:
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise BadInputError(f"input_shape {input_shape} does not fit this ResNet ({first_line}); give "
                                f"({_in_chans(model)}, H, W) with H, W >= 1") from None
        infos = []
        for index, ((name, stage), block, (in_shape, out_shape)) in enumerate(zip(names, blocks, shapes)):
            kind = block_kind(block)
            infos.append(LayerInfo(index, name, kind, in_shape, out_shape, stage,
                                   _layer_extra(block, kind, in_shape, out_shape)))
        return Decomposed(self.name, prefix, layers, suffix, infos, input_shape, model=model)

    def replacements(self, dec: Decomposed, options: Mapping[str, object] | None = None) -> list[Replacement]:
        opts = parse_options(options)
        reps: list[Replacement] = []
        for i, info in enumerate(dec.infos):
            reps += single_replacements(info, opts)
            if opts["merge"] and i + 1 < len(dec.infos) and mergeable(info, dec.infos[i + 1]):
                reps += width_replacements(info, "merge", opts["merge_widths"], i, i + 2)
        return reps

    def build(self, dec: Decomposed, replacement: Replacement) -> nn.Module:
        check_span(dec, replacement)
        module = BUILDERS[replacement.kind](dec, replacement)
        return module.train(dec.layers[replacement.start].training)
