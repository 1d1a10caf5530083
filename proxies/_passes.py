"""The passes behind the zero-cost proxies (METHODS.md §2), shared by the proxies of a suite.

A *pass* runs one kind of forward (and backward) of a candidate and reduces what it saw, at once, to
the small tensors its proxies read. Proxies fetch passes with :func:`shared`, which keeps each result
in the candidate view (:meth:`ProxyContext.shared`), so a suite pays for every pass once per
candidate:

=============  ===========================================================  =========================
pass           work                                                         serves
=============  ===========================================================  =========================
``gradient``   1 cross-entropy forward + backward (weight grads), fisher    snip grad_norm plain
               hooks on every conv/linear output                            fisher (and g0 of grasp)
``jacobian``   1 forward, ReLU codes reduced into the N x N NASWOT kernel    nwot jacov epe_nas
               as they appear; a backward to the input only, run when
               jacov/epe_nas first read J (nwot alone never pays for it)
``grasp``      1 forward + double backward (Hessian-gradient product);     grasp
               reuses g0 of ``gradient``
``synflow``    1 forward + backward of a float64 |weights| copy without     synflow
               normalisation layers, on one all-ones input
``zen``        2 no-grad forwards of a N(0,1) re-initialised copy           zen
``zico``       1 forward + backward per mini-batch (the batch in halves)    zico
``meco``       1 no-grad forward on N(0,1) noise                            meco
=============  ===========================================================  =========================

Conventions (METHODS.md §2.0): every pass runs on a deep copy of the student in train mode, so
BatchNorm uses batch statistics and the student's running statistics never change. Dropout and
DropPath are switched off in the copy so that a pass is deterministic (**[our choice]**; NASLib leaves
them on, the NB201 and timm-default students have none). Per-layer results cover every ``nn.Conv2d``
and ``nn.Linear`` weight (biases excluded, the classifier included) in ``modules()`` order.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from studentnas.proxy import ProxyContext
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> ctx = ProxyContext(torch.randn(6, 4), torch.arange(6) % 3, 3).for_candidate(None)
    >>> grads = shared(ctx, "gradient", net, lambda: gradient_pass(net, ctx))
    >>> grads.snip.shape, shared(ctx, "gradient", net, lambda: None) is grads
    (torch.Size([2]), True)
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.proxy import ProxyContext

T = TypeVar("T")

WEIGHTED = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
RELUS = (nn.ReLU, nn.ReLU6)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_SLOT_KEY = "zero_cost:passes"


# ----------------------------------------------------------------------------------------------- sharing


class _Slot:
    """The passes of the last student a context scored, with that student's identity and parameter state."""

    def __init__(self) -> None:
        self.student: weakref.ref | None = None
        self.stamp: tuple[int, ...] = ()
        self.passes: dict[str, Any] = {}


def shared(ctx: ProxyContext, key: str, student: nn.Module, compute: Callable[[], T]) -> T:
    """``compute()`` once per candidate view, student object and parameter state.

    Results live in ``ctx.shared`` in one slot for the last student scored: a context reused for
    several students (a plain ``ProxyContext`` rather than a ``for_candidate`` view) never hands one
    student's pass to another and holds the passes (and the train copy) of one student at most. A
    student whose parameters changed in place since (their version counters moved) gets fresh passes.
    Before a new pass starts, passes that still hold a graph (``settle()``) finish, so activations of
    two passes are never alive together.
    """
    slot = ctx.shared(_SLOT_KEY, _Slot)
    stamp = tuple(p._version for p in student.parameters())
    if slot.student is None or slot.student() is not student or slot.stamp != stamp:
        slot.student, slot.stamp, slot.passes = weakref.ref(student), stamp, {}
    if key not in slot.passes:
        for done in slot.passes.values():
            if hasattr(done, "settle"):
                done.settle()
        slot.passes[key] = compute()
    return slot.passes[key]


def weighted_layers(net: nn.Module) -> list[nn.Module]:
    """Every ``nn.Conv2d`` and ``nn.Linear`` (subclasses included) of ``net``, in ``modules()`` order."""
    return [m for m in net.modules() if isinstance(m, WEIGHTED)]


