"""Zero-cost proxies on networks small enough to score by hand, pass sharing, and memory."""

from __future__ import annotations

import gc
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from studentnas import get_proxy, get_space
from studentnas.core.errors import BadInputError
from studentnas.core.proxy import ProxyContext
from studentnas.proxies.zero_cost_activation import _identity_relu
from studentnas.scoring import passes as _passes

K = 1e-5  # the eigenvalue shift of jacov and epe_nas
SUITE = ("synflow", "snip", "grasp", "fisher", "grad_norm", "plain", "l2_norm", "jacov", "nwot", "epe_nas",
         "zen", "zico", "meco")


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: a second intra-op thread only adds barrier waits (badly so on a busy box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def score(name: str, net: nn.Module, ctx: ProxyContext, **params: object) -> float:
    return get_proxy(name, **params).score(net, ctx)


def two_layer() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        net[2].weight.copy_(torch.tensor([[0.5, 0.25], [-1.0, 0.0]]))
    return net


def one_sample_ctx() -> ProxyContext:
    return ProxyContext(torch.tensor([[1.0, 2.0]]), torch.tensor([1]), 2).for_candidate(None)


# ----------------------------------------------------------------------------------------------- by hand


def test_gradient_proxies_by_hand() -> None:
    # x = (1, 2): h_pre = W1 x = (-1, 4), h = (0, 4), z = W2 h = (1, 0); label 1, so with
    # s = e/(e+1): p = (s, 1-s) and delta = dL/dz = p - e_1 = (s, -s).
    # g2 = delta h^T = [[0, 4s], [0, -4s]];  W2^T delta = (1.5s, 0.25s), masked by h_pre > 0 -> (0, 0.25s),
    # g1 = (0, 0.25s)^T x^T = [[0, 0], [0.25s, 0.5s]].
    # theta*g: layer 1 [[0, 0], [0.5s, 0.5s]], layer 2 [[0, s], [0, 0]]  -> snip = plain = 2s.
    # ||g1|| = s sqrt(0.3125), ||g2|| = s sqrt(32).
    # fisher: layer 1 a = (-1, 4), dL/da = (0, 0.25s): channel 1 gives (4 * 0.25s)^2 / 2 = s^2/2, times fan-in 2;
    #         layer 2 a = (1, 0), dL/da = (s, -s): channel 0 gives s^2/2, times fan-in 2  -> fisher = 2 s^2.
    s = math.e / (math.e + 1)
    net, ctx = two_layer(), one_sample_ctx()
    assert math.isclose(score("snip", net, ctx), 2 * s, rel_tol=1e-6)
    assert math.isclose(score("plain", net, ctx), 2 * s, rel_tol=1e-6)
    assert math.isclose(score("grad_norm", net, ctx), s * (math.sqrt(0.3125) + math.sqrt(32)), rel_tol=1e-6)
    assert math.isclose(score("fisher", net, ctx), 2 * s * s, rel_tol=1e-6)
    assert math.isclose(score("l2_norm", net, ctx), math.sqrt(7) + math.sqrt(1.3125), rel_tol=1e-6)
    assert net[0].weight[0, 1].item() == -1.0 and net[0].weight.grad is None, "the student must stay untouched"


def test_fisher_broadcasts_each_channel_over_its_fan_in() -> None:
    # Delta_c = 1/2 mean_n (sum_hw a*delta)^2 per conv channel, counted C_in*k*k = 2*3*3 = 18 times.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
    x, y = torch.randn(5, 2, 6, 6), torch.tensor([0, 1, 2, 3, 0])
    a = net[0](x)
    z = net[3](net[2](net[1](a)))
    a.retain_grad()
    z.retain_grad()
    nn.functional.cross_entropy(z, y).backward()
    (a, da), (z, dz) = (a.detach(), a.grad), (z.detach(), z.grad)
    conv = 0.5 * (a * da).sum(dim=(2, 3)).pow(2).mean(0).sum() * 18
    head = 0.5 * (z * dz).pow(2).mean(0).sum() * 3
    net.zero_grad(set_to_none=True)
    ctx = ProxyContext(x, y, 4).for_candidate(None)
    assert math.isclose(score("fisher", net, ctx), float(conv + head), rel_tol=1e-5)


def test_grasp_by_hand() -> None:
    # One bias-free linear layer z = Wx, one sample: -theta^T H g0 = -||x||^2 sum_k p_k (z_k - E_p z)(p_k - y_k).
    # W = [[1, 0], [0, 0]], x = (1, 2), label 0: z = (1, 0), p = (s, 1-s), E_p z = s; the two terms are
    # s(1-s)(s-1) and (1-s)(-s)(1-s), both -s(1-s)^2, so the score is 5 * 2 s (1-s)^2.
    s = math.e / (math.e + 1)
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    ctx = ProxyContext(torch.tensor([[1.0, 2.0]]), torch.tensor([0]), 2).for_candidate(None)
    assert math.isclose(score("grasp", net, ctx), 10 * s * (1 - s) ** 2, rel_tol=1e-5)


def test_grasp_matches_an_explicit_hessian_with_batchnorm() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2, bias=False))
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
    w1, w2 = net[0].weight.detach(), net[3].weight.detach()
    bn = net[1]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        a, b = flat[:12].view(4, 3), flat[12:].view(2, 4)
        h = nn.functional.batch_norm(x @ a.T, None, None, bn.weight.detach().double(), bn.bias.detach().double(),
                                     training=True)
        return nn.functional.cross_entropy(torch.relu(h) @ b.T, y)

    theta = torch.cat([w1.flatten(), w2.flatten()]).double().requires_grad_(True)
    x = x.double()
    (g0,) = torch.autograd.grad(loss(theta), theta)
    hessian = torch.autograd.functional.hessian(loss, theta.detach())
    expected = float(-(theta.detach() * (hessian @ g0)).sum())
    ctx = ProxyContext(x.float(), y, 2).for_candidate(None)
    assert math.isclose(score("grasp", net, ctx), expected, rel_tol=1e-3, abs_tol=1e-7)


