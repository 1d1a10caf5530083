"""Data-free pruning for the transformer families: weights as tensors, their importance, and what to keep.

An attention or MLP is converted to plain tensors (:class:`AttnWeights`, :class:`FfnWeights`), sliced
or averaged there, and converted back by the family.

* *Head pruning.* A head's importance is ``||W_o[:, head]||_F * ||W_q[head, :]||_F``: the norm of its
  slice of the output projection (how much it can write into the residual stream) times the norm of
  its query slice (how sharply it can attend). A K/V group's importance is the sum over its query
  heads. With ``h`` of ``H`` query heads kept, the K/V heads shrink in proportion: ``g`` groups
  (``g`` closest to ``G * h / H`` such that ``h / g`` heads fit in one group) with the largest
  importance are kept, and in each the ``h / g`` most important heads. Every kept query head thus
  keeps its own K/V head and the layer stays a slice of the parent; heads keep their order.
* *Fewer K/V heads* (modelopt's ``AverageKV``): the new K/V head ``j`` serves query heads
  ``j*H/k .. (j+1)*H/k - 1`` and its K and V projections are the mean of the parent K/V
  projections those query heads used.
* *FFN pruning.* Hidden unit ``i`` has importance ``||W_fc2[:, i]|| * ||W_fc1[i, :]||`` (how much
  it can read times how much it can write); the largest are kept, in order.

Example:
    >>> kv_for_heads(heads=8, kv_heads=4, new_heads=4)   # 4 of 8 query heads: 2 of the 4 K/V groups
    2
    >>> round_half_up(2.5), top_units(torch.tensor([0.1, 0.9, 0.5]), 2)
    (3, [1, 2])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from studentnas.core.errors import BadInputError


@dataclass(frozen=True)
class AttnWeights:
    """An attention's projections as plain tensors: ``wq (H*hd, D)``, ``wk``/``wv (G*hd, D)``, ``wo (D, H*hd)``.

    Biases may be None. Query head ``h`` uses K/V head ``h // (heads // kv_heads)``.
    """

    heads: int
    kv_heads: int
    head_dim: int
    wq: torch.Tensor
    wk: torch.Tensor
    wv: torch.Tensor
    wo: torch.Tensor
    bq: torch.Tensor | None = None
    bk: torch.Tensor | None = None
    bv: torch.Tensor | None = None
    bo: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return int(self.wq.shape[1])

    def _rows(self, heads: Sequence[int]) -> torch.Tensor:
        return torch.cat([torch.arange(h * self.head_dim, (h + 1) * self.head_dim) for h in heads])

    def head_importance(self) -> torch.Tensor:
        """``||W_o[:, head]||_F * ||W_q[head, :]||_F`` per query head, shape ``(heads,)``."""
        wq = self.wq.detach().reshape(self.heads, self.head_dim, -1)
        wo = self.wo.detach().reshape(self.wo.shape[0], self.heads, self.head_dim)
        return wq.flatten(1).norm(dim=1) * wo.transpose(0, 1).flatten(1).norm(dim=1)

    def select(self, heads: Sequence[int], kv_heads: Sequence[int]) -> AttnWeights:
        """Only query ``heads`` and K/V ``kv_heads`` (as :func:`keep_heads` returns them)."""
        q_rows, kv_rows = self._rows(heads), self._rows(kv_heads)

        def pick(t: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
            return None if t is None else t[rows].clone()

        return replace(self, heads=len(heads), kv_heads=len(kv_heads), wq=self.wq[q_rows].clone(),
                       wk=self.wk[kv_rows].clone(), wv=self.wv[kv_rows].clone(), wo=self.wo[:, q_rows].clone(),
                       bq=pick(self.bq, q_rows), bk=pick(self.bk, kv_rows), bv=pick(self.bv, kv_rows),
                       bo=None if self.bo is None else self.bo.clone())

    def average_kv(self, kv_heads: int) -> AttnWeights:
        """``kv_heads`` K/V heads, each the mean of the parent K/V projections its query heads used."""
        if kv_heads < 1 or self.heads % kv_heads:
            raise BadInputError(f"attn: kv_heads must divide the parent's {self.heads} heads, got {kv_heads}")
        group, parent_group = self.heads // kv_heads, self.heads // self.kv_heads

        def mean(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            per_kv = t.reshape(self.kv_heads, self.head_dim, *t.shape[1:])
            per_query = per_kv[torch.arange(self.heads) // parent_group]  # the K/V head of every query head
            return per_query.reshape(kv_heads, group, *per_kv.shape[1:]).mean(dim=1).reshape(-1, *t.shape[1:])

        return replace(self, kv_heads=kv_heads, wk=mean(self.wk), wv=mean(self.wv), bk=mean(self.bk),
                       bv=mean(self.bv))


@dataclass(frozen=True)
class FfnWeights:
    """An MLP's ``fc1`` (``w1 (F, D)``, ``b1``) and ``fc2`` (``w2 (D, F)``, ``b2``); biases may be None."""

    w1: torch.Tensor
    w2: torch.Tensor
    b1: torch.Tensor | None = None
    b2: torch.Tensor | None = None

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[0])

    def unit_importance(self) -> torch.Tensor:
        """``||W_fc2[:, i]|| * ||W_fc1[i, :]||`` per hidden unit, shape ``(hidden,)``."""
        return self.w2.detach().norm(dim=0) * self.w1.detach().norm(dim=1)

    def select(self, units: Sequence[int]) -> FfnWeights:
        idx = torch.as_tensor(list(units), dtype=torch.long)
        return FfnWeights(self.w1[idx].clone(), self.w2[:, idx].clone(),
                          None if self.b1 is None else self.b1[idx].clone(),
                          None if self.b2 is None else self.b2.clone())