def detached_copy(student: nn.Module) -> nn.Module:
    """A deep copy in train mode with dropout off and every parameter requiring grad."""
    net = copy.deepcopy(student)
    net.train()
    for m in net.modules():
        if isinstance(m, _DROPOUTS) or type(m).__name__ == "DropPath":
            m.eval()
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def train_copy(student: nn.Module, ctx: ProxyContext) -> nn.Module:
    """The candidate's shared train-mode copy, for passes that do not change weights (one deepcopy per
    candidate instead of one per pass; BatchNorm running statistics of the copy do move, which no
    train-mode pass reads)."""
    return shared(ctx, "train_copy", student, lambda: detached_copy(student))


def _device(net: nn.Module, ctx: ProxyContext) -> torch.device:
    param = next(net.parameters(), None)
    return param.device if param is not None else ctx.device


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"zero-cost proxies need a student whose forward returns one logits tensor, got "
                         f"{type(out).__name__}; wrap the model so that forward returns the logits")
    return out


def _labels(ctx: ProxyContext, logits: torch.Tensor) -> torch.Tensor:
    labels = ctx.labels.to(logits.device).long()
    classes = logits.shape[-1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must lie in [0, {classes}) for a student with {classes} outputs, got "
                         f"[{int(labels.min())}, {int(labels.max())}]; build the student with "
                         f"num_classes={max(int(labels.max()) + 1, classes)}")
    return labels


