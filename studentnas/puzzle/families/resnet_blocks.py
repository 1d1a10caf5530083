"""Block surgery for the ``resnet`` Puzzle family: new modules made from a timm ResNet block.

Width pruning by channel importance (:func:`prune_basic`, :func:`prune_bottleneck`), a basic block
standing in for a bottleneck (:func:`basic_from_bottleneck`) and the 1x1 ``linear`` block started as the
shortcut path (:func:`linear_block`); :mod:`studentnas.puzzle.families.resnet` describes how each is
initialised from the parent.

Example:
    >>> import torch
    >>> from timm.models.resnet import BasicBlock
    >>> block = BasicBlock(8, 8).eval()
    >>> half = prune_basic(block, 0.5).eval()
    >>> half.conv1.out_channels, half.conv2.in_channels, half(torch.randn(1, 8, 4, 4)).shape
    (4, 4, torch.Size([1, 8, 4, 4]))
    >>> torch.equal(prune_basic(block, 1.0).eval()(torch.ones(1, 8, 4, 4)), block(torch.ones(1, 8, 4, 4)))
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from torch import nn

from studentnas.puzzle.library import LayerInfo

# ---------------------------------------------------------------------------------------------------------------------
# Slicing convs and BNs


def channel_importance(bn: nn.BatchNorm2d, next_conv: nn.Conv2d) -> torch.Tensor:
    """Data-free importance of each channel ``c`` between ``bn`` and ``next_conv``: ``|gamma_c| * ||W[:, c]||_2``."""
    with torch.no_grad():
        return bn.weight.abs() * next_conv.weight.transpose(0, 1).flatten(1).norm(dim=1)


def _keep(importance: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` most important channels, in their original order (ties: lower index)."""
    ranked = torch.argsort(importance, descending=True, stable=True)[:count]
    return ranked.sort().values


def width_count(width: float, channels: int) -> int:
    """How many of ``channels`` mid channels a block of relative ``width`` keeps (rounded half up, at least 1).

    >>> width_count(0.5, 64), width_count(0.3, 5), width_count(0.01, 8)
    (32, 2, 1)
    """
    return max(1, int(math.floor(width * channels + 0.5)))


def _slice_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None = None,
                in_idx: torch.Tensor | None = None) -> nn.Conv2d:
    weight = conv.weight.detach()
    weight = weight if out_idx is None else weight[out_idx]
    weight = weight if in_idx is None else weight[:, in_idx]
    new = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode, device=weight.device,
                    dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias if out_idx is None else conv.bias[out_idx])
    return new


def _slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), bn.eps, bn.momentum, device=bn.weight.device, dtype=bn.weight.dtype)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new, name).copy_(getattr(bn, name)[idx])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def prune_basic(block: BasicBlock, width: float) -> BasicBlock:
    """A copy of ``block`` keeping the ``width`` share of its mid channels ranked by :func:`channel_importance`."""
    keep = _keep(channel_importance(block.bn1, block.conv2), width_count(width, block.conv1.out_channels))
    new = copy.deepcopy(block)
    new.conv1, new.bn1 = _slice_conv(block.conv1, out_idx=keep), _slice_bn(block.bn1, keep)
    new.conv2 = _slice_conv(block.conv2, in_idx=keep)
    return new


def prune_bottleneck(block: Bottleneck, width: float) -> Bottleneck:
    """A copy of ``block`` with both mid tensors cut to ``width``, each ranked by :func:`channel_importance`."""
    keep1 = _keep(channel_importance(block.bn1, block.conv2), width_count(width, block.conv1.out_channels))
    keep2 = _keep(channel_importance(block.bn2, block.conv3), width_count(width, block.conv2.out_channels))
    new = copy.deepcopy(block)
    new.conv1, new.bn1 = _slice_conv(block.conv1, out_idx=keep1), _slice_bn(block.bn1, keep1)
    new.conv2, new.bn2 = _slice_conv(block.conv2, out_idx=keep2, in_idx=keep1), _slice_bn(block.bn2, keep2)
    new.conv3 = _slice_conv(block.conv3, in_idx=keep2)
    return new


