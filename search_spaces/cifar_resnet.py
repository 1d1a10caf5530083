"""CIFAR-style ResNet search space (``cifar_resnet``), built through timm's own ``ResNet`` class.

The family small-image KD papers use: a 3x3 stride-1 stem (no max pool, no early downsampling),
then 3 stages at strides 1, 2, 2 of basic or bottleneck blocks. Genes: block type, stem width,
per-stage depth (1..9 by default) and per-stage width, each width a multiplier of the base channels
(16 stem, 16/32/64 stages, or the teacher's). Students are genuine ``timm.models.resnet.ResNet``
modules (an empty ``layer4``), so ``forward_features``/``forward_head``/``feature_info`` work and the
Puzzle ``resnet`` family cuts them like any timm ResNet.

The classic members are also registered as timm models, so ``--teacher cifar_resnet56`` works
wherever a timm name does: ``cifar_resnet20/32/44/56/110`` (basic blocks, 16/32/64 wide) and the
wider ``cifar_resnet8x4``/``cifar_resnet32x4`` of the KD literature (stem 32, stages 64/128/256).
They default to 100 classes (CIFAR-100) at 3x32x32; ``num_classes``/``in_chans`` override that.

Example:
    >>> from studentnas import get_space
    >>> space = get_space("cifar_resnet")
    >>> r20 = space.named("cifar_resnet20")
    >>> space.format_arch(r20)
    'basic d3-3-3 w16-32-64 stem16'
    >>> cost = space.cost(r20, (3, 32, 32), num_classes=10)
    >>> round(cost.mparams, 4), round(cost.gmacs, 4)
    (0.2725, 0.0408)
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

import timm
from timm.models import build_model_with_cfg
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from studentnas.core.arch import Arch
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES
from studentnas.core.space import Gene, GeneSpace
from studentnas.hardware.counting import ConvTally
from studentnas.hardware.latency_table import Layer, chain

BASE_CHANNELS = (16, 32, 64)
BASE_STEM = 16
DEFAULT_MAX_DEPTHS = (9, 9, 9)  # resnet20/32/44/56 are inside; resnet110 (18 per stage) needs deeper stages
WIDTH_MULTS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)  # of the base: 8..64 / 16..128 / 32..256 by default
_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
_LABEL = re.compile(r"(basic|bottleneck) d(\d+)-(\d+)-(\d+) w(\d+)-(\d+)-(\d+) stem(\d+)")  # format_arch's

# The classic members (He et al. 2016 for CIFAR; 8x4/32x4 as in the KD literature, e.g. CRD).
NAMED: dict[str, dict[str, Any]] = {
    **{f"cifar_resnet{6 * n + 2}": dict(block="basic", depths=(n, n, n), stem=16, planes=(16, 32, 64))
       for n in (3, 5, 7, 9, 18)},
    "cifar_resnet8x4": dict(block="basic", depths=(1, 1, 1), stem=32, planes=(64, 128, 256)),
    "cifar_resnet32x4": dict(block="basic", depths=(5, 5, 5), stem=32, planes=(64, 128, 256)),
}


def _channels(base: int, mult: float) -> int:
    """``base * mult`` rounded to an even number (at least 2): timm's stem needs an even stem width."""
    return max(2, 2 * int(round(base * mult / 2)))


