"""A fast latency *estimate* from a per-layer lookup table, to pre-filter archs before measuring.

A network is a list of :class:`Layer` s (a kind such as ``conv``, its arguments and its batch-1
input shape), given by ``SearchSpace.layers(arch, input_size, num_classes)``: analytic for the
shipped spaces (microseconds, no model is built), traced from a build on the ``meta`` device for
any other space. Each distinct layer is timed once on its own (real module, random input,
channels_last, median of several samples, the same threads as :class:`~studentnas.hardware.latency.LatencyMeter`)
and kept in the ``layers`` section of the latency cache; the estimate of an arch is the sum over
its layers. The sum leaves out what no layer sees (Python overhead of container modules, tensor
copies), so it ranks archs well but is not the measured latency: :meth:`LatencyEstimator.observe`
calibrates it against measurements, and :meth:`LatencyEstimator.could_fit` uses the most
optimistic calibration seen, so an arch is only rejected when even that says it is over budget.
``scripts/bench_latency.py`` reports the estimate's rank correlation with measured latency.

Example:
    >>> layer = Layer("conv", (16, 32, 3, 2, 1, 1), (1, 16, 32, 32))
    >>> layer.key, layer.output_shape()
    ('conv(16,32,3,2,1,1)@1x16x32x32', (1, 32, 16, 16))
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.arch import Arch
from studentnas.core.space import SearchSpace
from studentnas.hardware.latency import LatencyCache, default_threads, device_signature

LayerArg = int | bool


@dataclass(frozen=True)
class Layer:
    """One layer as the latency table sees it: ``kind`` (a key of :data:`LAYER_KINDS`), its
    constructor ``args`` and its batch-1 input ``shape``."""

    kind: str
    args: tuple[LayerArg, ...]
    shape: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}({','.join(str(int(a)) for a in self.args)})@{'x'.join(map(str, self.shape))}"

    def output_shape(self) -> tuple[int, ...]:
        """The output shape (so analytic layer lists can chain layers)."""
        return LAYER_KINDS[self.kind].output_shape(self.args, self.shape)


def _spatial(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


@dataclass(frozen=True)
class LayerKind:
    """How to run one kind of layer on its own (``make(args, x)`` returns a zero-argument callable
    that runs it on ``x``) and how it changes the shape."""

    make: Callable[[tuple[LayerArg, ...], torch.Tensor], Callable[[], Any]]
    output_shape: Callable[[tuple[LayerArg, ...], tuple[int, ...]], tuple[int, ...]]


def _same(_args: tuple, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape


def _make_conv(args: tuple, x: torch.Tensor) -> Callable[[], Any]:
    cin, cout, k, s, p, groups = (int(a) for a in args)
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, groups=groups, bias=False).eval()
    conv.to(memory_format=torch.channels_last)
    return lambda: conv(x)


def _make_bn(args: tuple, x: torch.Tensor) -> Callable[[], Any]:
    bn = nn.BatchNorm2d(int(args[0])).eval()
    return lambda: bn(x)


def _make_linear(args: tuple, x: torch.Tensor) -> Callable[[], Any]:
    fc = nn.Linear(int(args[0]), int(args[1])).eval()
    return lambda: fc(x)


def _make_add(args: tuple, x: torch.Tensor) -> Callable[[], Any]:
    y = x.clone()
    return (lambda: x.add_(y)) if args[0] else (lambda: x + y)


def _pool_shape(args: tuple, shape: tuple[int, ...]) -> tuple[int, ...]:
    k, s, p = (int(a) for a in args[:3])
    return (shape[0], shape[1], _spatial(shape[2], k, s, p), _spatial(shape[3], k, s, p))


LAYER_KINDS: dict[str, LayerKind] = {
    # conv: (in, out, kernel, stride, padding, groups), no bias
    "conv": LayerKind(_make_conv, lambda a, sh: (sh[0], int(a[1]), _spatial(sh[2], a[2], a[3], a[4]),
                                                  _spatial(sh[3], a[2], a[3], a[4]))),
    "bn": LayerKind(_make_bn, _same),  # (channels,), eval mode
    "relu": LayerKind(lambda a, x: (lambda: torch.relu_(x)) if a[0] else (lambda: torch.relu(x)), _same),  # (inplace,)
    "maxpool": LayerKind(lambda a, x: lambda: F.max_pool2d(x, int(a[0]), int(a[1]), int(a[2])), _pool_shape),
    # avgpool: (kernel, stride, padding, count_include_pad)
    "avgpool": LayerKind(lambda a, x: lambda: F.avg_pool2d(x, int(a[0]), int(a[1]), int(a[2]),
                                                           count_include_pad=bool(a[3])), _pool_shape),
    "add": LayerKind(_make_add, _same),  # (inplace,): a residual or cell-node sum of two tensors
    "gap": LayerKind(lambda a, x: lambda: F.adaptive_avg_pool2d(x, 1).flatten(1),
                     lambda a, sh: (sh[0], sh[1])),  # global average pool + flatten
    "linear": LayerKind(_make_linear, lambda a, sh: (sh[0], int(a[1]))),  # (in, out), with bias
}


def time_layer_ms(layer: Layer, threads: int, samples: int = 7, min_sample_s: float = 2e-4) -> float:
    """Median time of one call of ``layer`` on its own, in ms. Each sample repeats the call enough
    times to last ``min_sample_s`` (so microsecond layers are not lost in timer noise)."""
    kind = LAYER_KINDS[layer.kind]
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            x = torch.rand(layer.shape, generator=torch.Generator().manual_seed(0))
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            run = kind.make(layer.args, x)
            run(), run()  # warm-up: allocator, oneDNN primitive cache
            t0 = time.perf_counter()
            run()
            calls = max(1, int(min_sample_s / max(time.perf_counter() - t0, 1e-7)))
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                for _ in range(calls):
                    run()
                times.append((time.perf_counter() - t0) / calls)
        return statistics.median(times) * 1e3
    finally:
        torch.set_num_threads(prev)


# --- tracing: the generic layers() of any space -----------------------------------------------------
def _conv_layer(m: nn.Conv2d, shape: tuple[int, ...]) -> Layer | None:
    if m.dilation != (1, 1) or m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] \
            or not isinstance(m.padding, tuple) or m.padding[0] != m.padding[1]:
        return None
    return Layer("conv", (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.groups), shape)


def _pool_args(m: nn.Module) -> tuple[int, int, int]:
    def one(v: Any) -> int:
        return int(v[0] if isinstance(v, tuple) else v)

    return one(m.kernel_size), one(m.stride), one(m.padding)


_TRACERS: dict[type, Callable[[Any, tuple[int, ...]], Layer | None]] = {
    nn.Conv2d: _conv_layer,
    nn.BatchNorm2d: lambda m, sh: Layer("bn", (m.num_features,), sh),
    nn.ReLU: lambda m, sh: Layer("relu", (bool(m.inplace),), sh),
    nn.MaxPool2d: lambda m, sh: Layer("maxpool", _pool_args(m), sh),
    nn.AvgPool2d: lambda m, sh: Layer("avgpool", (*_pool_args(m), bool(m.count_include_pad)), sh),
    nn.AdaptiveAvgPool2d: lambda m, sh: Layer("gap", (), sh) if m.output_size in (1, (1, 1)) else None,
    nn.Linear: lambda m, sh: Layer("linear", (m.in_features, m.out_features), sh),
}
_FREE = (nn.Identity, nn.Flatten, nn.Dropout)  # no work at inference


def trace_layers(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[list[Layer], list[str]]:
    """(layers, unmodelled) of ``model`` from one batch-1 forward pass with hooks on its leaf modules.

    Runs on the model's device (use ``meta`` to skip the arithmetic). ``unmodelled`` names the leaf
    modules of kinds the table does not know. Sums inside ``forward`` methods (residual adds) are
    not modules and are not seen: spaces that list their layers analytically include them.
    """
    layers: list[Layer] = []
    unmodelled: list[str] = []

    def hook(mod: nn.Module, inputs: tuple, _out: Any) -> None:
        if isinstance(mod, _FREE) or not inputs or not torch.is_tensor(inputs[0]):
            return
        tracer = _TRACERS.get(type(mod))
        layer = tracer(mod, tuple(inputs[0].shape)) if tracer else None
        if layer is None:
            unmodelled.append(type(mod).__name__)
        else:
            layers.append(layer)

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return layers, unmodelled


def traced_layers(space: SearchSpace, arch: Arch, input_size: tuple[int, int, int], num_classes: int) -> list[Layer]:
    """The layers of ``arch`` traced from a build on the ``meta`` device (no memory, no compute)."""
    with torch.device("meta"):
        model = space.build(arch, num_classes=num_classes, in_chans=input_size[0])
    return trace_layers(model, input_size)[0]


def space_layers(space: SearchSpace, arch: Arch, input_size: tuple[int, int, int], num_classes: int) -> list[Layer]:
    """The space's analytic layer list (:meth:`SearchSpace.layers`), or a meta-device trace where it has none."""
    layers = space.layers(arch, input_size, num_classes)
    return layers if layers is not None else traced_layers(space, arch, input_size, num_classes)


