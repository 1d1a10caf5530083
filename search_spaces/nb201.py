"""NAS-Bench-201 (NATS-Bench topology) search space.

A cell is a 4-node DAG; each of its six edges carries one of five ops. The network is the standard
NB201 macro skeleton: stem, N cells at C, residual reduction, N cells at 2C, reduction, N cells at 4C,
then BN-ReLU, global average pool and a linear classifier (C=16, N=5 by default).

Edge ``e<k>`` follows the NB201 string ``|e0~0|+|e1~0|e2~1|+|e3~0|e4~1|e5~2|``: node1 <- node0,
node2 <- node0, node1 and node3 <- node0, node1, node2.

``cost`` is analytic. ``macs`` and ``params`` are exact for the module ``build`` returns. The
``extra["nb201_flops"]`` value follows the convention of the published NASLib numbers (tensorwatch's
counter). It adds these to the conv/linear MACs:

* BN: 2 x numel;
* ReLU: numel;
* AvgPool: out numel x k*k;
* the global pool: C*(H+1)*(W+1).

Example:
    >>> space = NB201Space()
    >>> arch = space.from_naslib_tuple((0, 2, 3, 2, 3, 1))
    >>> space.format_arch(arch)
    '|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|'
    >>> c = space.cost(arch)
    >>> c.params, c.extra["nb201_flops"] / 1e6
    (615386.0, 88.307392)
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from studentnas.core.arch import Arch
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES
from studentnas.core.space import Gene, GeneSpace
from studentnas.hardware.latency_table import Layer, chain

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # cheap to expensive
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from) of edges e0..e5
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_TO_EDGE = (0, 1, 3, 2, 4, 5)  # NASLib edges (1,2),(1,3),(1,4),(2,3),(2,4),(3,4) -> e-index
_STRING_FORMAT = "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|"
_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
_STRING_RE = re.compile(r"\|(\w+)~0\|\+\|(\w+)~0\|(\w+)~1\|\+\|(\w+)~0\|(\w+)~1\|(\w+)~2\|")


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv(k, stride, pad k//2, no bias) -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class ResidualReduction(nn.Module):
    """The NB201 reduction block: a two-conv residual branch at stride 2, AvgPool+1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


def _make_op(op: str, channels: int) -> nn.Module:
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return ReLUConvBN(channels, channels, 1 if op == "nor_conv_1x1" else 3)