def test_jacov_by_hand() -> None:
    # x -> ReLU(x): the input Jacobian of sample n is its ReLU code. Codes (1,1,0,0), (1,0,1,0): correlation 0,
    # eigenvalues (1, 1). Codes (1,1,0,0), (1,1,1,0): correlation 0.5 / sqrt(0.75) = 1/sqrt(3), eigenvalues 1 +- r.
    def expected(eigenvalues: list[float]) -> float:
        return -sum(math.log(v + K) + 1 / (v + K) for v in eigenvalues)

    labels = torch.zeros(2, dtype=torch.long)
    far = ProxyContext(torch.tensor([[1.0, 1, -1, -1], [1, -1, 1, -1]]), labels, 2).for_candidate(None)
    near = ProxyContext(torch.tensor([[1.0, 1, -1, -1], [1, 1, 1, -1]]), labels, 2).for_candidate(None)
    r = 1 / math.sqrt(3)
    assert math.isclose(score("jacov", _identity_relu(), far), expected([1, 1]), rel_tol=1e-9)
    assert math.isclose(score("jacov", _identity_relu(), near), expected([1 - r, 1 + r]), rel_tol=1e-9)


def test_jacov_of_a_network_without_input_dependence_is_nan() -> None:
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.zero_()
    ctx = ProxyContext(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), 2).for_candidate(None)
    assert math.isnan(score("jacov", net, ctx)) and math.isnan(score("epe_nas", net, ctx))


def test_epe_nas_by_hand_for_few_and_many_classes() -> None:
    # Class 0: codes (1,1,0,0), (1,0,1,0), correlation 0 -> s0 = 2 log(1+k) + 2 log(k).
    # Class 1: codes (1,1,0,0), (1,1,1,0), correlation r = 1/sqrt(3) -> s1 = 2 log(1+k) + 2 log(r+k).
    # Class 2: one sample (code (0,0,0,1)) -> corr [[1]] -> log(1+k) when K <= 100, skipped when K > 100.
    x = torch.tensor([[1.0, 1, -1, -1], [1, -1, 1, -1], [1, 1, -1, -1], [1, 1, 1, -1], [-1, -1, -1, 1]])
    y = torch.tensor([0, 0, 1, 1, 2])
    r = 1 / math.sqrt(3)
    s0 = 2 * math.log(1 + K) + 2 * math.log(K)
    s1 = 2 * math.log(1 + K) + 2 * math.log(r + K)
    few = score("epe_nas", _identity_relu(), ProxyContext(x, y, 10).for_candidate(None))
    assert math.isclose(few, abs(s0) + abs(s1) + math.log(1 + K), rel_tol=1e-9)
    # K > 100: s_c divided by its row count; sum over ordered pairs |s_c - s_c'| / number of classes kept (2).
    many = score("epe_nas", _identity_relu(), ProxyContext(x, y, 101).for_candidate(None))
    assert math.isclose(many, 2 * abs(s0 / 2 - s1 / 2) / 2, rel_tol=1e-9)