PRUNERS: dict[str, Callable[[nn.Module, float], nn.Module]] = {"basic": prune_basic, "bottleneck": prune_bottleneck}


# ---------------------------------------------------------------------------------------------------------------------
# Other replacement modules


def _he_normal_(weight: torch.Tensor, generator: torch.Generator) -> None:
    """timm's ResNet conv init (kaiming normal, fan_out, ReLU gain) from an explicit generator."""
    fan_out = weight.shape[0] * weight[0, 0].numel()
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape, generator=generator) * math.sqrt(2.0 / fan_out))


def _centre_tap(weight: torch.Tensor) -> torch.Tensor:
    return weight[:, :, weight.shape[2] // 2, weight.shape[3] // 2]


def _check_materialised(module: nn.Module) -> nn.Module:
    """Guard for modules made on the meta device: every tensor must have been replaced by a real one."""
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"internal error: {type(module).__name__} still has meta tensors {left}")
    return module


def basic_from_bottleneck(block: Bottleneck, generator: torch.Generator) -> BasicBlock:
    """A 3x3-3x3 ``BasicBlock`` at ``block``'s reduce width, stride and shortcut (init in the module docstring)."""
    c_in, mid, c_out = block.conv1.in_channels, block.conv1.out_channels, block.conv3.out_channels
    stride, dilation = block.conv2.stride[0], block.conv2.dilation[0]
    with torch.device("meta"):  # the sub-modules are all replaced below; nothing is allocated twice
        new = BasicBlock(c_in, c_out, stride=stride)
    new.conv1 = nn.Conv2d(c_in, mid, 3, stride, padding=dilation, dilation=dilation, bias=False)
    new.conv2 = nn.Conv2d(mid, c_out, 3, 1, padding=dilation, dilation=dilation, bias=False)
    new.bn1, new.bn2 = copy.deepcopy(block.bn1), nn.BatchNorm2d(c_out, eps=block.bn3.eps, momentum=block.bn3.momentum)
    with torch.no_grad():
        new.conv1.weight.zero_()
        new.conv1.weight[:, :, 1, 1] = _centre_tap(block.conv1.weight)
        new.bn2.weight.zero_()
    _he_normal_(new.conv2.weight, generator)
    new.act1, new.act2 = copy.deepcopy(block.act1), copy.deepcopy(block.act3)
    new.downsample, new.drop_path = copy.deepcopy(block.downsample), copy.deepcopy(block.drop_path)
    return _check_materialised(new)


def _shortcut_conv_bn(downsample: nn.Module | None) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """The (conv, BN) ending a timm downsample path (``downsample_conv`` / ``downsample_avg``), if that is its form."""
    if not isinstance(downsample, nn.Sequential) or len(downsample) < 2:
        return None
    conv, bn = downsample[-2], downsample[-1]
    if type(conv) is nn.Conv2d and conv.groups == 1 and type(bn) is nn.BatchNorm2d:
        return conv, bn
    return None


def linear_block(block: nn.Module, info: LayerInfo, generator: torch.Generator) -> nn.Sequential:
    """1x1 conv (the block's stride) + BN, started as the block's shortcut path (see the module docstring)."""
    c_in, c_out, stride = info.in_shape[0], info.out_shape[0], int(info.extra["stride"])
    conv, bn = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    downsample = getattr(block, "downsample", None)
    source = _shortcut_conv_bn(downsample)
    with torch.no_grad():
        if source is not None:
            conv.weight[:, :, 0, 0] = _centre_tap(source[0].weight)
            bn = copy.deepcopy(source[1])
        elif downsample is None and c_in == c_out:  # identity shortcut: an exact identity in eval mode
            conv.weight[:, :, 0, 0] = torch.eye(c_in)
            bn.running_var.fill_(1.0 - bn.eps)
        else:
            _he_normal_(conv.weight, generator)
    return nn.Sequential(conv, bn)
