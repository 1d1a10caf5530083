"""Gradient-saliency zero-cost proxies (METHODS.md §2): ``synflow``, ``snip``, ``grasp``, ``fisher``,
``grad_norm``, ``plain`` and the weight-only ``l2_norm``.

They follow the NASLib / SamsungLabs zero-cost harness: networks at their current (default)
initialisation, a deep copy in train mode, one calibration batch, per-layer quantities summed over
every conv and linear weight (biases excluded, classifier included). ``snip``, ``grad_norm``,
``plain`` and ``fisher`` read one shared cross-entropy forward/backward per candidate, and ``grasp``
reuses its gradient (see ``studentnas/scoring/passes.py``).

Example:
    >>> import torch
    >>> from studentnas import get_space
    >>> from studentnas.core.proxy import ProxyContext
    >>> space = get_space("nb201", C=4, N=1)
    >>> cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
    >>> net = space.build(space.from_string(cell))
    >>> ctx = ProxyContext(torch.randn(8, 3, 8, 8), torch.arange(8) % 10, 10).for_candidate(None)
    >>> [p.score(net, ctx) > 0 for p in (SnipProxy(), GradNormProxy(), FisherProxy())]  # one shared backward
    [True, True, True]
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from studentnas.core.proxy import Proxy, ProxyContext, signed_log
from studentnas.core.registry import PROXIES
from studentnas.scoring import passes, solo_passes
from studentnas.scoring.pairs import Pair, live_and_dead_pair


def _gradients(student: nn.Module, ctx: ProxyContext) -> passes.GradientPass:
    return passes.shared(ctx, "gradient", student, lambda: passes.gradient_pass(student, ctx))


@PROXIES.register()
class SynflowProxy(Proxy):
    """SynFlow: sum over conv/linear weights of |theta * dR/dtheta|, R = sum of the outputs of the
    network with |weights|, no normalisation layers, float64, on one all-ones input; then NASLib's
    log transform.

    Data- and label-free. Runs on a deep copy, so the student is untouched. Sign: none, larger flow is
    better; the value is NASLib's log transform of the sum.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
        >>> ctx = ProxyContext(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), 1)
        >>> isinstance(SynflowProxy().score(net, ctx), float)
        True
    """

    name = "synflow"
    needs = frozenset()
    sign = "log-transformed as NASLib does (log s for s > 0); larger synaptic flow is better"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        flow = passes.shared(ctx, "synflow", student, lambda: solo_passes.synflow_pass(student, ctx))
        return signed_log(float(flow.per_layer.sum()))

    @classmethod
    def example_pair(cls) -> Pair:
        """A 2-4-1 ReLU MLP and the same MLP with half of its first-layer weights pruned to zero:
        pruning removes synaptic paths, so the pruned net has strictly less flow."""
        torch.manual_seed(0)
        full = nn.Sequential(nn.Linear(2, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False))
        pruned = copy.deepcopy(full)
        with torch.no_grad():
            pruned[0].weight[:2].zero_()
        ctx = ProxyContext(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), 1).for_candidate(None)
        return (full, ctx), (pruned, ctx)


@PROXIES.register()
class SnipProxy(Proxy):
    """SNIP: sum over conv/linear weights of |dL/dm| = |theta * g| (a ones-mask m on every weight),
    L the cross-entropy of the calibration batch. Shares the ``gradient`` pass. Sign: none, larger
    saliency is better.

    Example:
        >>> (live, ctx), (dead, _) = SnipProxy.example_pair()
        >>> SnipProxy().score(live, ctx) > 0 == SnipProxy().score(dead, ctx)
        True
    """

    name = "snip"
    needs = frozenset({"data", "labels"})
    sign = "none: a larger total connection saliency |theta * g| is better (NASLib)"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return float(_gradients(student, ctx).snip.sum())

    @classmethod
    def example_pair(cls) -> Pair:
        """A live MLP vs the same MLP with its first layer pruned to zero (every theta*g is 0 there)."""
        return live_and_dead_pair()


@PROXIES.register()
class GradNormProxy(Proxy):
    """grad_norm: the sum over conv/linear layers of ||dL/dW||_F (per-layer norms summed, not one
    global norm). Shares the ``gradient`` pass. Sign: none, larger gradients are better.

    Example:
        >>> (live, ctx), _ = GradNormProxy.example_pair()
        >>> GradNormProxy().score(live, ctx) > 0
        True
    """

    name = "grad_norm"
    needs = frozenset({"data", "labels"})
    sign = "none: larger gradient norms are better (NASLib)"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return float(_gradients(student, ctx).grad_norm.sum())

    @classmethod
    def example_pair(cls) -> Pair:
        """A live MLP vs the same MLP with its first layer pruned to zero (all its gradients are 0)."""
        return live_and_dead_pair()


@PROXIES.register()
class PlainProxy(Proxy):
    """plain: sum over conv/linear weights of theta * g, signed (the first-order estimate of
    L(theta) - L(0)). Shares the ``gradient`` pass. Known to predict accuracy poorly; kept for parity.
    Sign: none, the value is NASLib's and larger is taken as better.

    Example:
        >>> (live, ctx), (dead, _) = PlainProxy.example_pair()
        >>> PlainProxy().score(live, ctx) > 0 == PlainProxy().score(dead, ctx)
        True
    """

    name = "plain"
    needs = frozenset({"data", "labels"})
    sign = "none: sum(theta * g) is reported as NASLib reports it, larger taken as better"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return float(_gradients(student, ctx).plain.sum())

    @classmethod
    def example_pair(cls) -> Pair:
        """For a bias-free ReLU MLP of depth D, Euler's identity gives sum theta*g = D * mean_n (E_p[z_n]
        - z_n[y_n]), which is > 0 when every label is its sample's lowest logit; the same MLP with its
        first layer pruned to zero has all theta*g = 0. The order follows from the definition, not from
        any accuracy argument."""
        return live_and_dead_pair(wrong_labels=True)


@PROXIES.register()
class FisherProxy(Proxy):
    """Fisher: at every conv/linear output a with delta = dL/da, per channel
    Delta_c = 1/2 mean_n (sum_spatial a*delta)^2, each channel counted C_in*k_h*k_w times (Samsung/NASLib
    broadcast Delta_c over the channel's weight slice before summing: METHODS.md parity detail).
    Train mode; shares the ``gradient`` pass. Sign: none, more Fisher information is better.

    Example:
        >>> (live, ctx), (dead, _) = FisherProxy.example_pair()
        >>> FisherProxy().score(live, ctx) > 0 == FisherProxy().score(dead, ctx)
        True
    """

    name = "fisher"
    needs = frozenset({"data", "labels"})
    sign = "none: larger Fisher information of the activations is better (NASLib)"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return float(_gradients(student, ctx).fisher.sum())

    @classmethod
    def example_pair(cls) -> Pair:
        """A live MLP vs the same MLP with its first layer pruned to zero: every layer output a of the
        pruned net is 0, so every a*delta and the whole score are 0."""
        return live_and_dead_pair()


@PROXIES.register()
class GraspProxy(Proxy):
    """GraSP (T=1, one iteration, NASLib): g0 = dL/dtheta, Hg0 by double backpropagation of
    z = sum g0 * g(theta); score = sum over conv/linear weights of -theta * Hg0, NASLib's value, where
    GraSP's own criterion theta * Hg0 is negated. g0 comes from the shared ``gradient`` pass, so a
    suite with snip pays one forward + double backward more, not two passes.

    Example:
        >>> (right, ctx), (zero, ctx0) = GraspProxy.example_pair()
        >>> GraspProxy().score(right, ctx) > 0 == GraspProxy().score(zero, ctx0)
        True
    """

    name = "grasp"
    needs = frozenset({"data", "labels"})
    sign = "GraSP's theta*Hg is negated (score = sum -theta*Hg0, as NASLib reports it), so higher is better"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        grasp = passes.shared(ctx, "grasp", student, lambda: passes.grasp_pass(student, ctx))
        return float(grasp.per_layer.sum())

    @classmethod
    def example_pair(cls) -> Pair:
        """A bias-free linear softmax layer z = Wx on one sample whose label has the higher of two logits,
        vs the same layer with W = 0. In closed form -theta^T H g0 = -||x||^2 sum_k p_k (z_k - E_p z)
        (p_k - y_k); with two classes and y = argmax z every term is negative, so the score is > 0, and
        W = 0 scores exactly 0."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            right = nn.Linear(3, 2, bias=False)
            x = torch.randn(1, 3)
        zero = copy.deepcopy(right)
        with torch.no_grad():
            zero.weight.zero_()
            label = right(x).argmax(dim=1)
        ctx = ProxyContext(x, label, 2).for_candidate(None)
        return (right, ctx), (zero, ctx)


@PROXIES.register()
class L2NormProxy(Proxy):
    """l2_norm: the sum over conv/linear layers of ||W||_F. Data-free, no pass, reads the student itself.
    Sign: none, larger norms score higher (NASLib).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
        >>> L2NormProxy().score(net, ProxyContext(torch.zeros(1, 2), torch.zeros(1), 2))
        5.0
    """

    name = "l2_norm"
    needs = frozenset()
    sign = "none: larger weight norms score higher (NASLib)"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        with torch.no_grad():
            return float(sum(float(m.weight.norm()) for m in passes.weighted_layers(student)))

    @classmethod
    def example_pair(cls) -> Pair:
        """An MLP vs the same MLP with its first layer zeroed: a strictly smaller Frobenius norm."""
        return live_and_dead_pair()
