"""Classic zero-cost proxies (METHODS.md §2): ``synflow`` (data-free) and ``nwot`` (NASWOT).

Both follow the NASLib / SamsungLabs zero-cost harness: networks at their default initialisation,
per-layer quantities summed over every conv and linear weight (classifier included).

Example:
    >>> import torch, timm
    >>> from studentnas.proxy import ProxyContext
    >>> net = timm.create_model("resnet18", num_classes=10)
    >>> ctx = ProxyContext(torch.randn(8, 3, 32, 32), torch.arange(8) % 10, 10)
    >>> s = NwotProxy().score(net, ctx)
    >>> 0 < s < 8 * 100   # log|det K|, K is 8x8 with entries up to the ReLU unit count
    True
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from studentnas.proxy import Proxy, ProxyContext, signed_log
from studentnas.registry import PROXIES

_WEIGHTED = (nn.Conv2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def _strip_norms(module: nn.Module) -> None:
    """Replace every normalisation layer by an identity, in place (synflow's ``bn=False``)."""
    for name, child in module.named_children():
        if isinstance(child, _NORMS):
            setattr(module, name, nn.Identity())
        else:
            _strip_norms(child)


@PROXIES.register("synflow")
class SynflowProxy(Proxy):
    """SynFlow: sum over conv/linear weights of |theta * dR/dtheta|, R = sum of the outputs of the
    network with |weights|, no normalisation layers, float64, on one all-ones input.

    Data- and label-free. Runs on a deep copy, so the student is untouched.
    """

    name = "synflow"
    needs = frozenset()
    sign = "log-transformed as NASLib does (log s for s > 0); larger synaptic flow is better"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        net = copy.deepcopy(student).double()
        _strip_norms(net)
        net.train()
        with torch.no_grad():
            for p in net.parameters():
                p.abs_()
        net.zero_grad(set_to_none=True)
        out = net(torch.ones(1, *ctx.input_size, dtype=torch.float64))
        torch.sum(out).backward()
        total = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, _WEIGHTED) and module.weight.grad is not None:
                    total += (module.weight * module.weight.grad).abs().sum()
        return signed_log(float(total))

    @classmethod
    def example_pair(cls):  # noqa: ANN206 - see Proxy.example_pair
        """A 2-4-1 ReLU MLP and the same MLP with half of its first-layer weights pruned to zero:
        pruning removes synaptic paths, so the pruned net has strictly less flow."""
        torch.manual_seed(0)
        full = nn.Sequential(nn.Linear(2, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False))
        pruned = copy.deepcopy(full)
        with torch.no_grad():
            pruned[0].weight[:2].zero_()
        ctx = ProxyContext(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), 1).for_candidate(None)
        return (full, ctx), (pruned, ctx)


@PROXIES.register("nwot")
class NwotProxy(Proxy):
    """NASWOT (v2): the log-determinant of the kernel K of ReLU activation codes over the batch.

    For every ``nn.ReLU`` call with binary code c = 1[u > 0] (N x units),
    K += c c^T + (1 - c)(1 - c)^T, i.e. units minus the Hamming distance; score = log|det K|.
    Forward only, BatchNorm in train mode (batch statistics), student untouched (no weights change).
    """

    name = "nwot"
    needs = frozenset({"data"})
    sign = "none: a larger log-determinant (more distinct activation patterns) is better"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        n = ctx.images.shape[0]
        kernel = torch.zeros(n, n, dtype=torch.float64)

        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            codes = (output.detach().reshape(n, -1) > 0).float()
            same_on = codes @ codes.T  # exact in float32 below 2**24 units
            on = codes.sum(dim=1, keepdim=True)
            units = codes.shape[1]
            kernel.add_((2 * same_on + units - on - on.T).double())

        handles = [m.register_forward_hook(hook) for m in student.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
        was_training = student.training
        bn_state = {k: v.clone() for k, v in student.state_dict().items() if "running" in k or "num_batches" in k}
        try:
            student.train()
            with torch.no_grad():
                student(ctx.images)
        finally:
            for h in handles:
                h.remove()
            student.train(was_training)
            student.load_state_dict(bn_state, strict=False)
        return float(torch.linalg.slogdet(kernel)[1])

    @classmethod
    def example_pair(cls):  # noqa: ANN206 - see Proxy.example_pair
        """Identity layer + ReLU on inputs (1,1,1,1) and (-1,-1,-1,-1): codes 1111 vs 0000 (Hamming 4),
        K = [[4,0],[0,4]], det 16. The same layer on (1,1,1,1) and (1,1,1,-1): codes 1111 vs 1110,
        K = [[4,3],[3,4]], det 7. More distinct activation patterns score higher."""
        net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU())
        with torch.no_grad():
            net[0].weight.copy_(torch.eye(4))
        far = ProxyContext(torch.tensor([[1.0] * 4, [-1.0] * 4]), torch.zeros(2, dtype=torch.long), 2)
        near = ProxyContext(torch.tensor([[1.0] * 4, [1.0, 1.0, 1.0, -1.0]]), torch.zeros(2, dtype=torch.long), 2)
        return (net, far.for_candidate(None)), (copy.deepcopy(net), near.for_candidate(None))
