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
               jacov/epe_nas first read J (nwot alone never pays for it;
               with a known suite without them, ``ctx.suite``, nwot's
               forward runs under no_grad: key ``relu_kernel``)
``grasp``      1 forward + double backward (Hessian-gradient product);     grasp
               reuses g0 of ``gradient``
``synflow``    1 forward + backward of a float64 |weights| copy without     synflow
               normalisation layers, on one all-ones input
``zen``        2 no-grad forwards of a N(0,1) re-initialised copy           zen
``zico``       1 forward + backward per mini-batch (the batch in halves)    zico
``meco``       1 no-grad forward on N(0,1) noise                            meco
=============  ===========================================================  =========================

The last four (one proxy each) live in :mod:`studentnas.scoring.solo_passes`; this module holds the
shared ones and the sharing itself.

Conventions (METHODS.md §2.0): every pass runs on a deep copy of the student in train mode, so
BatchNorm uses batch statistics and the student's running statistics never change. Dropout and
DropPath are switched off in the copy so that a pass is deterministic (**[our choice]**; NASLib leaves
them on, the NB201 and timm-default students have none). Per-layer results cover every ``nn.Conv2d``
and ``nn.Linear`` weight (biases excluded, the classifier included) in ``modules()`` order.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from studentnas.core.proxy import ProxyContext
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

from studentnas.core.proxy import ProxyContext

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


def device_of(net: nn.Module, ctx: ProxyContext) -> torch.device:
    """Where ``net``'s weights are (``ctx.device`` for a net without parameters): a pass's inputs go there."""
    param = next(net.parameters(), None)
    return param.device if param is not None else ctx.device


def logits_of(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)``, which must be one logits tensor (a ``ValueError`` that says how to wrap the model otherwise)."""
    out = net(x)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"zero-cost proxies need a student whose forward returns one logits tensor, got "
                         f"{type(out).__name__}; wrap the model so that forward returns the logits")
    return out


def checked_labels(ctx: ProxyContext, logits: torch.Tensor) -> torch.Tensor:
    """``ctx.labels`` on ``logits``' device, checked to lie in ``[0, classes)`` of the student's output."""
    labels = ctx.labels.to(logits.device).long()
    classes = logits.shape[-1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must lie in [0, {classes}) for a student with {classes} outputs, got "
                         f"[{int(labels.min())}, {int(labels.max())}]; build the student with "
                         f"num_classes={max(int(labels.max()) + 1, classes)}")
    return labels


def grads_of(loss: torch.Tensor, weights: list[torch.Tensor], **kwargs: bool) -> list[torch.Tensor]:
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
            x = ctx.images.to(device_of(net, ctx))
            logits = logits_of(net, x)
            loss = F.cross_entropy(logits, checked_labels(ctx, logits))
            weights = [m.weight for m in layers]
            grads = [g.detach() for g in grads_of(loss, weights)]
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
    device = device_of(net, ctx)
    if device.type == "cpu" and any(m.weight.dim() == 4 and not m.weight.is_contiguous() for m in layers):
        # CPU double backward (BatchNorm's above all) runs ~1.4x faster on contiguous tensors than on
        # channels_last ones, which the other passes prefer: this pass gets a contiguous copy of its own
        net = detached_copy(student).to(memory_format=torch.contiguous_format)
        layers = weighted_layers(net)
    weights = [m.weight for m in layers]
    with torch.enable_grad():
        x = ctx.images.to(device).contiguous()
        logits = logits_of(net, x)
        loss = F.cross_entropy(logits, checked_labels(ctx, logits))
        g = grads_of(loss, weights, create_graph=True)
        z = sum((a * b).sum() for a, b in zip(g0, g) if b.requires_grad)
        hg = grads_of(z, weights) if isinstance(z, torch.Tensor) else [torch.zeros_like(w) for w in weights]
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
            x = ctx.images.to(device_of(net, ctx)).detach().clone().requires_grad_(with_jacobian)
            out = logits_of(net, x)
    finally:
        for h in handles:
            h.remove()
        seen.clear()
    return JacobianPass(kernel, out, x)
