"""Similarities and divergences between teacher and student tensors, in one place.

Training-free proxies (``studentnas.proxies.diswot``, ``studentnas.proxies.kd_zero_cost``) and the
distillation losses (``studentnas.distill.losses``) both call these functions, so a proxy scores a
student with exactly the quantity the matching loss trains it on. Everything is plain torch and
differentiable; nothing here owns parameters (connectors live in the losses).

Notation (METHODS.md): ``rownorm(M)`` divides every row of M by its own L2 norm, floored at 1e-12.

* :func:`batch_gram` / :func:`relation_distance`: DisWOT's relation term and the SP loss (§1.4, §6.7):
  the B x B Gram of per-sample flattened features, row-normalised; distance ``||A_s - A_t||_F^2 / B^2``.
* :func:`channel_correlation` / :func:`ickd_distance`: the inter-channel correlation (ICKD, §6.7):
  per sample the C x C Gram of the C x (spatial) map, row-normalised; distance
  ``sum_b ||M_s,b - M_t,b||_F^2 / (B*C)``. DisWOT's semantic term (§1.3) is this on the K x C
  classifier-weight gradients (the "batch" axis is the class axis, no spatial axis).
* :func:`class_gram_distance`: the channel-free fallback of the semantic term when C_S != C_T.
* :func:`hinton_kd`: ``tau^2 * KL(softmax(z_t/tau) || softmax(z_s/tau))``, batch mean (§6.1).
* :func:`attention_energy` / :func:`attention_distance`: attention transfer (§6.3).

Example:
    >>> import torch
    >>> a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])       # two samples, two features
    >>> batch_gram(a)                                   # A A^T = [[1, 1], [1, 2]], rows / their norms
    tensor([[0.7071, 0.7071],
            [0.4472, 0.8944]])
    >>> float(relation_distance(batch_gram(a), batch_gram(a)))
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12

__all__ = [
    "EPS", "attention_distance", "attention_distance_from_energy", "attention_energy", "batch_gram",
    "channel_correlation", "class_gram_distance", "hinton_kd", "ickd_distance", "orthogonal_projection",
    "relation_distance", "rownorm",
]


def rownorm(m: torch.Tensor) -> torch.Tensor:
    """Every row (last axis) of ``m`` divided by its L2 norm, floored at :data:`EPS`."""
    return F.normalize(m, p=2.0, dim=-1, eps=EPS)


def _check_batch(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name}: student and teacher tensors must share the batch axis, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}; feed both networks the same batch")


def batch_gram(features: torch.Tensor) -> torch.Tensor:
    """``rownorm(A A^T)`` with A the B x D matrix of per-sample flattened ``features`` (any shape B x ...).

    Flattening makes it free of the channel count, the spatial size and the layout (maps or tokens).
    """
    a = features.reshape(features.shape[0], -1)
    return rownorm(a @ a.T)


def relation_distance(gram_s: torch.Tensor, gram_t: torch.Tensor) -> torch.Tensor:
    """``||gram_s - gram_t||_F^2 / B^2`` for two B x B (row-normalised) batch Grams (SP / DisWOT d_rel)."""
    if gram_s.shape != gram_t.shape or gram_s.ndim != 2 or gram_s.shape[0] != gram_s.shape[1]:
        raise ValueError(f"relation_distance: expected two B x B Grams of the same batch, got {tuple(gram_s.shape)} "
                         f"and {tuple(gram_t.shape)}; build both with batch_gram on the same batch")
    return (gram_s - gram_t).pow(2).sum() / gram_s.shape[0] ** 2


def channel_correlation(features: torch.Tensor) -> torch.Tensor:
    """Per sample, ``rownorm(F F^T)`` with F the C x S map (S = product of the spatial axes): B x C x C."""
    f = features.reshape(features.shape[0], features.shape[1], -1)
    return rownorm(f @ f.transpose(1, 2))


def _rank1_ickd_sum(g_s: torch.Tensor, g_t: torch.Tensor) -> torch.Tensor:
    """``sum_b ||rownorm(g_s g_s^T) - rownorm(g_t g_t^T)||_F^2`` for B x C vectors, without any C x C matrix.

    Row i of ``rownorm(g g^T)`` is ``c_i g`` with ``c_i = g_i / max(|g_i| ||g||, EPS)``, so the squared
    distance of class b is ``|g_s|^2 sum c_s^2 + |g_t|^2 sum c_t^2 - 2 <g_s, g_t> sum c_s c_t`` (exact,
    floor included). O(B*C) instead of O(B*C^2): a 1000 x 2048 gradient would need 16 GB otherwise.
    Computed in float64, where the distance of identical inputs cancels to ~1e-16.
    """
    s, t = g_s.double(), g_t.double()
    ns, nt = s.norm(dim=1, keepdim=True), t.norm(dim=1, keepdim=True)
    cs = s / (s.abs() * ns).clamp_min(EPS)
    ct = t / (t.abs() * nt).clamp_min(EPS)
    per_row = ((s * s).sum(1) * (cs * cs).sum(1) + (t * t).sum(1) * (ct * ct).sum(1)
               - 2 * (s * t).sum(1) * (cs * ct).sum(1))
    return per_row.clamp_min(0).sum().to(g_s.dtype)


def ickd_distance(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """ICKD distance ``sum_b ||M_s,b - M_t,b||_F^2 / (B*C)`` between two B x C x ... tensors.

    B and C must agree (give the student a connector when C differs); the spatial sizes may differ,
    as the C x C correlation sums over them. Tensors with no spatial extent (B x C, or B x C x 1 x 1,
    e.g. DisWOT's K x C classifier gradients) take an exact closed form in O(B*C) memory.
    """
    _check_batch("ickd_distance", f_s, f_t)
    if f_s.shape[1] != f_t.shape[1]:
        raise ValueError(f"ickd_distance: channel counts differ (student {f_s.shape[1]}, teacher {f_t.shape[1]}); "
                         "map the student to the teacher's width with a 1x1 connector first")
    b, c = f_s.shape[0], f_s.shape[1]
    if f_s[0, 0].numel() == 1 and f_t[0, 0].numel() == 1:
        return _rank1_ickd_sum(f_s.reshape(b, c), f_t.reshape(b, c)) / (b * c)
    return (channel_correlation(f_s) - channel_correlation(f_t)).pow(2).sum() / (b * c)


def class_gram_distance(g_s: torch.Tensor, g_t: torch.Tensor) -> torch.Tensor:
    """``||rownorm(G_s G_s^T) - rownorm(G_t G_t^T)||_F^2 / K`` for K x C_s and K x C_t matrices.

    The channel-free fallback of DisWOT's semantic term when C_S != C_T ([our choice], METHODS §1.3).
    Dividing by K (not K^2) makes it, like :func:`ickd_distance`, the mean squared distance between
    corresponding unit rows, so both lie in [0, 4]. Computed in float64.
    """
    _check_batch("class_gram_distance", g_s, g_t)
    s, t = g_s.reshape(g_s.shape[0], -1).double(), g_t.reshape(g_t.shape[0], -1).double()
    return ((rownorm(s @ s.T) - rownorm(t @ t.T)).pow(2).sum() / s.shape[0]).to(g_s.dtype)


def orthogonal_projection(c_in: int, c_out: int, seed: int = 0) -> torch.Tensor:
    """A fixed random ``c_in x c_out`` matrix with orthonormal columns (``c_out <= c_in``), from ``seed``.

    Projects the wider of two classifier gradients to the narrower width (the other DisWOT fallback).
    """
    if not 1 <= c_out <= c_in:
        raise ValueError(f"orthogonal_projection maps a wider width to a narrower one; got c_in={c_in}, "
                         f"c_out={c_out}; pass the wider width first")
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(c_in, c_out, generator=gen, dtype=torch.float64))
    signs = torch.sign(torch.diagonal(r))
    return q * torch.where(signs == 0, torch.ones_like(signs), signs)  # the unique Q with diag(R) > 0


def hinton_kd(z_s: torch.Tensor, z_t: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """Hinton's KD loss ``tau^2 * KL(softmax(z_t/tau) || softmax(z_s/tau))``, mean over the batch."""
    if z_s.shape != z_t.shape:
        raise ValueError(f"hinton_kd: student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} "
                         "differ; both networks must have the same number of classes")
    if not tau > 0:
        raise ValueError(f"hinton_kd: the temperature must be positive, got tau={tau}; use e.g. 4")
    log_p_s = F.log_softmax(z_s / tau, dim=1)
    log_p_t = F.log_softmax(z_t / tau, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * tau**2


def attention_energy(features: torch.Tensor, p: int = 2) -> torch.Tensor:
    """AT's un-normalised map: the channel mean of ``|F|^p`` of a B x C x H x W map (B x H x W)."""
    if features.ndim != 4:
        raise ValueError(f"attention transfer needs B x C x H x W maps, got {tuple(features.shape)}; "
                         "reshape token features to maps first")
    return features.abs().pow(p).mean(dim=1)


def attention_distance_from_energy(q_s: torch.Tensor, q_t: torch.Tensor) -> torch.Tensor:
    """Mean over samples and positions of ``(a_s - a_t)^2``, ``a = rownorm(flatten(q))``, for two B x H x W
    energies (:func:`attention_energy`). When the sizes differ, the larger energy map is average-pooled to
    the smaller size before the normalisation ([our choice]: pooling the map, not the features, lets a
    teacher's maps be cached as B x H x W)."""
    _check_batch("attention_distance", q_s, q_t)
    size = (min(q_s.shape[-2], q_t.shape[-2]), min(q_s.shape[-1], q_t.shape[-1]))
    if tuple(q_s.shape[-2:]) != size:
        q_s = F.adaptive_avg_pool2d(q_s.unsqueeze(1), size).squeeze(1)
    if tuple(q_t.shape[-2:]) != size:
        q_t = F.adaptive_avg_pool2d(q_t.unsqueeze(1), size).squeeze(1)
    a_s = rownorm(q_s.reshape(q_s.shape[0], -1))
    a_t = rownorm(q_t.reshape(q_t.shape[0], -1))
    return (a_s - a_t).pow(2).mean()


def attention_distance(f_s: torch.Tensor, f_t: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Attention-transfer distance between two B x C x H x W maps (channel counts may differ)."""
    return attention_distance_from_energy(attention_energy(f_s, p), attention_energy(f_t, p))