def cifar_resnet(block: str, depths: tuple[int, ...], planes: tuple[int, ...], stem_width: int,
                 num_classes: int = 100, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """A timm ``ResNet`` with a 3x3 stride-1 stem of ``stem_width`` channels, no max pool and 3 stages.

    timm builds the stages (its 'deep' stem makes them start from ``stem_width`` channels); the stem is
    then replaced by one 3x3 stride-1 conv, ``maxpool`` by ``nn.Identity`` and ``layer4`` is empty.

    >>> model = cifar_resnet("basic", (1, 1, 1), (8, 16, 32), 8, num_classes=10)
    >>> import torch
    >>> model(torch.zeros(2, 3, 32, 32)).shape, [f["reduction"] for f in model.feature_info]
    (torch.Size([2, 10]), [1, 1, 2, 4])
    """
    if len(depths) != 3 or len(planes) != 3 or stem_width % 2:
        raise BadInputError(f"a CIFAR ResNet needs 3 depths, 3 widths and an even stem width; got depths={depths}, "
                            f"planes={planes}, stem_width={stem_width}")
    model = ResNet(block=_BLOCKS[block], layers=tuple(depths), channels=tuple(planes), num_classes=num_classes,
                   in_chans=in_chans, stem_type="deep", stem_width=stem_width // 2, zero_init_last=False, **kwargs)
    model.conv1 = nn.Conv2d(in_chans, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    model.layer4 = nn.Sequential()  # timm's forward_features runs layer1..layer4
    model.feature_info = [dict(info, reduction=1 if i == 0 else info["reduction"] // 4)
                          for i, info in enumerate(model.feature_info)]
    return model


@lru_cache(maxsize=65536)
def _analytic_cost(block: str, depths: tuple[int, ...], planes: tuple[int, ...], stem: int, in_chans: int,
                   height: int, width: int, num_classes: int) -> tuple[int, int]:
    """(MACs, params) of :func:`cifar_resnet` with these settings, layer by layer."""
    tally = ConvTally()
    tally.conv(in_chans, stem, 3, height, width)
    tally.head(tally.stages(block, planes, depths, stem, height, width), num_classes)
    return tally.macs, tally.params


def _conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool = True) -> list[tuple]:
    """Layer specs of timm's conv (padding k//2, no bias) -> BN [-> in-place ReLU]."""
    return [("conv", (cin, cout, k, stride, k // 2, 1)), ("bn", (cout,)), *([("relu", (True,))] if relu else [])]


@SPACES.register()
class CifarResNetSpace(GeneSpace):
    """CIFAR-style timm ResNets (3x3 stride-1 stem, 3 stages): depth and width per stage, stem width, block type.

    Args:
        base_channels: per-stage channels that width multiplier 1.0 means (the teacher's planes).
        stem_base: stem channels that stem multiplier 1.0 means (the teacher's stem width).
        max_depths: per-stage maximum depth (minimum is 1).
    """

    name = "cifar_resnet"
    default_input_size = (3, 32, 32)

    def __init__(self, base_channels: tuple[int, ...] = BASE_CHANNELS, stem_base: int = BASE_STEM,
                 max_depths: tuple[int, ...] = DEFAULT_MAX_DEPTHS):
        if len(base_channels) != 3 or len(max_depths) != 3:
            raise BadInputError(f"cifar_resnet space needs 3 stages; got base_channels={tuple(base_channels)}, "
                                f"max_depths={tuple(max_depths)}; give 3 values each")
        if min(max_depths) < 1 or min(base_channels) < 1 or stem_base < 1:
            raise BadInputError(f"cifar_resnet space needs max_depths, base_channels and stem_base >= 1; got "
                                f"{tuple(max_depths)}, {tuple(base_channels)}, {stem_base}")
        self.base_channels = tuple(int(c) for c in base_channels)
        self.stem_base = int(stem_base)
        self.max_depths = tuple(int(d) for d in max_depths)

    # --- genes --------------------------------------------------------------------------------
    def genes(self) -> list[Gene]:
        return [
            Gene("block", ("basic", "bottleneck")),
            Gene("stem", WIDTH_MULTS),
            *[Gene(f"depth{i + 1}", tuple(range(1, d + 1))) for i, d in enumerate(self.max_depths)],
            *[Gene(f"width{i + 1}", WIDTH_MULTS) for i in range(3)],
        ]

    def named(self, model_name: str) -> Arch:
        """The arch of a classic member (``cifar_resnet20`` ... ``cifar_resnet32x4``, see :data:`NAMED`)."""
        if model_name not in NAMED:
            raise BadInputError(f"no named cifar_resnet '{model_name}'; known: {sorted(NAMED)}")
        spec = NAMED[model_name]
        bases = (self.stem_base, *self.base_channels)
        mults = [next((m for m in WIDTH_MULTS if _channels(b, m) == c), None) for b, c in zip(bases, (spec["stem"],
                                                                                                   *spec["planes"]))]
        deep = any(d > m for d, m in zip(spec["depths"], self.max_depths))
        if None in mults or deep:
            raise BadInputError(f"'{model_name}' (depths {spec['depths']}, stem {spec['stem']}, widths "
                                f"{spec['planes']}) is outside this space (max depths {self.max_depths}, widths "
                                f"{WIDTH_MULTS} x {bases}); use a space centred on it: --teacher {model_name}")
        return self.make(block=spec["block"], stem=mults[0], **{f"depth{i + 1}": d for i, d in enumerate(
            spec["depths"])}, **{f"width{i + 1}": m for i, m in enumerate(mults[1:])})

    def planes(self, arch: Arch) -> tuple[int, ...]:
        """Per-stage planes (a bottleneck's output is 4x as wide)."""
        return tuple(_channels(c, float(arch[f"width{i + 1}"])) for i, c in enumerate(self.base_channels))

    def depths(self, arch: Arch) -> tuple[int, ...]:
        """Blocks per stage."""
        return tuple(int(arch[f"depth{i + 1}"]) for i in range(3))

    def stem_width(self, arch: Arch) -> int:
        """Channels of the 3x3 stem conv."""
        return _channels(self.stem_base, float(arch["stem"]))

    def format_arch(self, arch: Arch) -> str:
        return (f"{arch['block']} d{'-'.join(map(str, self.depths(arch)))} "
                f"w{'-'.join(map(str, self.planes(arch)))} stem{self.stem_width(arch)}")

    def from_string(self, text: str) -> Arch:
        """The arch of a :meth:`format_arch` label (``basic d3-3-3 w16-32-64 stem16``) or a classic member's name.

        >>> space = CifarResNetSpace()
        >>> arch = space.from_string("bottleneck d2-1-4 w8-48-64 stem32")
        >>> space.format_arch(arch), arch["width2"], arch["stem"]
        ('bottleneck d2-1-4 w8-48-64 stem32', 1.5, 2.0)
        >>> space.from_string("basic d3-3-3 w16-32-60 stem16")
        Traceback (most recent call last):
        ...
        studentnas.core.errors.BadInputError: 'basic d3-3-3 w16-32-60 stem16': width3 60 is not a width of this space (64 x (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0): 32, 48, 64, 96, 128, 192, 256)
        """  # noqa: E501
        if text.strip() in NAMED:
            return self.named(text.strip())
        found = _LABEL.fullmatch(text.strip())
        if not found:
            raise BadInputError(f"{text!r} is not a cifar_resnet label; write BLOCK dD1-D2-D3 wW1-W2-W3 stemS, e.g. "
                                f"{self.format_arch(self.smallest())!r}")
        block, numbers = found.group(1), [int(v) for v in found.groups()[1:]]
        genes: dict[str, Any] = {"block": block, **{f"depth{i + 1}": d for i, d in enumerate(numbers[:3])}}
        for gene, base, channels in zip(("width1", "width2", "width3", "stem"), (*self.base_channels, self.stem_base),
                                        numbers[3:]):
            mult = next((m for m in WIDTH_MULTS if _channels(base, m) == channels), None)
            if mult is None:
                options = ", ".join(str(_channels(base, m)) for m in WIDTH_MULTS)
                raise BadInputError(f"{text!r}: {gene} {channels} is not a width of this space ({base} x "
                                    f"{WIDTH_MULTS}: {options})")
            genes[gene] = mult
        return self.validate(self.make(**genes))

    # --- models and costs ---------------------------------------------------------------------
    def build(self, arch: Arch, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
        arch = self.validate(arch)
        return cifar_resnet(arch["block"], self.depths(arch), self.planes(arch), self.stem_width(arch),
                            num_classes=num_classes, in_chans=in_chans)

    def cost(self, arch: Arch, input_size: tuple[int, int, int] | None = None, num_classes: int = 1000) -> Cost:
        c, h, w = input_size or self.default_input_size
        macs, params = _analytic_cost(arch["block"], self.depths(arch), self.planes(arch), self.stem_width(arch),
                                      c, h, w, num_classes)
        return Cost(macs=float(macs), params=float(params))

    def layers(self, arch: Arch, input_size: tuple[int, int, int] | None = None,
               num_classes: int = 1000) -> list[Layer]:
        """The forward as a layer list for the latency table: stem, blocks (downsample conv and the in-place
        residual add included), global pool and classifier."""
        c, h, w = input_size or self.default_input_size
        inplanes = self.stem_width(arch)
        out = chain((1, c, h, w), _conv_bn(c, inplanes, 3, 1))
        for stage, (planes, depth) in enumerate(zip(self.planes(arch), self.depths(arch))):
            outc = planes * (1 if arch["block"] == "basic" else 4)
            for i in range(depth):
                s = 2 if stage and i == 0 else 1
                x = out[-1].output_shape()
                if arch["block"] == "basic":
                    body = [*_conv_bn(inplanes, planes, 3, s), *_conv_bn(planes, outc, 3, 1, relu=False)]
                else:
                    body = [*_conv_bn(inplanes, planes, 1, 1), *_conv_bn(planes, planes, 3, s),
                            *_conv_bn(planes, outc, 1, 1, relu=False)]
                out += chain(x, body)
                if i == 0 and (s != 1 or inplanes != outc):
                    out += chain(x, _conv_bn(inplanes, outc, 1, s, relu=False))
                out += chain(out[-1].output_shape(), [("add", (True,)), ("relu", (True,))])
                inplanes = outc
        return out + chain(out[-1].output_shape(), [("gap", ()), ("linear", (inplanes, num_classes))])

    def minimal_archs(self) -> list[Arch]:
        """Depth 1 and the narrowest stem and widths, for each block type: cost grows with depth and width,
        and which block is cheaper depends on the widths, so the minimum of any metric is among these."""
        return [self.make(block=b, stem=WIDTH_MULTS[0], **{f"depth{i + 1}": 1 for i in range(3)},
                          **{f"width{i + 1}": WIDTH_MULTS[0] for i in range(3)}) for b in _BLOCKS]

    def smallest(self) -> Arch:
        """The arch with the fewest MACs (at the default input size)."""
        return min(self.minimal_archs(), key=lambda a: self.cost(a).macs)

    # --- teacher-derived spaces ---------------------------------------------------------------
    @classmethod
    def matches_teacher(cls, teacher: nn.Module) -> bool:
        """A timm ResNet with a single 3x3 stride-1 stem conv, no max pool and 3 stages of plain basic or
        bottleneck blocks (a bottleneck's mid width equal to its planes)."""
        if not isinstance(teacher, ResNet) or len(getattr(teacher, "layer4", ())) != 0:
            return False
        conv, pool = teacher.conv1, teacher.maxpool
        if not (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
                and isinstance(pool, nn.Identity)):
            return False
        blocks = [b for name in ("layer1", "layer2", "layer3") for b in getattr(teacher, name, ())]
        return bool(blocks) and all(len(getattr(teacher, n, ())) > 0 for n in ("layer1", "layer2", "layer3")) and all(
            type(b) is BasicBlock or (type(b) is Bottleneck and b.conv2.groups == 1
                                      and b.conv1.out_channels * 4 == b.conv3.out_channels) for b in blocks)

    @classmethod
    def for_teacher(cls, teacher: nn.Module) -> CifarResNetSpace:
        """Centre the space on a CIFAR-style ResNet teacher: its stem and per-stage channels are width 1.0
        and each stage may be up to 1.5x as deep as the teacher's (at least 4)."""
        if not cls.matches_teacher(teacher):
            raise BadInputError(f"the cifar_resnet space needs a CIFAR-style timm ResNet teacher (3x3 stride-1 stem, "
                                f"3 stages), got {type(teacher).__name__}; pick another --space "
                                "(see `studentnas list spaces`)")
        stages = [teacher.layer1, teacher.layer2, teacher.layer3]
        planes = tuple(int(s[0].conv1.out_channels) for s in stages)  # the first conv of either block is `planes` wide
        depths = tuple(max(4, math.ceil(1.5 * len(s))) for s in stages)
        return cls(base_channels=planes, stem_base=int(teacher.conv1.out_channels), max_depths=depths)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "base_channels": list(self.base_channels), "stem_base": self.stem_base,
                "max_depths": list(self.max_depths)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CifarResNetSpace:
        return cls(base_channels=tuple(config.get("base_channels", BASE_CHANNELS)),
                   stem_base=int(config.get("stem_base", BASE_STEM)),
                   max_depths=tuple(config.get("max_depths", DEFAULT_MAX_DEPTHS)))


# --- the classic members as timm models --------------------------------------------------------------------------

default_cfgs = {name: dict(url="", num_classes=100, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0,
                           interpolation="bilinear", mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
                           first_conv="conv1", classifier="fc") for name in NAMED}


def create_named(name: str, pretrained: bool = False, **kwargs: Any) -> ResNet:
    """timm's entry point for a classic member (random init; no published weights, so no ``pretrained``).

    >>> create_named("cifar_resnet8x4", num_classes=10).layer1[0].conv1.in_channels
    32
    """
    if pretrained:
        raise BadInputError(f"no pretrained weights are published for '{name}'; train one and pass "
                            "--teacher-checkpoint PATH instead of --pretrained")
    spec = NAMED[name]
    return build_model_with_cfg(cifar_resnet, name, False, block=spec["block"], depths=spec["depths"],
                                planes=spec["planes"], stem_width=spec["stem"], **kwargs)


@timm.models.register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-20: basic blocks, 3 per stage, 16/32/64 wide (0.27 M params at 10 classes)."""
    return create_named("cifar_resnet20", pretrained, **kwargs)


@timm.models.register_model
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-32: basic blocks, 5 per stage, 16/32/64 wide."""
    return create_named("cifar_resnet32", pretrained, **kwargs)


@timm.models.register_model
def cifar_resnet44(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-44: basic blocks, 7 per stage, 16/32/64 wide."""
    return create_named("cifar_resnet44", pretrained, **kwargs)


@timm.models.register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-56: basic blocks, 9 per stage, 16/32/64 wide (0.85 M params at 10 classes)."""
    return create_named("cifar_resnet56", pretrained, **kwargs)


@timm.models.register_model
def cifar_resnet110(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-110: basic blocks, 18 per stage, 16/32/64 wide (1.7 M params at 10 classes)."""
    return create_named("cifar_resnet110", pretrained, **kwargs)


@timm.models.register_model
def cifar_resnet8x4(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-8x4 of the KD literature: stem 32, one basic block per stage, 64/128/256 wide."""
    return create_named("cifar_resnet8x4", pretrained, **kwargs)


@timm.models.register_model
def cifar_resnet32x4(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-32x4 of the KD literature: stem 32, five basic blocks per stage, 64/128/256 wide."""
    return create_named("cifar_resnet32x4", pretrained, **kwargs)
