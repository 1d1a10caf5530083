"""ResNet family search space, built through timm's own ``ResNet`` class.

Genes: block type (basic/bottleneck), stem type ('' = 7x7, 'deep', 'deep_tiered') and stem width,
per-stage depth, per-stage width multiplier (of the base channels 64/128/256/512 or the teacher's),
and the bottleneck ratio (timm's ``base_width / 64``). Students are genuine
``timm.models.resnet.ResNet`` modules, so ``forward_features``/``forward_head``/``feature_info``
work as for any timm ResNet, and the default space contains resnet18/34/50/101 exactly.

Genes that do not change the network are canonicalised: a basic block has ratio 1.0, and the
7x7 stem is always 64 wide in timm, so its stem width is recorded as 64.

Example:
    >>> from studentnas import get_space
    >>> space = get_space("resnet")
    >>> r50 = space.named("resnet50")
    >>> round(space.cost(r50).gmacs, 2), round(space.cost(r50).mparams, 2)
    (4.09, 25.56)
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Any

from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from studentnas.core.arch import Arch
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES
from studentnas.core.space import Gene, GeneSpace
from studentnas.hardware.counting import ConvTally
from studentnas.hardware.latency_table import Layer, chain

BASE_CHANNELS = (64, 128, 256, 512)
DEFAULT_MAX_DEPTHS = (5, 6, 35, 5)  # 1.5x resnet101, so resnet18/34/50/101 are all inside
WIDTH_MULTS = (0.5, 0.625, 0.75, 0.875, 1.0, 1.25, 1.5)
BOTTLENECK_RATIOS = (0.5, 0.75, 1.0, 1.5, 2.0)
STEM_TYPES = ("", "deep", "deep_tiered")
STEM_WIDTHS = (16, 24, 32, 48, 64)
_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}

# Well-known members of the default space (timm's definitions).
NAMED = {
    "resnet18": dict(block="basic", depths=(2, 2, 2, 2)),
    "resnet34": dict(block="basic", depths=(3, 4, 6, 3)),
    "resnet50": dict(block="bottleneck", depths=(3, 4, 6, 3)),
    "resnet101": dict(block="bottleneck", depths=(3, 4, 23, 3)),
}


def _make_divisible(value: float, divisor: int = 8) -> int:
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def _conv_out(size: int, stride: int) -> int:
    """Spatial size after a conv/pool with 'same'-style padding as timm uses (k=1,3,7)."""
    return (size - 1) // stride + 1


@lru_cache(maxsize=65536)
def _analytic_cost(
    block: str, depths: tuple[int, ...], planes: tuple[int, ...], ratio: float, stem_type: str, stem_width: int,
    cardinality: int, in_chans: int, height: int, width: int, num_classes: int,
) -> tuple[int, int]:
    """(MACs, params) of timm's ResNet with these settings, layer by layer."""
    tally = ConvTally()
    h, w = _conv_out(height, 2), _conv_out(width, 2)
    if stem_type:
        c0, c1 = (3 * (stem_width // 4), stem_width) if "tiered" in stem_type else (stem_width, stem_width)
        inplanes = stem_width * 2
        tally.conv(in_chans, c0, 3, h, w)
        tally.conv(c0, c1, 3, h, w)
        tally.conv(c1, inplanes, 3, h, w)
    else:
        inplanes = 64
        tally.conv(in_chans, inplanes, 7, h, w)
    h, w = _conv_out(h, 2), _conv_out(w, 2)  # max pool
    channels = tally.stages(block, planes, depths, inplanes, h, w, ratio=ratio, cardinality=cardinality)
    tally.head(channels, num_classes)
    return tally.macs, tally.params


def _conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool = True, groups: int = 1) -> list[tuple]:
    """Layer specs of timm's conv (padding k//2, no bias) -> BN [-> in-place ReLU]."""
    return [("conv", (cin, cout, k, stride, k // 2, groups)), ("bn", (cout,)), *([("relu", (True,))] if relu else [])]


@SPACES.register()
class ResNetSpace(GeneSpace):
    """timm ResNets with per-stage depth and width, block type, stem and bottleneck ratio.

    Args:
        base_channels: per-stage channels that width multiplier 1.0 means (the teacher's planes).
        max_depths: per-stage maximum depth (minimum is 1).
        cardinality: groups of the bottleneck 3x3 conv (taken from a ResNeXt teacher).
    """

    name = "resnet"
    default_input_size = (3, 224, 224)

    def __init__(self, base_channels: tuple[int, ...] = BASE_CHANNELS,
                 max_depths: tuple[int, ...] = DEFAULT_MAX_DEPTHS, cardinality: int = 1):
        if len(base_channels) != 4 or len(max_depths) != 4:
            raise BadInputError(f"resnet space needs 4 stages; got base_channels={base_channels}, "
                                f"max_depths={max_depths}")
        if min(max_depths) < 1:
            raise BadInputError(f"resnet space max_depths must be >= 1 per stage, got {max_depths}")
        self.base_channels = tuple(int(c) for c in base_channels)
        self.max_depths = tuple(int(d) for d in max_depths)
        self.cardinality = int(cardinality)

    # --- genes --------------------------------------------------------------------------------
    def genes(self) -> list[Gene]:
        return [
            Gene("block", ("basic", "bottleneck")),
            Gene("stem_type", STEM_TYPES),
            Gene("stem_width", STEM_WIDTHS),
            *[Gene(f"depth{i + 1}", tuple(range(1, d + 1))) for i, d in enumerate(self.max_depths)],
            *[Gene(f"width{i + 1}", WIDTH_MULTS) for i in range(4)],
            Gene("ratio", BOTTLENECK_RATIOS),
        ]

    def canonical(self, genes: dict[str, Any]) -> dict[str, Any]:
        if genes["block"] == "basic":
            genes["ratio"] = 1.0
        if genes["stem_type"] == "":
            genes["stem_width"] = 64
        return genes

    def named(self, model_name: str) -> Arch:
        """The arch of a well-known timm ResNet (resnet18/34/50/101) in this space."""
        if model_name not in NAMED:
            raise BadInputError(f"no named resnet '{model_name}'; known: {sorted(NAMED)}")
        spec = NAMED[model_name]
        return self.make(block=spec["block"], stem_type="", stem_width=64, ratio=1.0,
                         **{f"depth{i + 1}": d for i, d in enumerate(spec["depths"])},
                         **{f"width{i + 1}": 1.0 for i in range(4)})

    def planes(self, arch: Arch) -> tuple[int, ...]:
        return tuple(_make_divisible(c * float(arch[f"width{i + 1}"])) for i, c in enumerate(self.base_channels))

    def depths(self, arch: Arch) -> tuple[int, ...]:
        return tuple(int(arch[f"depth{i + 1}"]) for i in range(4))

    def format_arch(self, arch: Arch) -> str:
        stem = f"{arch['stem_type']}{arch['stem_width']}" if arch["stem_type"] else "7x7"
        ratio = f" r{arch['ratio']:g}" if arch["block"] == "bottleneck" else ""
        widths = "-".join(f"{float(arch[f'width{i + 1}']):g}" for i in range(4))
        return f"{arch['block']} d{'-'.join(map(str, self.depths(arch)))} w{widths}{ratio} stem {stem}"

    # --- models and costs ---------------------------------------------------------------------
    def build(self, arch: Arch, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
        arch = self.validate(arch)
        return ResNet(
            block=_BLOCKS[arch["block"]], layers=self.depths(arch), channels=self.planes(arch),
            num_classes=num_classes, in_chans=in_chans, cardinality=self.cardinality,
            base_width=int(round(64 * float(arch["ratio"]))), stem_type=arch["stem_type"],
            stem_width=int(arch["stem_width"]), zero_init_last=False,
        )

    def cost(self, arch: Arch, input_size: tuple[int, int, int] | None = None, num_classes: int = 1000) -> Cost:
        c, h, w = input_size or self.default_input_size
        macs, params = _analytic_cost(
            arch["block"], self.depths(arch), self.planes(arch), float(arch["ratio"]) if arch["block"] ==
            "bottleneck" else 1.0, arch["stem_type"], int(arch["stem_width"]), self.cardinality, c, h, w, num_classes)
        return Cost(macs=float(macs), params=float(params))

    def layers(self, arch: Arch, input_size: tuple[int, int, int] | None = None,
               num_classes: int = 1000) -> list[Layer]:
        """timm's ResNet forward as a layer list for the latency table: stem, blocks (with the
        downsample conv and the in-place residual add), global pool and classifier."""
        c, h, w = input_size or self.default_input_size
        stem_w = int(arch["stem_width"])
        if arch["stem_type"]:
            c0, c1 = (3 * (stem_w // 4), stem_w) if "tiered" in arch["stem_type"] else (stem_w, stem_w)
            inplanes = 2 * stem_w
            stem = [*_conv_bn(c, c0, 3, 2), *_conv_bn(c0, c1, 3, 1), ("conv", (c1, inplanes, 3, 1, 1, 1))]
        else:
            inplanes = 64
            stem = [("conv", (c, inplanes, 7, 2, 3, 1))]
        out = chain((1, c, h, w), [*stem, ("bn", (inplanes,)), ("relu", (True,)), ("maxpool", (3, 2, 1))])
        for stage, (planes, depth) in enumerate(zip(self.planes(arch), self.depths(arch))):
            outc = planes * (1 if arch["block"] == "basic" else 4)
            for i in range(depth):
                s = 2 if stage and i == 0 else 1
                x = out[-1].output_shape()
                if arch["block"] == "basic":
                    body = [*_conv_bn(inplanes, planes, 3, s), *_conv_bn(planes, outc, 3, 1, relu=False)]
                else:
                    mid = int(math.floor(planes * float(arch["ratio"])) * self.cardinality)
                    body = [*_conv_bn(inplanes, mid, 1, 1), *_conv_bn(mid, mid, 3, s, groups=self.cardinality),
                            *_conv_bn(mid, outc, 1, 1, relu=False)]
                out += chain(x, body)
                if i == 0 and (s != 1 or inplanes != outc):
                    out += chain(x, _conv_bn(inplanes, outc, 1, s, relu=False))
                out += chain(out[-1].output_shape(), [("add", (True,)), ("relu", (True,))])
                inplanes = outc
        return out + chain(out[-1].output_shape(), [("gap", ()), ("linear", (inplanes, num_classes))])

    def minimal_archs(self) -> list[Arch]:
        """Depth 1 and the narrowest widths everywhere, for every block/stem/ratio combination (distinct
        after canonicalisation): the cost minimum over the space is among these for any metric and input
        size (cost grows with depth and width; which stem and block are cheapest depends on the size)."""
        return list(dict.fromkeys(
            self.make(block=b, stem_type=s, stem_width=sw, ratio=r, **{f"depth{i + 1}": 1 for i in range(4)},
                      **{f"width{i + 1}": WIDTH_MULTS[0] for i in range(4)})
            for b, s, sw, r in itertools.product(("basic", "bottleneck"), STEM_TYPES, STEM_WIDTHS, BOTTLENECK_RATIOS)))

    def smallest(self) -> Arch:
        """The arch with the fewest MACs (at the default input size)."""
        return min(self.minimal_archs(), key=lambda a: self.cost(a).macs)

    # --- teacher-derived spaces ---------------------------------------------------------------
    @classmethod
    def matches_teacher(cls, teacher: nn.Module) -> bool:
        return (isinstance(teacher, ResNet) and isinstance(teacher.layer1[0], (BasicBlock, Bottleneck))
                and len(getattr(teacher, "layer4", ())) > 0)  # 4 stages: not a 3-stage cifar_resnet

    @classmethod
    def for_teacher(cls, teacher: nn.Module) -> ResNetSpace:
        """Centre the space on a timm ResNet teacher: its per-stage channels are width 1.0 and each
        stage may be up to 1.5x as deep as the teacher's."""
        if not cls.matches_teacher(teacher):
            raise BadInputError(f"the resnet space needs a timm ResNet-style teacher, got {type(teacher).__name__}; "
                                "pick another --space (see `studentnas list spaces`)")
        stages = [teacher.layer1, teacher.layer2, teacher.layer3, teacher.layer4]
        first = stages[0][0]
        planes = tuple(int(s[0].conv3.out_channels // 4) if isinstance(s[0], Bottleneck)
                       else int(s[0].conv2.out_channels) for s in stages)
        cardinality = int(first.conv2.groups) if isinstance(first, Bottleneck) else 1
        depths = tuple(max(4, math.ceil(1.5 * len(s))) for s in stages)
        return cls(base_channels=planes, max_depths=depths, cardinality=cardinality)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "base_channels": list(self.base_channels), "max_depths": list(self.max_depths),
                "cardinality": self.cardinality}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ResNetSpace:
        return cls(base_channels=tuple(config.get("base_channels", BASE_CHANNELS)),
                   max_depths=tuple(config.get("max_depths", DEFAULT_MAX_DEPTHS)),
                   cardinality=int(config.get("cardinality", 1)))
