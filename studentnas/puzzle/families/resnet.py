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

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from studentnas.errors import BadInputError
from studentnas.puzzle.decompose import FAMILIES, Decomposed, Family
from studentnas.puzzle.library import LayerInfo, Replacement

#: The library grid and its defaults; ``replacements(dec, options)`` accepts exactly these keys.
DEFAULT_OPTIONS: dict[str, Any] = {
    "widths": (0.75, 0.5, 0.25),  # width-pruned blocks of the parent's type
    "basic": True,  # a basic block in place of a bottleneck
    "linear": True,  # one 1x1 conv + BN
    "noop": True,  # identity where the stride is 1 and C_in == C_out
    "merge": True,  # one block for two consecutive blocks of a stage
    "merge_widths": (1.0, 0.5),
}
_FRACTION_KEYS = ("widths", "merge_widths")

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


# ---------------------------------------------------------------------------------------------------------------------
# Slicing convs and BNs


def channel_importance(bn: nn.BatchNorm2d, next_conv: nn.Conv2d) -> torch.Tensor:
    """Data-free importance of each channel ``c`` between ``bn`` and ``next_conv``: ``|gamma_c| * ||W[:, c]||_2``."""
    with torch.no_grad():
        return bn.weight.abs() * next_conv.weight.transpose(0, 1).flatten(1).norm(dim=1)