def round_half_up(x: float) -> int:
    """``round`` without banker's rounding: ``round_half_up(1.5) == 2`` and ``round_half_up(2.5) == 3``."""
    return int(math.floor(x + 0.5))


def _top(importance: torch.Tensor, k: int) -> list[int]:
    order = torch.sort(importance, descending=True, stable=True).indices  # ties: the lower index first
    return sorted(int(i) for i in order[:k])


def top_units(importance: torch.Tensor, k: int) -> list[int]:
    """The ``k`` indices of largest ``importance``, in increasing order (ties go to the lower index)."""
    return _top(importance, k)


def kv_for_heads(heads: int, kv_heads: int, new_heads: int) -> int | None:
    """K/V heads for ``new_heads`` of ``heads`` query heads: closest to the parent's ratio, such that
    ``new_heads / g`` is whole and fits in one parent group; None when no such ``g`` exists."""
    group = heads // kv_heads
    fits = [g for g in range(1, kv_heads + 1) if new_heads % g == 0 and new_heads // g <= group]
    if not fits:
        return None
    target = kv_heads * new_heads / heads
    return min(fits, key=lambda g: (abs(g - target), -g))


def keep_heads(importance: torch.Tensor, kv_heads: int, heads: int) -> tuple[list[int], list[int]]:
    """Query heads and K/V heads to keep when pruning to ``heads`` query heads (see the module docstring).

    ``importance`` has one value per parent query head. Raises :class:`BadInputError` when ``heads``
    query heads cannot be laid out in whole groups of the parent.
    """
    parent_heads = len(importance)
    if not 1 <= heads <= parent_heads:
        raise BadInputError(f"attn: heads must be in 1..{parent_heads} (the parent's heads), got {heads}")
    groups = kv_for_heads(parent_heads, kv_heads, heads)
    if groups is None:
        raise BadInputError(f"attn: {heads} query heads cannot be split evenly over the parent's {kv_heads} K/V "
                            f"groups of {parent_heads // kv_heads}; pick a head count that can")
    per_group = heads // groups
    by_group = importance.reshape(kv_heads, parent_heads // kv_heads)
    kept_groups = _top(by_group.sum(dim=1), groups)
    kept_heads = [g * by_group.shape[1] + h for g in kept_groups for h in _top(by_group[g], per_group)]
    return kept_heads, kept_groups