def _grads(loss: torch.Tensor, weights: list[torch.Tensor], **kwargs: bool) -> list[torch.Tensor]:
    """d loss / d weights, zeros for weights the loss does not reach."""
    if not loss.requires_grad:
        return [torch.zeros_like(w) for w in weights]
    grads = torch.autograd.grad(loss, weights, allow_unused=True, **kwargs)
    return [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as N x rest without a copy where the memory format allows (row order is irrelevant to sums)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        t = t.permute(0, 2, 3, 1)
    return t.reshape(t.shape[0], -1)


def noise(ctx: ProxyContext, generator: torch.Generator) -> torch.Tensor:
    """N(0,1) of the calibration batch's shape, drawn on the CPU (the same numbers on every device)."""
    return torch.randn(ctx.images.shape, generator=generator)


# ----------------------------------------------------------------------------------------------- gradient


@dataclass(frozen=True)
class GradientPass:
    """Per conv/linear layer (float64, length L): sum |theta*g|, ||g||_F, sum theta*g and the fisher
    sum (Delta_c broadcast over the channel's fan-in); ``grads`` keeps g itself for grasp."""

    snip: torch.Tensor
    grad_norm: torch.Tensor
    plain: torch.Tensor
    fisher: torch.Tensor
    grads: tuple[torch.Tensor, ...]


class _OutputChangedInPlace(Exception):
    """A conv/linear output was overwritten in place before the backward read it (internal retry signal)."""


def gradient_pass(student: nn.Module, ctx: ProxyContext) -> GradientPass:
    """One cross-entropy forward + backward on ``ctx.images``/``ctx.labels`` (train-mode copy).

    Fisher (Samsung/NASLib): at each conv/linear output a with delta = dL/da, per channel c
    Delta_c = 1/2 mean_n (sum_spatial a*delta)^2; the layer contributes sum_c Delta_c * fan_in, where
    fan_in = C_in/groups * k_h * k_w (the reference broadcasts Delta_c over the channel's weight slice
    before summing). Tensor hooks reduce a*delta as soon as delta exists, so no activation outlives
    the backward. An output that something changes in place before the backward (an inplace
    activation right after a conv, as in VGG without BN) is detected by its version counter, and the
    pass then reruns once with a snapshot of every output.
    """
    try:
        return _gradient_pass(student, ctx, snapshot=False)
    except _OutputChangedInPlace:
        return _gradient_pass(student, ctx, snapshot=True)


def _gradient_pass(student: nn.Module, ctx: ProxyContext, snapshot: bool) -> GradientPass:
    net = train_copy(student, ctx)
    layers = weighted_layers(net)
    fisher = torch.zeros(len(layers), dtype=torch.float64)

    def forward_hook(index: int, fan_in: int, channel_dim: int):
        def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if not output.requires_grad:
                return
            held = [output.detach().clone() if snapshot else output.detach()]
            version = held[0]._version

            def on_grad(grad: torch.Tensor) -> None:
                act = held.pop()
                if act._version != version:
                    raise _OutputChangedInPlace(type(module).__name__)
                prod = act * grad
                per = prod if prod.dim() == 2 else prod.movedim(channel_dim, -1).flatten(1, -2).sum(1)
                fisher[index] += float(per.pow(2).mean(0).mul(0.5).sum().double()) * fan_in

            output.register_hook(on_grad)

        return hook

    handles = [m.register_forward_hook(forward_hook(i, m.weight[0].numel(), 1 if isinstance(m, nn.Conv2d) else -1))
               for i, m in enumerate(layers)]
    try:
        with torch.enable_grad():
            x = ctx.images.to(_device(net, ctx))
            logits = _logits(net, x)
            loss = F.cross_entropy(logits, _labels(ctx, logits))
            weights = [m.weight for m in layers]
            grads = [g.detach() for g in _grads(loss, weights)]
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        snip = torch.tensor([float((w * g).abs().sum()) for w, g in zip(weights, grads)], dtype=torch.float64)
        plain = torch.tensor([float((w * g).sum()) for w, g in zip(weights, grads)], dtype=torch.float64)
        norm = torch.tensor([float(g.norm()) for g in grads], dtype=torch.float64)
    return GradientPass(snip=snip, grad_norm=norm, plain=plain, fisher=fisher, grads=tuple(grads))


@dataclass(frozen=True)
class GraspPass:
    """Per conv/linear layer (float64): sum of -theta * (H g0)."""

    per_layer: torch.Tensor


def grasp_pass(student: nn.Module, ctx: ProxyContext) -> GraspPass:
    """GraSP with T=1 and one iteration (NASLib): g0 from the shared ``gradient`` pass (the same
    forward on the same batch in train mode, so it equals NASLib's first pass), then a forward with a
    graph, g(theta) with ``create_graph``, z = sum g0 * g(theta) and H g0 = dz/dtheta."""
    g0 = shared(ctx, "gradient", student, lambda: gradient_pass(student, ctx)).grads
    net = train_copy(student, ctx)
    layers = weighted_layers(net)
    device = _device(net, ctx)
    if device.type == "cpu" and any(m.weight.dim() == 4 and not m.weight.is_contiguous() for m in layers):
        # CPU double backward (BatchNorm's above all) runs ~1.4x faster on contiguous tensors than on
        # channels_last ones, which the other passes prefer: this pass gets a contiguous copy of its own
        net = detached_copy(student).to(memory_format=torch.contiguous_format)
        layers = weighted_layers(net)
    weights = [m.weight for m in layers]
    with torch.enable_grad():
        x = ctx.images.to(device).contiguous()
        logits = _logits(net, x)
        loss = F.cross_entropy(logits, _labels(ctx, logits))
        g = _grads(loss, weights, create_graph=True)
        z = sum((a * b).sum() for a, b in zip(g0, g) if b.requires_grad)
        hg = _grads(z, weights) if isinstance(z, torch.Tensor) else [torch.zeros_like(w) for w in weights]
    with torch.no_grad():
        per = torch.tensor([float((-w * h).sum()) for w, h in zip(weights, hg)], dtype=torch.float64)
    return GraspPass(per_layer=per)


# ----------------------------------------------------------------------------------------------- jacobian


class JacobianPass:
    """The ``jacobian`` pass: ``kernel``, the N x N NASWOT kernel (float64), is ready when the forward
    ends; ``corr``, the N x N Pearson correlation of the per-sample input Jacobians
    J_n = d(sum outputs)/dx_n (float64, nan rows for constant J_n), runs the backward on first use.

    Until then the forward's graph is kept, so ``nwot`` alone never pays for the backward (it would
    nearly double its time). :func:`shared` settles the pass (runs the backward, frees the graph)
    before any other pass of the same candidate starts, so no two passes' activations are alive at
    once, and a view that is dropped frees an unused graph.
    """

    def __init__(self, kernel: torch.Tensor, out: torch.Tensor, x: torch.Tensor):
        self.kernel = kernel
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = (out, x)
        self._corr: torch.Tensor | None = None

    @property
    def corr(self) -> torch.Tensor:
        if self._corr is None:
            self.settle()
        return self._corr  # type: ignore[return-value]

    def settle(self) -> None:
        """Run the backward of sum(outputs) to the input, reduce J to its row correlation, drop the graph."""
        if self._pending is None:
            return
        out, x = self._pending
        self._pending = None
        jac = None
        if out.requires_grad:
            with torch.enable_grad():
                (jac,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
        jac = torch.zeros_like(x) if jac is None else jac
        self._corr = pearson_rows(_rows(jac.detach())).cpu()


def pearson_rows(rows: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the rows of ``rows`` (float64), clipped to [-1, 1] as ``np.corrcoef`` does;
    a constant row gives nan entries."""
    r = rows.double()
    r = r - r.mean(dim=1, keepdim=True)
    cov = r @ r.T
    std = cov.diagonal().sqrt()
    std[rows.amax(dim=1) == rows.amin(dim=1)] = 0.0  # exactly constant: 0/0 = nan, not rounding noise
    return (cov / std[:, None] / std[None, :]).clamp(-1.0, 1.0)


def jacobian_pass(student: nn.Module, ctx: ProxyContext, with_jacobian: bool = True) -> JacobianPass:
    """One forward with the input requiring grad; the backward of sum(outputs) to the input follows
    when ``corr`` is first read (see :class:`JacobianPass`).

    NASWOT: every ``nn.ReLU``/``nn.ReLU6`` call with codes c = 1[u > 0] (N x units) adds
    c c^T + (1-c)(1-c)^T = 2 c c^T + units - |c_i| - |c_j| to K, during the forward (codes are never
    stored). Several ReLUs reading the same unchanged tensor (NB201 nodes feed up to three edges) reuse
    its contribution. The Jacobian is reduced at once to its N x N row correlation, which is all jacov
    and epe_nas read (a class's correlation matrix is a sub-matrix of it).

    With ``with_jacobian=False`` (a suite where no proxy reads ``corr``) the forward runs without
    autograd: no graph is built, which makes ``nwot`` alone about 1.6x faster.
    """
    net = train_copy(student, ctx)
    n = ctx.images.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)
    seen: dict[int, tuple[weakref.ref, int, torch.Tensor]] = {}

    def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        source = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        hit = seen.get(id(source)) if source is not None and source is not output else None
        if hit is not None and hit[0]() is source and hit[1] == source._version:
            kernel.add_(hit[2])
            return
        codes = _rows(output.detach() > 0).float()
        same_on = codes @ codes.T  # exact in float32 below 2**24 units
        on = codes.sum(dim=1, keepdim=True)
        part = (2 * same_on + codes.shape[1] - on - on.T).double().cpu()
        kernel.add_(part)
        if source is not None and source is not output:
            seen[id(source)] = (weakref.ref(source), source._version, part)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, RELUS)]
    try:
        with torch.enable_grad() if with_jacobian else torch.no_grad():
            x = ctx.images.to(_device(net, ctx)).detach().clone().requires_grad_(with_jacobian)
            out = _logits(net, x)
    finally:
        for h in handles:
            h.remove()
        seen.clear()
    return JacobianPass(kernel, out, x)


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
        out = _logits(net, torch.ones(1, *ctx.input_size, dtype=torch.float64, device=_device(net, ctx)))
        grads = _grads(out.sum(), [m.weight for m in layers])
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


def _gaussian_init(net: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS's re-initialisation: conv/linear weights N(0,1) and zero biases; norm weights 1 and
    biases 0; running statistics reset (as in the freshly built networks Zen-NAS scores)."""
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
    device = _device(net, ctx)
    generator = torch.Generator().manual_seed(ctx.seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    deltas, scales = [], []
    batch_var: dict[int, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
        if id(module) not in batch_var:
            batch_var[id(module)] = inputs[0].transpose(0, 1).flatten(1).var(dim=1)

    for _ in range(repeat):
        _gaussian_init(net, generator)
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
    device = _device(net, ctx)
    recorded: list[list[torch.Tensor]] = [[] for _ in layers]
    running: list[torch.Tensor] | None = None
    for index in torch.arange(n).tensor_split(batches):
        with torch.enable_grad():
            logits = _logits(net, ctx.images[index].to(device))
            labels = _labels(ctx, logits)[index.to(logits.device)]
            grads = [g.detach() for g in _grads(F.cross_entropy(logits, labels), weights)]
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
            net(noise(ctx, torch.Generator().manual_seed(ctx.seed)).to(_device(net, ctx)))
    finally:
        for h in handles:
            h.remove()
    return MecoPass(min_eigenvalues=torch.tensor(values, dtype=torch.float64))
