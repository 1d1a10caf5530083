"""Zero-cost proxies with a pass of their own (METHODS.md §2, MeCo NeurIPS 2023): ``zen`` (Zen-NAS),
``zico`` (ZiCo) and ``meco`` (MeCo).

None of them can share the cross-entropy or Jacobian passes: ``zen`` re-initialises a copy and runs it
twice on Gaussian noise, ``zico`` needs one backward per mini-batch, ``meco`` one forward on noise.
The passes live in ``studentnas/scoring/solo_passes.py`` (shared through ``studentnas/scoring/passes.py``).

Example:
    >>> import torch
    >>> from studentnas import get_space
    >>> from studentnas.core.proxy import ProxyContext
    >>> space = get_space("nb201", C=4, N=1)
    >>> cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
    >>> net = space.build(space.from_string(cell))
    >>> ctx = ProxyContext(torch.randn(8, 3, 8, 8), torch.arange(8) % 10, 10).for_candidate(None)
    >>> scores = [p.score(net, ctx) for p in (ZenProxy(), ZicoProxy(), MecoProxy())]
    >>> all(math.isfinite(s) for s in scores)
    True
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.registry import PROXIES
from studentnas.scoring import passes, solo_passes
from studentnas.scoring.pairs import Pair, live_and_dead_pair

BN_VARIANCES = ("running", "batch")


class _TinyConvNet(nn.Module):
    """conv-BN-ReLU x2 (3 -> 8 -> ``width`` channels), global pool and a linear head, with timm's
    ``forward_features``: the example network of ``zen`` and ``meco``."""

    def __init__(self, width: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        )
        self.fc = nn.Linear(width, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x).mean(dim=(2, 3)))


def _image_ctx(n: int = 8, size: int = 8) -> ProxyContext:
    images = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    return ProxyContext(images, torch.arange(n) % 2, 2).for_candidate(None)


@PROXIES.register()
class ZenProxy(Proxy):
    """Zen-NAS: log Delta + sum over BatchNorm2d layers of log sqrt(mean_c var_c), on a copy re-initialised
    with N(0,1) conv/linear weights, zero biases and unit BN scales.

    Delta = mean_n sum_{c,h,w} |f(x) - f(x + gamma*eps)| on the pre-global-pool map f
    (``forward_features``, else the input of the last adaptive pooling layer); x, eps ~ N(0,1) at the
    calibration batch's shape, drawn (after the weights) from a generator seeded with ``ctx.seed``. The
    student's own weights and the data do not matter, only the architecture and the batch shape.
    Sign: none, larger expressivity is better.

    Args:
        gamma: the mixup scale (Zen-NAS: 1e-2).
        bn_variance: ``"running"`` (parity, default): running_var after the two train-mode forwards,
            0.81 + 0.09 var_1 + 0.1 var_2 at momentum 0.1, which compresses the term toward 0;
            ``"batch"`` **[our choice]**: the batch variance of the clean forward, read through hooks.
        repeat: average over this many re-initialisations (the generator runs on; running statistics
            are reset each time).

    Example:
        >>> (wide, ctx), (narrow, _) = ZenProxy.example_pair()
        >>> ZenProxy().score(wide, ctx) > ZenProxy().score(narrow, ctx)
        True
    """

    name = "zen"
    needs = frozenset()
    sign = "none: larger expressivity log Delta (plus the BN scale term) is better"

    def __init__(self, gamma: float = 1e-2, bn_variance: str = "running", repeat: int = 1):
        if bn_variance not in BN_VARIANCES:
            raise BadInputError(f"zen bn_variance {bn_variance!r}: must be one of {', '.join(BN_VARIANCES)}; "
                                "use 'running' for Zen-NAS parity")
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise BadInputError(f"zen repeat {repeat!r}: must be a positive integer, e.g. repeat=1")
        if not (isinstance(gamma, (int, float)) and gamma > 0 and math.isfinite(gamma)):
            raise BadInputError(f"zen gamma {gamma!r}: must be a positive number, e.g. gamma=1e-2")
        self.gamma, self.bn_variance, self.repeat = float(gamma), bn_variance, repeat

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        key = f"zen:{self.gamma}:{self.bn_variance}:{self.repeat}"
        zen = passes.shared(ctx, key, student,
                             lambda: solo_passes.zen_pass(student, ctx, self.gamma, self.bn_variance, self.repeat))
        logs = [math.log(d) if d > 0 else (math.nan if d != d else -math.inf) for d in zen.delta.tolist()]
        return float(sum(lg + b for lg, b in zip(logs, zen.bn_log_scale.tolist())) / len(logs))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "gamma": self.gamma, "bn_variance": self.bn_variance, "repeat": self.repeat}

    def __repr__(self) -> str:
        return f"ZenProxy(gamma={self.gamma}, bn_variance={self.bn_variance!r}, repeat={self.repeat})"

    @classmethod
    def example_pair(cls) -> Pair:
        """The same conv-BN-ReLU x2 network with 32 vs 4 output channels. After re-initialisation every
        channel of the pre-GAP map is BN-normalised, so Delta, a sum over channels, grows about 8x
        (+log 8 = 2.1) with the width, while the BN term (a mean over channels) barely moves."""
        with torch.random.fork_rng(devices=[]):  # zen re-initialises anyway; keep the global RNG untouched
            wide, narrow = _TinyConvNet(32), _TinyConvNet(4)
        return (wide, _image_ctx()), (narrow, _image_ctx())


@PROXIES.register()
class ZicoProxy(Proxy):
    """ZiCo: sum over conv/linear layers of log sum_{std>0} mean|g| / std(g), the mean and (population)
    std of each weight's gradient taken across ``batches`` mini-batches (``ctx.images`` split in order
    into near-equal parts, one CE forward + backward each, train mode); a layer whose gradients never
    vary is skipped. Sign: none, a larger gradient signal-to-noise ratio is better.

    Args:
        batches: number of mini-batches (the paper uses 2).
        cumulative: ``False`` (default, **[our choice]**) zeroes gradients per batch; ``True`` reproduces
            the reference code, which never zeroes them, so batch b records g_1 + ... + g_b.

    Example:
        >>> (live, ctx), (dead, _) = ZicoProxy.example_pair()
        >>> ZicoProxy().score(live, ctx) > 0 == ZicoProxy().score(dead, ctx)
        True
    """

    name = "zico"
    needs = frozenset({"data", "labels"})
    sign = "none: larger gradient signal-to-noise (ZiCo's sum of logs) is better"

    def __init__(self, batches: int = 2, cumulative: bool = False):
        if not isinstance(batches, int) or isinstance(batches, bool) or batches < 2:
            raise BadInputError(f"zico batches {batches!r}: must be an integer >= 2 (a std over one batch "
                                "is 0), e.g. batches=2")
        self.batches, self.cumulative = batches, bool(cumulative)

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        key = f"zico:{self.batches}:{self.cumulative}"
        zico = passes.shared(ctx, key, student,
                              lambda: solo_passes.zico_pass(student, ctx, self.batches, self.cumulative))
        return float(sum(math.log(s) for s in zico.ratio_sum.tolist() if s > 0))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "batches": self.batches, "cumulative": self.cumulative}

    def __repr__(self) -> str:
        return f"ZicoProxy(batches={self.batches}, cumulative={self.cumulative})"

    @classmethod
    def example_pair(cls) -> Pair:
        """A live MLP vs the same MLP with its first layer pruned to zero. With two batches each weight
        whose gradient varies contributes (|g1| + |g2|) / |g1 - g2| >= 1, so every live layer adds
        log(sum) > 0; the pruned net has all gradients 0, every layer is skipped and it scores 0."""
        return live_and_dead_pair()


@PROXIES.register()
class MecoProxy(Proxy):
    """MeCo: the sum over ``nn.Conv2d`` layers of the minimum eigenvalue of the Pearson correlation
    matrix of the layer's output channels, after one train-mode forward of N(0,1) noise of the
    calibration batch's shape (a generator seeded with ``ctx.seed``; data-independent, as the paper).

    **[our choice]** Every (sample, position) of the B x C x H x W output is one observation of the C
    channels, so the matrix is estimated from B*H*W points rather than from one sample's H*W as in the
    paper (more stable, the same quantity in expectation); channels with zero variance are dropped and
    layers left with fewer than 2 channels are skipped. Linear layers are not counted. Sign: none, less
    correlated (less redundant) channels score higher.

    Example:
        >>> (independent, ctx), (duplicated, _) = MecoProxy.example_pair()
        >>> MecoProxy().score(independent, ctx) > MecoProxy().score(duplicated, ctx)
        True
    """

    name = "meco"
    needs = frozenset()
    sign = "none: a larger sum of minimum eigenvalues (less redundant channels) is better"

    def _score(self, student: nn.Module, ctx: ProxyContext) -> float:
        meco = passes.shared(ctx, "meco", student, lambda: solo_passes.meco_pass(student, ctx))
        return float(meco.min_eigenvalues.sum())

    @classmethod
    def example_pair(cls) -> Pair:
        """A 3x3 conv with 4 different random filters vs the same conv with one filter copied to all 4.
        Identical filters give identical channels: a correlation matrix of ones, minimum eigenvalue 0;
        different filters on white noise give a correlation matrix of filter cosines, which is positive
        definite for 4 independent random filters in 27 dimensions."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            independent = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False))
        duplicated = copy.deepcopy(independent)
        with torch.no_grad():
            duplicated[0].weight.copy_(independent[0].weight[:1].expand_as(independent[0].weight))
        return (independent, _image_ctx()), (duplicated, _image_ctx())
