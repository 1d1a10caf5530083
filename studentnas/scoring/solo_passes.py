"""The passes that serve one proxy each (METHODS.md §2): synflow, zen, zico and meco.

They follow the conventions of :mod:`studentnas.scoring.passes` (a deep copy of the student, per-layer
results over every conv/linear weight) and are cached per candidate with its :func:`~studentnas.scoring.passes.shared`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from studentnas.core.proxy import ProxyContext
    >>> net = nn.Sequential(nn.Linear(2, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False))
    >>> ctx = ProxyContext(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), 1).for_candidate(None)
    >>> synflow_pass(net, ctx).per_layer.shape
    torch.Size([2])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.proxy import ProxyContext
from studentnas.scoring.passes import (
    NORMS,
    WEIGHTED,
    checked_labels,
    detached_copy,
    device_of,
    grads_of,
    logits_of,
    noise,
    train_copy,
    weighted_layers,
)

# ----------------------------------------------------------------------------------------------- synflow


@dataclass(frozen=True)
class SynflowPass:
    """Per conv/linear layer (float64): sum |theta * dR/dtheta|."""

    per_layer: torch.Tensor


def strip_norms(module: nn.Module) -> None:
    """Replace every normalisation layer by an identity, in place (synflow's ``bn=False``)."""
    for name, child in module.named_children():
        if isinstance(child, NORMS):
            setattr(module, name, nn.Identity())
        else:
            strip_norms(child)


def synflow_pass(student: nn.Module, ctx: ProxyContext) -> SynflowPass:
    """A float64 copy without normalisation layers and with |parameters| (the signs are simply not
    restored: the copy is dropped), R = sum of its outputs on one all-ones input, backpropagated."""
    net = detached_copy(student).double()
    strip_norms(net)
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    layers = weighted_layers(net)
    with torch.enable_grad():
        out = logits_of(net, torch.ones(1, *ctx.input_size, dtype=torch.float64, device=device_of(net, ctx)))
        grads = grads_of(out.sum(), [m.weight for m in layers])
    with torch.no_grad():
        per = torch.tensor([float((m.weight * g).abs().sum()) for m, g in zip(layers, grads)], dtype=torch.float64)
    return SynflowPass(per_layer=per)


# ----------------------------------------------------------------------------------------------- zen


@dataclass(frozen=True)
class ZenPass:
    """Per repeat: Delta (the mean per-sample L1 change of the pre-GAP map) and the BN term
    sum_BN log sqrt(mean_c var_c)."""

    delta: torch.Tensor
    bn_log_scale: torch.Tensor


def pre_gap(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature map before global pooling: ``forward_features`` (timm's contract), else the input
    of the last ``nn.AdaptiveAvgPool2d``/``AdaptiveMaxPool2d`` (or a timm ``SelectAdaptivePool2d``)."""
    if hasattr(net, "forward_features"):
        return net.forward_features(x)
    adaptive = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    pools = [m for m in net.modules() if isinstance(m, adaptive) or type(m).__name__ == "SelectAdaptivePool2d"]
    if not pools:
        raise ValueError(f"zen needs the feature map before global pooling, but {type(net).__name__} has no "
                         "forward_features and no adaptive pooling layer; give the model a forward_features "
                         "method (timm's contract)")
    seen: list[torch.Tensor] = []
    handle = pools[-1].register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    try:
        net(x)
    finally:
        handle.remove()
    return seen[-1]


def gaussian_init(net: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS's re-initialisation (also used by ``bn_log_scale``): conv/linear weights N(0,1) and zero
    biases; norm weights 1 and biases 0; running statistics reset (as in the networks Zen-NAS scores)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, WEIGHTED):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, NORMS) and getattr(m, "weight", None) is not None:
                m.weight.fill_(1.0)
                if m.bias is not None:
                    m.bias.zero_()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.reset_running_stats()


def zen_pass(student: nn.Module, ctx: ProxyContext, gamma: float, bn_variance: str, repeat: int) -> ZenPass:
    """Zen-NAS: per repeat, re-initialise a copy (generator seeded with ``ctx.seed``, drawing the
    weights, then x, then eps), run f(x) and f(x + gamma*eps) in train mode without grad, and read
    Delta = mean_n sum_{c,h,w} |f(x) - f(x + gamma*eps)| on the pre-GAP map.

    BN term, per ``nn.BatchNorm2d``: ``bn_variance="running"`` reads running_var after the two
    forwards, i.e. 0.81 + 0.09 var(x-batch) + 0.1 var(mixed batch) at momentum 0.1 (the Zen-NAS code,
    parity); ``"batch"`` reads the unbiased batch variance of the first forward through hooks.
    """
    net = detached_copy(student)
    device = device_of(net, ctx)
    generator = torch.Generator().manual_seed(ctx.seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    deltas, scales = [], []
    batch_var: dict[int, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
        if id(module) not in batch_var:
            batch_var[id(module)] = inputs[0].transpose(0, 1).flatten(1).var(dim=1)

    for _ in range(repeat):
        gaussian_init(net, generator)
        x, eps = noise(ctx, generator).to(device), noise(ctx, generator).to(device)
        batch_var.clear()
        handles = [m.register_forward_hook(hook) for m in bns] if bn_variance == "batch" else []
        try:
            with torch.no_grad():
                clean = pre_gap(net, x)
                for h in handles:
                    h.remove()
                mixed = pre_gap(net, x + gamma * eps)
        finally:
            for h in handles:
                h.remove()
        deltas.append(float((clean - mixed).abs().flatten(1).sum(1).mean()))
        if bn_variance == "batch":
            variances = [batch_var[id(m)] for m in bns if id(m) in batch_var]
        else:
            variances = [m.running_var for m in bns if m.running_var is not None]
        scales.append(sum(float(torch.log(torch.sqrt(v.double().mean()))) for v in variances))
    return ZenPass(delta=torch.tensor(deltas, dtype=torch.float64),
                   bn_log_scale=torch.tensor(scales, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------- zico


@dataclass(frozen=True)
class ZicoPass:
    """Per conv/linear layer (float64): sum over weights with std > 0 of mean|g| / std(g) across the
    mini-batches (0 when no weight's gradient varies)."""

    ratio_sum: torch.Tensor


def zico_pass(student: nn.Module, ctx: ProxyContext, batches: int, cumulative: bool) -> ZicoPass:
    """One CE forward + backward per mini-batch (``ctx.images`` split into ``batches`` near-equal
    parts, in order). ``cumulative=True`` records the gradients the reference code records, which never
    zeroes them: after batch b, g_1 + ... + g_b."""
    n = ctx.images.shape[0]
    if n < batches:
        raise ValueError(f"zico splits the calibration batch into {batches} mini-batches but it has {n} images; "
                         f"use at least {batches} images or a smaller ZicoProxy(batches=...)")
    net = train_copy(student, ctx)
    layers = weighted_layers(net)
    weights = [m.weight for m in layers]
    device = device_of(net, ctx)
    recorded: list[list[torch.Tensor]] = [[] for _ in layers]
    running: list[torch.Tensor] | None = None
    for index in torch.arange(n).tensor_split(batches):
        with torch.enable_grad():
            logits = logits_of(net, ctx.images[index].to(device))
            labels = checked_labels(ctx, logits)[index.to(logits.device)]
            grads = [g.detach() for g in grads_of(F.cross_entropy(logits, labels), weights)]
        if cumulative:
            running = grads if running is None else [a + b for a, b in zip(running, grads)]
            grads = running
        for store, g in zip(recorded, grads):
            store.append(g.flatten().double())
    sums = []
    for store in recorded:  # elementwise over the few batches: much faster than a strided std(dim=0)
        mean = sum(store) / len(store)
        std = (sum((g - mean).square() for g in store) / len(store)).sqrt()  # population std, as np.std
        mean_abs = sum(g.abs() for g in store) / len(store)
        varying = std != 0
        sums.append(float((mean_abs[varying] / std[varying]).sum()))
    return ZicoPass(ratio_sum=torch.tensor(sums, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------- meco


@dataclass(frozen=True)
class MecoPass:
    """Per ``nn.Conv2d`` call with at least two non-constant channels (float64): the minimum eigenvalue of
    the Pearson correlation matrix of its output channels."""

    min_eigenvalues: torch.Tensor


def channel_min_eigenvalue(feature_map: torch.Tensor) -> float | None:
    """lambda_min of the C x C Pearson correlation of the channels of an N x C x ... map, every (sample,
    position) being one observation; constant channels are dropped, None below two channels left."""
    rows = feature_map.detach().movedim(1, -1).reshape(-1, feature_map.shape[1])
    keep = rows.amax(dim=0) > rows.amin(dim=0)  # exact test; a centred constant channel may keep rounding noise
    if int(keep.sum()) < 2:
        return None
    rows = rows[:, keep] if not bool(keep.all()) else rows
    rows = rows - rows.mean(dim=0, keepdim=True)
    cov = (rows.T @ rows).double()
    std = cov.diagonal().sqrt()
    corr = cov / std[:, None] / std[None, :]
    return float(torch.linalg.eigvalsh(corr.cpu())[0])


def meco_pass(student: nn.Module, ctx: ProxyContext) -> MecoPass:
    """One no-grad train-mode forward on N(0,1) noise of the batch shape (a generator seeded with
    ``ctx.seed``); every ``nn.Conv2d`` output is reduced to its correlation's minimum eigenvalue in a hook."""
    net = train_copy(student, ctx)
    values: list[float] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        value = channel_min_eigenvalue(output)
        if value is not None:
            values.append(value)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(noise(ctx, torch.Generator().manual_seed(ctx.seed)).to(device_of(net, ctx)))
    finally:
        for h in handles:
            h.remove()
    return MecoPass(min_eigenvalues=torch.tensor(values, dtype=torch.float64))