def chain(start: tuple[int, ...], specs: Iterable[tuple[str, tuple[LayerArg, ...]]]) -> list[Layer]:
    """Layers applied one after the other from input shape ``start`` (for analytic ``layers()``).

    >>> [layer.key for layer in chain((1, 3, 8, 8), [("conv", (3, 4, 3, 2, 1, 1)), ("relu", (True,))])]
    ['conv(3,4,3,2,1,1)@1x3x8x8', 'relu(1)@1x4x4x4']
    """
    out, shape = [], tuple(start)
    for kind, args in specs:
        layer = Layer(kind, tuple(args), shape)
        out.append(layer)
        shape = layer.output_shape()
    return out


class LatencyEstimator:
    """Estimated latency of archs: the sum of per-layer times from the lookup table.

    Args:
        threads: torch threads while timing layers (default: as :class:`~studentnas.hardware.latency.LatencyMeter`).
        cache: where the table lives (default: the shared latency cache file).
        samples: timed samples per layer.
    """

    def __init__(self, threads: int | None = None, cache: LatencyCache | None = None, samples: int = 7):
        self.threads = threads if threads is not None else default_threads()
        self.cache = cache if cache is not None else LatencyCache()
        self.device = device_signature(self.threads)
        self.samples = samples
        self.ratios: list[float] = []  # measured / estimated, from observe()
        self.layers_timed = 0

    def table_ms(self, layers: Sequence[Layer]) -> dict[str, float]:
        """Per-layer ms of ``layers`` from the table; layers not in it are timed now and saved."""
        table = self.cache.section(self.device, "layers")
        missing = {layer.key: layer for layer in layers if layer.key not in table}
        if missing:
            new = {key: time_layer_ms(layer, self.threads, self.samples) for key, layer in missing.items()}
            self.layers_timed += len(new)
            self.cache.update(self.device, "layers", new)
            table = self.cache.section(self.device, "layers")
        return table

    def estimate_layers_ms(self, layers: Sequence[Layer]) -> float:
        table = self.table_ms(layers)
        return float(sum(table[layer.key] for layer in layers))

    def estimate_ms(self, space: SearchSpace, arch: Arch, input_size: tuple[int, int, int], num_classes: int) -> float:
        """Uncalibrated estimate in ms: the sum of the arch's layer times."""
        return self.estimate_layers_ms(space_layers(space, arch, tuple(input_size), num_classes))

    def observe(self, estimate_ms: float, measured_ms: float) -> None:
        """Record a measurement of an estimated arch (calibrates :meth:`could_fit`)."""
        if estimate_ms > 0 and measured_ms > 0:
            self.ratios.append(measured_ms / estimate_ms)

    def could_fit(self, space: SearchSpace, arch: Arch, input_size: tuple[int, int, int], num_classes: int,
                  limit_ms: float, margin: float = 0.2) -> bool:
        """False only when the arch is clearly over ``limit_ms``: its estimate, scaled by the smallest
        measured/estimated ratio seen (1 before any), exceeds the limit by more than ``margin``."""
        scale = min(self.ratios, default=1.0)
        return self.estimate_ms(space, arch, input_size, num_classes) * scale <= limit_ms * (1 + margin)