def _keep(importance: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` most important channels, in their original order (ties: lower index)."""
    ranked = torch.argsort(importance, descending=True, stable=True)[:count]
    return ranked.sort().values


def _width_count(width: float, channels: int) -> int:
    return max(1, int(math.floor(width * channels + 0.5)))


def _slice_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None = None,
                in_idx: torch.Tensor | None = None) -> nn.Conv2d:
    weight = conv.weight.detach()
    weight = weight if out_idx is None else weight[out_idx]
    weight = weight if in_idx is None else weight[:, in_idx]
    new = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode, device=weight.device,
                    dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias if out_idx is None else conv.bias[out_idx])
    return new


def _slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), bn.eps, bn.momentum, device=bn.weight.device, dtype=bn.weight.dtype)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new, name).copy_(getattr(bn, name)[idx])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def prune_basic(block: BasicBlock, width: float) -> BasicBlock:
    """A copy of ``block`` keeping the ``width`` share of its mid channels ranked by :func:`channel_importance`."""
    keep = _keep(channel_importance(block.bn1, block.conv2), _width_count(width, block.conv1.out_channels))
    new = copy.deepcopy(block)
    new.conv1, new.bn1 = _slice_conv(block.conv1, out_idx=keep), _slice_bn(block.bn1, keep)
    new.conv2 = _slice_conv(block.conv2, in_idx=keep)
    return new


def prune_bottleneck(block: Bottleneck, width: float) -> Bottleneck:
    """A copy of ``block`` with both mid tensors cut to ``width``, each ranked by :func:`channel_importance`."""
    keep1 = _keep(channel_importance(block.bn1, block.conv2), _width_count(width, block.conv1.out_channels))
    keep2 = _keep(channel_importance(block.bn2, block.conv3), _width_count(width, block.conv2.out_channels))
    new = copy.deepcopy(block)
    new.conv1, new.bn1 = _slice_conv(block.conv1, out_idx=keep1), _slice_bn(block.bn1, keep1)
    new.conv2, new.bn2 = _slice_conv(block.conv2, out_idx=keep2, in_idx=keep1), _slice_bn(block.bn2, keep2)
    new.conv3 = _slice_conv(block.conv3, in_idx=keep2)
    return new


PRUNERS: dict[str, Callable[[nn.Module, float], nn.Module]] = {"basic": prune_basic, "bottleneck": prune_bottleneck}


# ---------------------------------------------------------------------------------------------------------------------
# Other replacement modules


def _he_normal_(weight: torch.Tensor, generator: torch.Generator) -> None:
    """timm's ResNet conv init (kaiming normal, fan_out, ReLU gain) from an explicit generator."""
    fan_out = weight.shape[0] * weight[0, 0].numel()
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape, generator=generator) * math.sqrt(2.0 / fan_out))


def _generator(replacement: Replacement) -> torch.Generator:
    return torch.Generator().manual_seed(int(replacement.id, 16))


def _centre_tap(weight: torch.Tensor) -> torch.Tensor:
    return weight[:, :, weight.shape[2] // 2, weight.shape[3] // 2]


def _check_materialised(module: nn.Module) -> nn.Module:
    """Guard for modules made on the meta device: every tensor must have been replaced by a real one."""
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"internal error: {type(module).__name__} still has meta tensors {left}")
    return module


def basic_from_bottleneck(block: Bottleneck, generator: torch.Generator) -> BasicBlock:
    """A 3x3-3x3 ``BasicBlock`` at ``block``'s reduce width, stride and shortcut (init in the module docstring)."""
    c_in, mid, c_out = block.conv1.in_channels, block.conv1.out_channels, block.conv3.out_channels
    stride, dilation = block.conv2.stride[0], block.conv2.dilation[0]
    with torch.device("meta"):  # the sub-modules are all replaced below; nothing is allocated twice
        new = BasicBlock(c_in, c_out, stride=stride)
    new.conv1 = nn.Conv2d(c_in, mid, 3, stride, padding=dilation, dilation=dilation, bias=False)
    new.conv2 = nn.Conv2d(mid, c_out, 3, 1, padding=dilation, dilation=dilation, bias=False)
    new.bn1, new.bn2 = copy.deepcopy(block.bn1), nn.BatchNorm2d(c_out, eps=block.bn3.eps, momentum=block.bn3.momentum)
    with torch.no_grad():
        new.conv1.weight.zero_()
        new.conv1.weight[:, :, 1, 1] = _centre_tap(block.conv1.weight)
        new.bn2.weight.zero_()
    _he_normal_(new.conv2.weight, generator)
    new.act1, new.act2 = copy.deepcopy(block.act1), copy.deepcopy(block.act3)
    new.downsample, new.drop_path = copy.deepcopy(block.downsample), copy.deepcopy(block.drop_path)
    return _check_materialised(new)


def _shortcut_conv_bn(downsample: nn.Module | None) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """The (conv, BN) ending a timm downsample path (``downsample_conv`` / ``downsample_avg``), if that is its form."""
    if not isinstance(downsample, nn.Sequential) or len(downsample) < 2:
        return None
    conv, bn = downsample[-2], downsample[-1]
    if type(conv) is nn.Conv2d and conv.groups == 1 and type(bn) is nn.BatchNorm2d:
        return conv, bn
    return None


def linear_block(block: nn.Module, info: LayerInfo, generator: torch.Generator) -> nn.Sequential:
    """1x1 conv (the block's stride) + BN, started as the block's shortcut path (see the module docstring)."""
    c_in, c_out, stride = info.in_shape[0], info.out_shape[0], int(info.extra["stride"])
    conv, bn = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    downsample = getattr(block, "downsample", None)
    source = _shortcut_conv_bn(downsample)
    with torch.no_grad():
        if source is not None:
            conv.weight[:, :, 0, 0] = _centre_tap(source[0].weight)
            bn = copy.deepcopy(source[1])
        elif downsample is None and c_in == c_out:  # identity shortcut: an exact identity in eval mode
            conv.weight[:, :, 0, 0] = torch.eye(c_in)
            bn.running_var.fill_(1.0 - bn.eps)
        else:
            _he_normal_(conv.weight, generator)
    return nn.Sequential(conv, bn)


# ---------------------------------------------------------------------------------------------------------------------
# Options


def _fractions(key: str, value: object) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise BadInputError(f"ResNet library option {key}={value!r} must be a list of fractions in (0, 1], "
                            f"e.g. {key}={DEFAULT_OPTIONS[key]}")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1]
    if bad:
        raise BadInputError(f"ResNet library option {key} has {bad[0]!r}; every width must be a fraction in (0, 1], "
                            f"e.g. {key}={DEFAULT_OPTIONS[key]}")
    return tuple(dict.fromkeys(float(v) for v in value))


def parse_options(options: Mapping[str, object] | None) -> dict[str, Any]:
    """``options`` merged over :data:`DEFAULT_OPTIONS`, validated (unknown keys and bad values are bad input)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise BadInputError(f"unknown ResNet library option(s) {', '.join(map(repr, unknown))}; "
                            f"valid options: {', '.join(DEFAULT_OPTIONS)}")
    merged = {**DEFAULT_OPTIONS, **options}
    for key, value in merged.items():
        if key in _FRACTION_KEYS:
            merged[key] = _fractions(key, value)
        elif not isinstance(value, bool):
            raise BadInputError(f"ResNet library option {key}={value!r} must be true or false")
    return merged


# ---------------------------------------------------------------------------------------------------------------------
# The library


def _width_replacements(info: LayerInfo, kind: str, widths: Sequence[float], start: int, end: int) -> list[Replacement]:
    """One replacement per width, skipping widths that round to a mid-channel count already listed."""
    seen: set[int] = set()
    out = []
    for width in widths:
        count = _width_count(width, info.extra["mid_channels"])
        if count not in seen:
            seen.add(count)
            out.append(Replacement(start, end, kind, {"width": width}))
    return out


def _noop_allowed(info: LayerInfo) -> bool:
    return info.extra["stride"] == 1 and info.in_shape == info.out_shape


def _single_replacements(info: LayerInfo, opts: Mapping[str, Any]) -> list[Replacement]:
    i = info.index
    reps = [Replacement(i, i + 1, "teacher")]
    if info.kind == "unknown":
        return reps
    reps += _width_replacements(info, info.kind, opts["widths"], i, i + 1)
    if info.kind == "bottleneck" and opts["basic"]:
        reps.append(Replacement(i, i + 1, "basic"))
    if opts["linear"]:
        reps.append(Replacement(i, i + 1, "linear"))
    if opts["noop"] and _noop_allowed(info):
        reps.append(Replacement(i, i + 1, "noop"))
    return reps


def _mergeable(first: LayerInfo, second: LayerInfo) -> bool:
    """Two known blocks of one stage whose second keeps shape (so the first's mapping covers the pair)."""
    return ("unknown" not in (first.kind, second.kind) and first.stage == second.stage
            and _noop_allowed(second) and first.out_shape == second.out_shape)


# ---------------------------------------------------------------------------------------------------------------------
# Builders: one per replacement kind


def _width_of(rep: Replacement) -> float:
    key = "merge_widths" if rep.kind == "merge" else "widths"
    return _fractions(key, [rep.options.get("width", 1.0)])[0]


def _build_teacher(dec: Decomposed, rep: Replacement) -> nn.Module:
    copies = [copy.deepcopy(m) for m in dec.modules_for(rep.start, rep.end)]
    return copies[0] if len(copies) == 1 else nn.Sequential(*copies)


def _build_width(dec: Decomposed, rep: Replacement) -> nn.Module:
    info, block = dec.infos[rep.start], dec.layers[rep.start]
    if rep.kind == "basic" and "width" not in rep.options:  # a basic block standing in for a bottleneck
        if info.kind != "bottleneck":
            raise BadInputError(f"{rep.label}: a basic block without a width replaces only a bottleneck, "
                                f"{info.name} is {info.kind}; give {{'width': f}} instead")
        return basic_from_bottleneck(block, _generator(rep))
    if rep.kind != info.kind or "width" not in rep.options:
        raise BadInputError(f"{rep.label}: {info.name} is a {info.kind} block; width-prune it as kind "
                            f"'{info.kind}' with {{'width': f}}")
    return PRUNERS[info.kind](block, _width_of(rep))


def _build_merge(dec: Decomposed, rep: Replacement) -> nn.Module:
    first, second = dec.infos[rep.start], dec.infos[rep.end - 1]
    if rep.width != 2 or not _mergeable(first, second):
        raise BadInputError(f"{rep.label}: a merge covers two consecutive shape-compatible blocks of one stage; "
                            f"{first.name} (stage {first.stage}) and {second.name} (stage {second.stage}) are not")
    return PRUNERS[first.kind](dec.layers[rep.start], _width_of(rep))


def _build_linear(dec: Decomposed, rep: Replacement) -> nn.Module:
    return linear_block(dec.layers[rep.start], dec.infos[rep.start], _generator(rep))


def _build_noop(dec: Decomposed, rep: Replacement) -> nn.Module:
    info = dec.infos[rep.start]
    if not _noop_allowed(info):
        raise BadInputError(f"{rep.label}: a no-op needs stride 1 and equal input/output shapes; {info.name} maps "
                            f"{info.in_shape} to {info.out_shape} with stride {info.extra['stride']}")
    return nn.Identity()


BUILDERS: dict[str, Callable[[Decomposed, Replacement], nn.Module]] = {
    "teacher": _build_teacher, "bottleneck": _build_width, "basic": _build_width, "linear": _build_linear,
    "noop": _build_noop, "merge": _build_merge,
}


def _check_span(dec: Decomposed, rep: Replacement) -> None:
    if rep.kind not in BUILDERS:
        raise BadInputError(f"unknown ResNet replacement kind '{rep.kind}'; known kinds: {', '.join(BUILDERS)}")
    if rep.end > len(dec.layers):
        raise BadInputError(f"{rep.label} ends past the teacher's last layer {len(dec.layers) - 1}")
    if rep.width > 1 and rep.kind not in ("merge", "teacher"):
        raise BadInputError(f"{rep.label}: only 'merge' spans several layers; use a single-layer replacement")
    unknown = [dec.infos[i].name for i in rep.span if dec.infos[i].kind == "unknown"]
    if unknown and not rep.is_teacher:
        raise BadInputError(f"{rep.label}: block(s) {', '.join(unknown)} are of a kind this library does not "
                            "understand and are kept as-is; only 'teacher' replaces them")


@FAMILIES.register("resnet")
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
            reps += _single_replacements(info, opts)
            if opts["merge"] and i + 1 < len(dec.infos) and _mergeable(info, dec.infos[i + 1]):
                reps += _width_replacements(info, "merge", opts["merge_widths"], i, i + 2)
        return reps

    def build(self, dec: Decomposed, replacement: Replacement) -> nn.Module:
        _check_span(dec, replacement)
        module = BUILDERS[replacement.kind](dec, replacement)
        return module.train(dec.layers[replacement.start].training)