def test_meco_is_zero_for_perfectly_correlated_channels_and_one_minus_r_for_two_channels() -> None:
    ctx1 = ProxyContext(torch.zeros(4, 1, 5, 5), torch.zeros(4, dtype=torch.long), 2, seed=3).for_candidate(None)
    copies = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))  # channel 2 = 2 x channel 1: corr = ones, min eig 0
    with torch.no_grad():
        copies[0].weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
    assert abs(score("meco", copies, ctx1)) < 1e-6
    # identity 1x1 conv on two noise channels: corr [[1, r], [r, 1]], eigenvalues 1 -+ |r|.
    ctx2 = ProxyContext(torch.zeros(4, 2, 5, 5), torch.zeros(4, dtype=torch.long), 2, seed=3).for_candidate(None)
    identity = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False))
    with torch.no_grad():
        identity[0].weight.copy_(torch.eye(2).view(2, 2, 1, 1))
    noise = torch.randn(4, 2, 5, 5, generator=torch.Generator().manual_seed(3))
    r = np.corrcoef(noise.transpose(0, 1).reshape(2, -1).numpy())[0, 1]
    assert math.isclose(score("meco", identity, ctx2), 1 - abs(r), rel_tol=1e-5)


class _Features(nn.Module):
    """forward_features = ``body``: the pre-GAP map is known in closed form."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))


def test_zen_by_hand() -> None:
    # The generator (seed = ctx.seed) draws the weights (none here), then x, then eps.
    ctx = ProxyContext(torch.zeros(6, 2, 3, 3), torch.zeros(6, dtype=torch.long), 2, seed=5).for_candidate(None)
    gen = torch.Generator().manual_seed(5)
    x, eps = torch.randn(6, 2, 3, 3, generator=gen), torch.randn(6, 2, 3, 3, generator=gen)
    # identity map, no BN: Delta = mean_n sum |gamma eps|.
    delta = float((0.01 * eps).abs().flatten(1).sum(1).mean())
    assert math.isclose(score("zen", _Features(nn.Identity()), ctx), math.log(delta), rel_tol=1e-5)

    # one BN (gamma 1, beta 0 after re-init, batch statistics): Delta of the normalised maps, and the BN term
    # log sqrt(mean_c running_var), running_var = 0.9 (0.9 * 1 + 0.1 v1) + 0.1 v2 (unbiased batch variances).
    def normalise(t: torch.Tensor) -> torch.Tensor:
        mean, var = t.mean(dim=(0, 2, 3), keepdim=True), t.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return (t - mean) / torch.sqrt(var + 1e-5)

    mixed = x + 0.01 * eps
    delta = float((normalise(x) - normalise(mixed)).abs().flatten(1).sum(1).mean())
    v1, v2 = x.var(dim=(0, 2, 3)), mixed.var(dim=(0, 2, 3))
    running = 0.9 * (0.9 + 0.1 * v1) + 0.1 * v2
    net = _Features(nn.BatchNorm2d(2))
    expected = math.log(delta) + math.log(math.sqrt(float(running.mean())))
    assert math.isclose(score("zen", net, ctx), expected, rel_tol=1e-4)
    batch = math.log(delta) + math.log(math.sqrt(float(v1.mean())))
    assert math.isclose(score("zen", net, ctx, bn_variance="batch"), batch, rel_tol=1e-4)


def test_zico_by_hand_with_and_without_zeroing() -> None:
    # Two one-sample mini-batches through z = Wx: g_b = (p_b - e_yb) x_b^T. Per weight, mean|g| / std(g) is
    # (|g1| + |g2|) / |g1 - g2| (population std over two values is |g1 - g2| / 2); cumulative gradients record
    # g1 and g1 + g2, giving (|g1| + |g1 + g2|) / |g2|. The score is log of the sum (one layer).
    w = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(w)
    x, y = torch.tensor([[1.0, 2.0], [-1.0, 0.5]]), torch.tensor([0, 1])
    g = [torch.outer(torch.softmax(w @ x[b], 0) - nn.functional.one_hot(y[b], 2), x[b]).double() for b in (0, 1)]
    ctx = ProxyContext(x, y, 2).for_candidate(None)
    zeroed = float(((g[0].abs() + g[1].abs()) / (g[0] - g[1]).abs()).sum())
    assert math.isclose(score("zico", net, ctx), math.log(zeroed), rel_tol=1e-5)
    cumulative = float(((g[0].abs() + (g[0] + g[1]).abs()) / g[1].abs()).sum())
    assert math.isclose(score("zico", net, ctx, cumulative=True), math.log(cumulative), rel_tol=1e-5)


# ----------------------------------------------------------------------------------------------- sharing


def _counted(net: nn.Module) -> list[bool]:
    """A forward hook on the student that deep copies inherit: records grad mode of every forward."""
    calls: list[bool] = []
    net.register_forward_hook(lambda _m, _i, out: calls.append(out.requires_grad))
    return calls


def _small_nb201() -> tuple[nn.Module, ProxyContext]:
    space = get_space("nb201", C=8, N=1)
    torch.manual_seed(0)
    arch = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    net = space.build(arch, num_classes=4).to(memory_format=torch.channels_last)
    ctx = ProxyContext(torch.randn(8, 3, 16, 16), torch.arange(8) % 4, 4)
    return net, ctx


def test_gradient_suite_runs_one_cross_entropy_pass_per_candidate() -> None:
    net, ctx = _small_nb201()
    calls = _counted(net)
    view = ctx.for_candidate(None)
    for name in ("snip", "grad_norm", "plain", "fisher"):
        score(name, net, view)
    assert calls == [True], f"expected one forward with grad, got {calls}"
    score("grasp", net, view)  # reuses g0: one more forward (with a double backward), not two
    assert calls == [True, True]
    score("snip", net, ctx.for_candidate(None))  # a new candidate view pays again
    assert len(calls) == 3


def test_activation_suite_runs_one_forward_per_candidate() -> None:
    net, ctx = _small_nb201()
    calls = _counted(net)
    view = replace(ctx, suite=("nwot", "jacov", "epe_nas")).for_candidate(None)  # as the evaluator sets it
    nwot = score("nwot", net, view)
    jacobian = _passes.shared(view, "jacobian", net, lambda: pytest.fail("the jacobian pass must be cached"))
    assert jacobian._corr is None, "nwot must not run the input-gradient backward before jacov needs it"
    values = [nwot] + [score(name, net, view) for name in ("jacov", "epe_nas")]
    assert len(calls) == 1 and all(math.isfinite(v) for v in values)


def test_nwot_without_jacobian_readers_builds_no_autograd_graph() -> None:
    net, ctx = _small_nb201()
    alone = ctx.for_candidate(None)  # suite unknown or without jacov/epe_nas: forward only, no graph
    value = score("nwot", net, alone)
    kernel_pass = _passes.shared(alone, "relu_kernel", net, lambda: pytest.fail("the pass must be cached"))
    assert kernel_pass._pending is not None and not kernel_pass._pending[0].requires_grad
    shared_view = replace(ctx, suite=("nwot", "jacov")).for_candidate(None)
    assert score("nwot", net, shared_view) == value, "both paths give the same kernel"


def test_a_plain_context_reused_for_two_students_never_mixes_their_passes() -> None:
    net, ctx = _small_nb201()
    other = _small_nb201()[0]
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.5)
    assert score("snip", net, ctx) != score("snip", other, ctx)
    before = score("grad_norm", net, ctx)
    with torch.no_grad():
        net.fc.weight.mul_(3.0)  # changed in place: the version counter moves, the pass is recomputed
    assert score("grad_norm", net, ctx) != before


def test_labels_outside_the_heads_range_give_an_error_with_the_fix() -> None:
    ctx = ProxyContext(torch.randn(2, 2), torch.tensor([0, 5]), 6).for_candidate(None)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\).*num_classes=6"):
        score("snip", two_layer(), ctx)


def test_bad_proxy_parameters_name_the_rule_and_the_fix() -> None:
    with pytest.raises(BadInputError, match="must be one of running, batch"):
        get_proxy("zen", bn_variance="mean")
    with pytest.raises(BadInputError, match="integer >= 2"):
        get_proxy("zico", batches=1)


# ----------------------------------------------------------------------------------------------- memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_scoring_200_nb201_cells_does_not_grow_memory() -> None:
    """20 small NB201 cells cycled 10 times through the whole suite, one view per candidate as the
    evaluator does: resident memory after the 10th cycle stays within a few MB of the 2nd (the 1st
    warms the allocator up). scripts/check_proxy_memory.py runs 2,000 distinct full-size cells."""
    space = get_space("nb201", C=8, N=1)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(20)]
    proxies = [get_proxy(name) for name in SUITE]
    images = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ctx = replace(ProxyContext(images, torch.arange(8) % 4, 4), suite=SUITE)  # as LocalEvaluator sets it
    rss = []
    for _ in range(10):
        for i, arch in enumerate(archs):
            torch.manual_seed(i)
            net = space.build(arch, num_classes=4).to(memory_format=torch.channels_last)
            view = ctx.for_candidate(space.cost(arch, (3, 8, 8), num_classes=4))
            for proxy in proxies:
                proxy.score(net, view)
        gc.collect()
        rss.append(_rss_mb())
    assert rss[-1] - rss[1] < 8.0, f"resident memory grew from {rss[1]:.1f} to {rss[-1]:.1f} MB: {rss}"


def test_fisher_survives_an_inplace_activation_right_after_a_linear_layer() -> None:
    # x -> W1 -> ReLU(inplace) -> W2: the first layer's output is overwritten before the backward reads it.
    net, ctx = two_layer(), one_sample_ctx()
    net[1] = nn.ReLU(inplace=True)
    s = math.e / (math.e + 1)
    assert math.isclose(score("fisher", net, ctx), 2 * s * s, rel_tol=1e-6)  # as in test_gradient_proxies_by_hand