class NB201Cell(nn.Module):
    """A 4-node cell; node i sums op(node j) over j < i, "none" edges contribute nothing."""

    def __init__(self, ops: Sequence[str], channels: int):
        super().__init__()
        self.ops = tuple(ops)
        self.edges = nn.ModuleDict({f"e{i}": _make_op(op, channels) for i, op in enumerate(self.ops) if op != "none"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            total = None
            for i, (to, src) in enumerate(EDGES):
                if to == node and self.ops[i] != "none":
                    y = self.edges[f"e{i}"](nodes[src])
                    total = y if total is None else total + y
            nodes.append(torch.zeros_like(x) if total is None else total)
        return nodes[3]


class NB201Net(nn.Module):
    """The NB201 network for one cell (``ops``, six op names), following timm's model contract."""

    def __init__(self, ops: Sequence[str], num_classes: int = 10, in_chans: int = 3, C: int = 16, N: int = 5):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 4 * C
        self.stem = nn.Sequential(nn.Conv2d(in_chans, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        stages = []
        for s in range(3):
            c = C * 2**s
            blocks = [ResidualReduction(c // 2, c)] if s else []
            stages.append(nn.Sequential(*blocks, *(NB201Cell(ops, c) for _ in range(N))))
        self.stages = nn.Sequential(*stages)
        self.feature_info = [dict(num_chs=C * 2**s, reduction=2**s, module=f"stages.{s}") for s in range(3)]
        self.norm = nn.BatchNorm2d(self.num_features)
        self.act = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.stages(self.stem(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@lru_cache(maxsize=65536)
def _analytic_cost(
    n_conv1: int, n_conv3: int, n_pool: int, input_size: tuple[int, int, int], num_classes: int, C: int, N: int
) -> tuple[int, int, int]:
    """(macs, params, nb201_flops) of an ``NB201Net`` whose cell has these op counts.

    The cost depends on the cell only through how many edges hold each op, so the cache is keyed
    on those counts (126 combinations) rather than on the 15,625 cells.
    """
    in_chans, h, w = input_size
    hw = h * w
    macs = 9 * in_chans * C * hw
    params = 9 * in_chans * C + 2 * C
    flops = macs + 2 * C * hw  # stem BN
    for s in range(3):
        c = C * 2**s
        if s:  # residual reduction c/2 -> c at stride 2: ReLU, conv_a, BN, ReLU, conv_b, BN; pool + 1x1
            c_in, in_hw, hw = c // 2, hw, hw // 4
            m = (9 * c_in * c + 9 * c * c + c_in * c) * hw
            macs += m
            params += 9 * c_in * c + 9 * c * c + c_in * c + 4 * c
            flops += m + c_in * in_hw + 5 * c * hw + 4 * c_in * hw
        for k2, count in ((1, n_conv1), (9, n_conv3)):  # ReLU -> conv -> BN on `count` edges of N cells
            macs += count * N * k2 * c * c * hw
            params += count * N * (k2 * c * c + 2 * c)
            flops += count * N * (k2 * c * c + 3 * c) * hw
        flops += n_pool * N * 9 * c * hw
    f = 4 * C
    h2, w2 = h // 4, w // 4
    macs += f * num_classes
    params += 2 * f + f * num_classes + num_classes
    flops += 3 * f * hw + f * (h2 + 1) * (w2 + 1) + f * num_classes  # BN + ReLU, global pool, linear
    return macs, params, flops


_GENE_NAMES = tuple(f"e{i}" for i in range(6))
_OP_SET = frozenset(OPS)


@lru_cache(maxsize=256)
def _check_size(size: tuple) -> tuple[int, int, int]:
    """``size`` as ints if it is a valid NB201 input size (C, H, W) with H, W multiples of 4."""
    valid = len(size) == 3 and all(isinstance(v, numbers.Integral) and v >= 1 for v in size)
    if not valid or size[1] % 4 or size[2] % 4:
        raise BadInputError(
            f"nb201 input_size must be (C, H, W) with H and W multiples of 4 (two stride-2 "
            f"reductions), got {size!r}; use e.g. (3, 32, 32)"
        )
    return tuple(int(v) for v in size)  # type: ignore[return-value]


@SPACES.register()
class NB201Space(GeneSpace):
    """NAS-Bench-201: six edge genes ``e0..e5``, each one of ``OPS``; 5**6 = 15,625 cells.

    Args:
        C: channels of the first stage (16 in NB201).
        N: cells per stage (5 in NB201).

    Example:
        >>> space = NB201Space()
        >>> arch = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
        >>> space.from_string(space.format_arch(arch)) == arch, space.smallest()["e0"]
        (True, 'none')
    """

    name = "nb201"
    default_input_size = (3, 32, 32)

    def __init__(self, C: int = 16, N: int = 5):
        for key, value in (("C", C), ("N", N)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadInputError(f"nb201: {key} must be a positive integer, got {value!r}; NB201 uses C=16, N=5")
        self.C, self.N = C, N

    def genes(self) -> list[Gene]:
        return [Gene(f"e{i}", OPS) for i in range(6)]

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "C": self.C, "N": self.N}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NB201Space:
        unknown = sorted(set(config) - {"name", "C", "N"})
        if unknown or config.get("name", cls.name) != cls.name:
            raise BadInputError(
                f"nb201 config takes only 'name' ('nb201'), 'C' and 'N', got {dict(config)}; remove the other keys"
            )
        return cls(C=config.get("C", 16), N=config.get("N", 5))

    def smallest(self) -> Arch:
        return self.make(**{f"e{i}": "none" for i in range(6)})

    # --- text forms -------------------------------------------------------------------------------
    def format_arch(self, arch: Arch) -> str:
        """The NB201 string, e.g. ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...~2|``."""
        return _STRING_FORMAT.format(*(arch[f"e{i}"] for i in range(6)))

    @classmethod
    def from_string(cls, text: str) -> Arch:
        """Parse an NB201 arch string (the inverse of ``format_arch``)."""
        match = _STRING_RE.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise BadInputError(
                f"nb201 arch string {text!r} is not of the form '{_STRING_FORMAT.format(*['op'] * 6)}'"
                f" with each op one of {list(OPS)}, e.g. '{_EXAMPLE}'"
            )
        return cls._arch(match.groups())

    @classmethod
    def from_naslib_tuple(cls, ops: Sequence[int]) -> Arch:
        """From NASLib's encoding: six ints indexing ``NASLIB_OPS``, in edge order (1,2),(1,3),(1,4),
        (2,3),(2,4),(3,4) of 1-indexed nodes."""
        ops = tuple(ops)
        if len(ops) != 6 or not all(isinstance(i, int) and 0 <= i < len(NASLIB_OPS) for i in ops):
            raise BadInputError(
                f"NASLib nb201 tuple {ops!r} must be six ints in 0..4 indexing {list(NASLIB_OPS)}, "
                "e.g. (0, 2, 3, 2, 3, 1)"
            )
        genes = [""] * 6
        for pos, op in enumerate(ops):
            genes[NASLIB_TO_EDGE[pos]] = NASLIB_OPS[op]
        return cls._arch(genes)

    @classmethod
    def to_naslib_tuple(cls, arch: Arch) -> tuple[int, ...]:
        """The inverse of ``from_naslib_tuple``."""
        return tuple(NASLIB_OPS.index(arch[f"e{NASLIB_TO_EDGE[pos]}"]) for pos in range(6))

    @classmethod
    def _arch(cls, ops: Sequence[str]) -> Arch:
        for i, op in enumerate(ops):
            if op not in OPS:
                raise BadInputError(f"nb201 edge e{i} op {op!r} is not one of {list(OPS)}")
        return Arch(cls.name, {f"e{i}": op for i, op in enumerate(ops)})

    def _ops(self, arch: Arch) -> tuple[str, ...]:
        if arch.space != self.name:
            raise BadInputError(f"arch {arch.id} is from space '{arch.space}', not '{self.name}'")
        names = tuple(k for k, _ in arch.genes)  # genes are stored sorted by name
        ops = tuple(v for _, v in arch.genes)
        if names != _GENE_NAMES or not _OP_SET.issuperset(ops):
            raise BadInputError(f"nb201 arch needs genes e0..e5, each one of {list(OPS)}; got {arch.as_dict()}")
        return ops  # type: ignore[return-value]

    # --- models and costs -------------------------------------------------------------------------
    def build(self, arch: Arch, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
        """The NB201 network of ``arch`` (an ``NB201Net``)."""
        return NB201Net(self._ops(arch), num_classes=num_classes, in_chans=in_chans, C=self.C, N=self.N)

    def layers(self, arch: Arch, input_size: tuple[int, int, int] | None = None,
               num_classes: int = 10) -> list[Layer]:
        """``NB201Net``'s forward as a layer list for the latency table: stem, reductions, cells
        (ReLU-conv-BN or pool per edge, one add per extra input of a node), head."""
        ops = self._ops(arch)
        cin, h, w = _check_size(self.default_input_size if input_size is None else tuple(input_size))
        C = self.C
        out = chain((1, cin, h, w), [("conv", (cin, C, 3, 1, 1, 1)), ("bn", (C,))])
        edge_specs = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
        adds = sum(max(0, sum(op != "none" for (to, _), op in zip(EDGES, ops) if to == node) - 1) for node in (1, 2, 3))
        for s in range(3):
            c = C * 2**s
            x = out[-1].output_shape()
            if s:
                out += chain(x, [("relu", (False,)), ("conv", (c // 2, c, 3, 2, 1, 1)), ("bn", (c,)),
                                 ("relu", (False,)), ("conv", (c, c, 3, 1, 1, 1)), ("bn", (c,))])
                out += chain(x, [("avgpool", (2, 2, 0, True)), ("conv", (c // 2, c, 1, 1, 0, 1)), ("add", (False,))])
                x = out[-1].output_shape()
            for _ in range(self.N):
                for op in ops:
                    if op in edge_specs:
                        k = edge_specs[op]
                        out += chain(x, [("relu", (False,)), ("conv", (c, c, k, 1, k // 2, 1)), ("bn", (c,))])
                    elif op == "avg_pool_3x3":
                        out += chain(x, [("avgpool", (3, 1, 1, False))])
                out += chain(x, [("add", (False,))] * adds)
        x = out[-1].output_shape()
        return out + chain(x, [("bn", (4 * C,)), ("relu", (False,)), ("gap", ()), ("linear", (4 * C, num_classes))])

    def cost(self, arch: Arch, input_size: tuple[int, int, int] | None = None, num_classes: int = 10) -> Cost:
        """Exact analytic MACs and params of ``build(arch, num_classes, input_size[0])`` for one image,
        plus ``extra["nb201_flops"]`` in the published NB201 (NASLib) convention."""
        size = _check_size(self.default_input_size if input_size is None else tuple(input_size))
        ops = self._ops(arch)
        macs, params, flops = _analytic_cost(ops.count("nor_conv_1x1"), ops.count("nor_conv_3x3"),
                                             ops.count("avg_pool_3x3"), size, int(num_classes), self.C, self.N)
        return Cost(macs=float(macs), params=float(params), extra={"nb201_flops": float(flops)})
