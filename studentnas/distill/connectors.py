"""Layouts and learned connectors between a student's and a teacher's intermediate features.

Feature losses compare tensors that rarely share a shape: a ResNet stage is a B x C x H x W map, a
ViT block is B x N x D tokens (N = prefix tokens + an h x w patch grid), and widths and resolutions
differ between the two networks. This module puts both sides into one layout and one size:

* :func:`to_map`: any stage tensor as a B x C x H x W map. Maps pass through; tokens lose their prefix
  (class, distillation, register) tokens and the patch grid becomes H x W with D as the channel axis;
  B x D vectors become B x D x 1 x 1.
* :func:`tokens_to_map` / :func:`map_to_tokens`: the two directions of the token <-> map layout.
* :func:`align_spatial`: resize a map to a target H x W: adaptive average pooling when it shrinks on
  both axes (no information is invented), bilinear interpolation otherwise.
* :class:`Connector`: the learned FitNets regressor, 1x1 conv (no bias) + BatchNorm from the student's
  width to the teacher's, then :func:`align_spatial` to the teacher's size. It is trained with the
  student (its parameters belong to the loss; give ``loss.parameters()`` to the optimiser) and is
  thrown away at export.

Prefix tokens: ``prefix_tokens=None`` guesses them as the smallest k in 0..8 for which N - k is a
perfect square (timm ViTs: 1 class token, 2 with a distillation token, 1 + 4 with registers). For a
patch grid of at least 5 x 5 consecutive squares are more than 8 apart, so the guess is unambiguous;
pass ``prefix_tokens`` (timm's ``model.num_prefix_tokens``) and ``grid`` for smaller or non-square grids.

Example:
    >>> import torch
    >>> tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # class token + 2 x 2 grid, D = 3
    >>> to_map(tokens).shape                       # the class token is dropped, D becomes the channel axis
    torch.Size([2, 3, 2, 2])
    >>> torch.equal(map_to_tokens(to_map(tokens)), tokens[:, 1:])
    True
    >>> connector = Connector(3, 8)
    >>> connector(to_map(tokens), size=(4, 4)).shape   # 3 -> 8 channels, 2 x 2 -> 4 x 4
    torch.Size([2, 8, 4, 4])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from studentnas.core.errors import BadInputError

__all__ = ["Connector", "align_spatial", "guess_prefix_tokens", "map_to_tokens", "to_map", "tokens_to_map"]

MAX_PREFIX_TOKENS = 8


def _square(n: int) -> int | None:
    side = math.isqrt(n) if n > 0 else 0
    return side if side > 0 and side * side == n else None


def guess_prefix_tokens(num_tokens: int) -> int:
    """The smallest k in 0..8 with ``num_tokens - k`` a perfect square (see the module docstring).

    >>> guess_prefix_tokens(197), guess_prefix_tokens(196), guess_prefix_tokens(201)
    (1, 0, 5)
    """
    for k in range(min(MAX_PREFIX_TOKENS, num_tokens - 1) + 1):
        if _square(num_tokens - k):
            return k
    raise BadInputError(f"cannot tell the patch grid of {num_tokens} tokens: no k <= {MAX_PREFIX_TOKENS} leaves a "
                        "square number of patch tokens; pass prefix_tokens (timm: model.num_prefix_tokens) and "
                        "grid=(h, w)")


def tokens_to_map(tokens: torch.Tensor, prefix_tokens: int | None = None,
                  grid: tuple[int, int] | None = None) -> torch.Tensor:
    """B x N x D tokens -> B x D x h x w map of the patch tokens (the first ``prefix_tokens`` are dropped).

    >>> t = torch.arange(4.0).reshape(1, 4, 1)     # no prefix, 2 x 2 grid, D = 1: row-major patches
    >>> tokens_to_map(t)[0, 0]
    tensor([[0., 1.],
            [2., 3.]])
    """
    if tokens.ndim != 3:
        raise ValueError(f"tokens_to_map needs B x N x D tokens, got shape {tuple(tokens.shape)}")
    b, n, d = tokens.shape
    if prefix_tokens is not None:
        k = prefix_tokens
    else:
        k = guess_prefix_tokens(n) if grid is None else n - grid[0] * grid[1]
    if grid is None:
        side = _square(n - k)
        if side is None:
            raise BadInputError(f"{n} tokens minus {k} prefix tokens is not a square patch grid; pass grid=(h, w)")
        grid = (side, side)
    h, w = grid
    if h * w != n - k:
        raise BadInputError(f"grid {h}x{w} needs {h * w} patch tokens, but {n} tokens minus {k} prefix tokens "
                            f"leave {n - k}; fix grid or prefix_tokens")
    return tokens[:, k:].transpose(1, 2).reshape(b, d, h, w)


def map_to_tokens(features: torch.Tensor) -> torch.Tensor:
    """B x C x H x W map -> B x (H*W) x C tokens, row-major (the inverse of :func:`tokens_to_map`)."""
    if features.ndim != 4:
        raise ValueError(f"map_to_tokens needs a B x C x H x W map, got shape {tuple(features.shape)}")
    return features.flatten(2).transpose(1, 2)


def to_map(features: torch.Tensor, prefix_tokens: int | None = None,
           grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Any stage tensor as a B x C x H x W map: 4-D maps unchanged, 3-D B x N x D tokens through
    :func:`tokens_to_map`, 2-D B x D vectors as B x D x 1 x 1."""
    if features.ndim == 4:
        return features
    if features.ndim == 3:
        return tokens_to_map(features, prefix_tokens, grid)
    if features.ndim == 2:
        return features[:, :, None, None]
    raise ValueError(f"expected a B x C x H x W map, B x N x D tokens or B x D vectors, got shape "
                     f"{tuple(features.shape)}")


def align_spatial(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``features`` (B x C x H x W) resized to ``size``: average pooling when both axes shrink (or stay),
    bilinear interpolation when either grows.

    >>> m = torch.tensor([[1.0, 3.0], [5.0, 7.0]]).reshape(1, 1, 2, 2)
    >>> align_spatial(m, (1, 1)).flatten().tolist()       # the mean of the four
    [4.0]
    """
    size = (int(size[0]), int(size[1]))
    if tuple(features.shape[-2:]) == size:
        return features
    if features.shape[-2] >= size[0] and features.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(features, size)
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)


def _channels(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadInputError(f"connector {what} must be a positive channel count, got {value!r}; pass the widths "
                            "of the two feature maps, e.g. student_channels=64, teacher_channels=256")
    return value


class Connector(nn.Module):
    """FitNets regressor: 1x1 conv (no bias) + BatchNorm from ``in_channels`` to ``out_channels``, then
    :func:`align_spatial` to the target size given at call time (the teacher's H x W).

    Example:
        >>> c = Connector(4, 6)
        >>> c(torch.randn(2, 4, 8, 8), size=(4, 4)).shape
        torch.Size([2, 6, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = _channels(in_channels, "in_channels")
        self.out_channels = _channels(out_channels, "out_channels")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(f"Connector({self.in_channels} -> {self.out_channels}) got a map of shape "
                             f"{tuple(features.shape)}; expected B x {self.in_channels} x H x W (convert tokens "
                             "with to_map first)")
        out = self.bn(self.conv(features))
        return out if size is None else align_spatial(out, size)
