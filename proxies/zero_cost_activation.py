"""Activation-pattern zero-cost proxies (METHODS.md §2): ``nwot`` (NASWOT), ``jacov`` (Jacobian
covariance) and ``epe_nas``.

All three read one shared pass per candidate (``studentnas/scoring/passes.py``, ``jacobian``): a forward with
the input requiring grad, whose ReLU codes are folded into the NASWOT kernel as they appear; when
jacov or epe_nas first needs J, one backward of the summed outputs to the input,
J_n = d(sum outputs)/dx_n, reduced at once to the N x N Pearson correlation of the rows of J. So
``nwot`` alone costs one forward, and the three together one forward and one input-only backward.

Degenerate networks: when some J_n is constant (e.g. an NB201 cell with no path from input to
output), its correlations are undefined and ``jacov``/``epe_nas`` return nan, which the evaluator
records as a failure (NASLib maps it to -1e8); a singular NASWOT kernel gives ``nwot`` = -inf.

Example:
    >>> import torch
    >>> from studentnas import get_space
    >>> from studentnas.core.proxy import ProxyContext
    >>> space = get_space("nb201", C=4, N=1)
    >>> cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
    >>> net = space.build(space.from_string(cell))
    >>> ctx = ProxyContext(torch.randn(8, 3, 8, 8), torch.arange(8) % 10, 10).for_candidate(None)
    >>> s = NwotProxy().score(net, ctx)   # the forward that jacov below reuses
    >>> 0 < s < 8 * 20   # log|det K|, K is 8x8 with entries up to the ReLU unit count
    True
    >>> JacovProxy().score(net, ctx) < 0
    True
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.registry import PROXIES
from studentnas.scoring import passes
from studentnas.scoring.pairs import Pair

EIGEN_SHIFT = 1e-5  # k of jacov and epe_nas


JACOBIAN_READERS = frozenset({"jacov", "epe_nas"})  # proxies that read the input Jacobian of the shared pass


def _jacobian(student: nn.Module, ctx: ProxyContext) -> passes.JacobianPass:
    return passes.shared(ctx, "jacobian", student, lambda: passes.jacobian_pass(student, ctx))


def _identity_relu() -> nn.Sequential:
    """x -> ReLU(I x) on 4 features: the input Jacobian of sample n is its ReLU code 1[x_n > 0]."""
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(4))
    return net


# codes (1,1,0,0) and (1,0,1,0) are uncorrelated; (1,1,0,0) and (1,1,1,0) have correlation 1/sqrt(3)
_UNCORRELATED = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0]])
_CORRELATED = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, 1.0, 1.0, -1.0]])


def jacov_score(corr: torch.Tensor) -> float:
    """-sum_i [log(lambda_i + k) + 1/(lambda_i + k)] over the eigenvalues of a correlation matrix
    (symmetric solver, k = 1e-5); nan when the matrix has undefined entries.

    Example:
        >>> round(jacov_score(torch.eye(2, dtype=torch.float64)), 4)   # two uncorrelated rows
        -2.0
    """
    if not bool(torch.isfinite(corr).all()):
        return math.nan
    lam = torch.linalg.eigvalsh(corr) + EIGEN_SHIFT
    return float(-(torch.log(lam) + 1.0 / lam).sum())


def epe_score(corr: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """EPE-NAS from the batch's Jacobian correlation and labels (NASLib's ``eval_score_perclass``).

    Per class c (rows of that label, in batch order): s_c = sum log(|corr(J_c)| + k), divided by the
    row count when K > 100. Score = sum_c |s_c| for K <= 100, else sum_c sum_c' |s_c - s_c'| / (number
    of classes seen). A one-sample class has corr = [[1]] and adds log(1 + k) when K <= 100; the
    reference fails on it and skips it when K > 100, and so do we.

    Example:
        >>> corr = torch.eye(2, dtype=torch.float64)
        >>> round(epe_score(corr, torch.tensor([0, 0]), 10), 3)    # 2 log(1+k) + 2 log(k)
        23.026
    """
    scores = []
    for c in torch.unique(labels).tolist():
        rows = (labels == c).nonzero().flatten()
        if num_classes > 100 and len(rows) < 2:
            continue
        s = float(torch.log(corr[rows][:, rows].abs() + EIGEN_SHIFT).sum())
        scores.append(s / len(rows) if num_classes > 100 else s)
    if num_classes <= 100:
        return float(sum(abs(s) for s in scores))
    if not scores:
        return 0.0
    return sum(abs(a - b) for a in scores for b in scores) / len(scores)


@PROXIES.register()
class NwotProxy(Proxy):
    """NASWOT (v2): the log-determinant of the kernel K of ReLU activation codes over the batch.

    For every ``nn.ReLU``/``nn.ReLU6`` call with binary code c = 1[u > 0] (N x units),
    K += c c^T + (1 - c)(1 - c)^T, i.e. units minus the Hamming distance; score = log|det K|.
    BatchNorm in train mode (batch statistics) on a copy; shares the ``jacobian`` pass with jacov and
    epe_nas (the same forward; the input-gradient backward is what those two add, and only they pay).
    When the context's suite has no jacov/epe_nas (or is unknown), the forward runs under no_grad.
    Sign: none, more distinct activation patterns score higher.
    """

    name = "nwot"
    needs = frozenset({"data"})
    sign = "none: a larger log-determinant (more distinct activation patterns) is better"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        if JACOBIAN_READERS.isdisjoint(ctx.suite):  # nobody needs the input Jacobian: forward only
            kernel = passes.shared(ctx, "relu_kernel", student,
                                    lambda: passes.jacobian_pass(student, ctx, with_jacobian=False)).kernel
        else:
            kernel = _jacobian(student, ctx).kernel
        return float(torch.linalg.slogdet(kernel)[1])

    @classmethod
    def example_pair(cls) -> Pair:
        """Identity layer + ReLU on inputs (1,1,1,1) and (-1,-1,-1,-1): codes 1111 vs 0000 (Hamming 4),
        K = [[4,0],[0,4]], det 16. The same layer on (1,1,1,1) and (1,1,1,-1): codes 1111 vs 1110,
        K = [[4,3],[3,4]], det 7. More distinct activation patterns score higher."""
        net = _identity_relu()
        far = ProxyContext(torch.tensor([[1.0] * 4, [-1.0] * 4]), torch.zeros(2, dtype=torch.long), 2)
        near = ProxyContext(torch.tensor([[1.0] * 4, [1.0, 1.0, 1.0, -1.0]]), torch.zeros(2, dtype=torch.long), 2)
        return (net, far.for_candidate(None)), (copy.deepcopy(net), near.for_candidate(None))


@PROXIES.register()
class JacovProxy(Proxy):
    """Jacobian covariance (NASLib's ``jacob_cov``, the NASWOT-v1 score): with J_n = d(sum outputs)/dx_n
    and Sigma the N x N Pearson correlation of the rows of J, score = -sum_i [log(lambda_i + k) +
    1/(lambda_i + k)], k = 1e-5, over the eigenvalues of Sigma (a symmetric solver, **[our choice]**;
    the reference's general solver gives the same real eigenvalues up to rounding). Each term is
    smallest at lambda = 1, so uncorrelated Jacobians score highest. Shares the ``jacobian`` pass.

    Example:
        >>> (far, ctx_far), (near, ctx_near) = JacovProxy.example_pair()
        >>> round(JacovProxy().score(far, ctx_far), 4)
        -2.0
    """

    name = "jacov"
    needs = frozenset({"data"})
    sign = "the eigenvalue penalty sum[log(lambda+k) + 1/(lambda+k)] is negated: less correlated Jacobians score higher"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        return jacov_score(_jacobian(student, ctx).corr)

    @classmethod
    def example_pair(cls) -> Pair:
        """x -> ReLU(x): J_n is the ReLU code of x_n. Codes (1,1,0,0) and (1,0,1,0) are uncorrelated
        (eigenvalues 1, 1: score -2.0), codes (1,1,0,0) and (1,1,1,0) have correlation 1/sqrt(3)
        (eigenvalues 1 +- 0.577: score -2.59)."""
        labels = torch.zeros(2, dtype=torch.long)
        net = _identity_relu()
        return ((net, ProxyContext(_UNCORRELATED, labels, 2).for_candidate(None)),
                (copy.deepcopy(net), ProxyContext(_CORRELATED, labels, 2).for_candidate(None)))


@PROXIES.register()
class EpeNasProxy(Proxy):
    """EPE-NAS: per class, the log of the absolute within-class correlation of the input Jacobians (see
    :func:`epe_score`; K is ``ctx.num_classes``). Shares the ``jacobian`` pass. Needs several samples
    per class: use a batch of at least 2K images (a stratified calibration batch). Sign: none, NASLib's
    value; it grows as the within-class Jacobians decorrelate (log|corr| -> log k).

    Example:
        >>> (far, ctx_far), (near, ctx_near) = EpeNasProxy.example_pair()
        >>> EpeNasProxy().score(far, ctx_far) > EpeNasProxy().score(near, ctx_near)
        True
    """

    name = "epe_nas"
    needs = frozenset({"data", "labels"})
    sign = "none: NASLib's sum of |per-class log-correlation sums| is reported as is; higher is better"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        corr = _jacobian(student, ctx).corr
        if not bool(torch.isfinite(corr).all()):
            return math.nan
        return epe_score(corr, ctx.labels.cpu().long(), ctx.num_classes)

    @classmethod
    def example_pair(cls) -> Pair:
        """x -> ReLU(x) with both samples in one class: uncorrelated codes (1,1,0,0), (1,0,1,0) give
        s = 2 log(1+k) + 2 log(k), |s| = 23.0; codes (1,1,0,0), (1,1,1,0) (correlation 1/sqrt(3)) give
        |s| = 2 |log(0.577 + k)| + ~0 = 1.10. Within-class decorrelation scores higher."""
        labels = torch.zeros(2, dtype=torch.long)
        net = _identity_relu()
        return ((net, ProxyContext(_UNCORRELATED, labels, 2).for_candidate(None)),
                (copy.deepcopy(net), ProxyContext(_CORRELATED, labels, 2).for_candidate(None)))
