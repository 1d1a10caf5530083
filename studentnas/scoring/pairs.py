"""Known-better network pairs for the proxies' order contract (``Proxy.example_pair``), shared by the plugins.

A pair is ``((better, ctx), (worse, ctx))``: two networks, each with the candidate view it is scored on,
where the first must score higher (:func:`studentnas.testing.check_proxy_order` checks it). Plugins
never import each other, so the pairs several proxy files use live here:

* :func:`live_and_dead_pair`: a small MLP and the same MLP with its first layer zeroed, for the
  gradient-saliency proxies (the dead copy scores exactly 0);
* :func:`teacher_copy_pair`: an exact copy of the teacher and a differently initialised network, for
  the teacher-student distances (the copy is at distance 0, the maximum).

Example:
    >>> (live, ctx), (dead, _) = live_and_dead_pair()
    >>> bool(live(ctx.images).abs().sum() > 0), bool(dead(ctx.images).abs().sum() == 0)
    (True, True)
    >>> (copy_, same), (other, _) = teacher_copy_pair()
    >>> all(p.equal(q) for p, q in zip(copy_.parameters(), same.teacher.parameters()))
    True
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from studentnas.core.proxy import ProxyContext
from studentnas.scoring.teacher_student import example_context, tiny_net

#: ``((better, its context), (worse, its context))``: what ``Proxy.example_pair`` returns.
Pair = tuple[tuple[nn.Module, ProxyContext], tuple[nn.Module, ProxyContext]]


def live_and_dead_pair(wrong_labels: bool = False) -> Pair:
    """A bias-free 4-8-3 ReLU MLP and the same MLP with its first layer pruned to zero, on 4 samples.

    The dead copy passes no signal: its hidden units are 0, so every weight gradient, every weight
    times gradient and every layer output is exactly 0, and every gradient-saliency proxy gives it 0,
    while the live net has non-zero gradients. ``wrong_labels`` labels each sample with its lowest
    logit (used by ``plain``, whose sign depends on the labels).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        live = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
        x = torch.randn(4, 4)
    dead = copy.deepcopy(live)
    with torch.no_grad():
        dead[0].weight.zero_()
        labels = live(x).argmin(dim=1) if wrong_labels else torch.tensor([0, 1, 2, 0])
    ctx = ProxyContext(x, labels, 3).for_candidate(None)
    return (live, ctx), (dead, ctx)


def teacher_copy_pair() -> Pair:
    """A student that IS a copy of the teacher (distance 0, the maximum) and a differently initialised one."""
    teacher = tiny_net(0)
    ctx_same, ctx_other = example_context(teacher)
    return (copy.deepcopy(teacher), ctx_same), (tiny_net(1), ctx_other)
