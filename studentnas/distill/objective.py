"""The training objective in torch: one forward pass collecting what the losses consume
(:func:`model_outputs`) and the composed loss of a :class:`~studentnas.distill.train_config.TrainConfig`
(:func:`build_objective`), its connectors sized from one pass over example images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.distill.train_config import TrainConfig, loss_kinds, loss_specs


def _stage_hooks(model: nn.Module) -> list[str]:
    info = getattr(model, "feature_info", None)
    if isinstance(info, list) and info and all(isinstance(d, dict) and d.get("module") for d in info):
        return [d["module"] for d in info]
    raise BadInputError(f"feature losses need the stage outputs of {type(model).__name__}, which has neither timm's "
                        "forward_intermediates nor a feature_info list naming its stage modules; use a logit loss")


def model_outputs(model: nn.Module, x: torch.Tensor, kinds: Sequence[str]):  # noqa: ANN201 - ModelOutputs
    """One forward pass of ``model`` collecting what ``kinds`` asks for, as the losses' ``ModelOutputs``.

    ``features`` are the stage outputs (timm's ``forward_intermediates``, else hooks on the modules
    ``feature_info`` names), ``pre_logits`` the pooled embedding, ``attn`` every attention layer's Q, K, V.

    Example:
        >>> from studentnas import get_space
        >>> net = get_space("nb201").build(get_space("nb201").smallest(), num_classes=10)
        >>> out = model_outputs(net, torch.randn(2, 3, 16, 16), ("logits", "features", "pre_logits"))
        >>> tuple(out.logits.shape), [tuple(f.shape) for f in out.features], tuple(out.pre_logits.shape)
        ((2, 10), [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)], (2, 64))
    """
    import contextlib

    from studentnas.distill.losses import ModelOutputs, capture_attention

    kinds = set(kinds)
    if not kinds & {"features", "pre_logits", "attn"}:
        return ModelOutputs(logits=model(x))
    stages: list[torch.Tensor] = []
    with contextlib.ExitStack() as stack:
        attn = stack.enter_context(capture_attention(model)) if "attn" in kinds else None
        if "features" in kinds and callable(getattr(model, "forward_intermediates", None)):
            final, stages = model.forward_intermediates(x)
        else:
            handles = [model.get_submodule(n).register_forward_hook(lambda _m, _i, o: stages.append(o))
                       for n in (_stage_hooks(model) if "features" in kinds else [])]
            try:
                final = model.forward_features(x)
            finally:
                for h in handles:
                    h.remove()
    prefix = getattr(model, "num_prefix_tokens", None)
    return ModelOutputs(logits=model.forward_head(final), features=list(stages) or None,
                        pre_logits=model.forward_head(final, pre_logits=True) if "pre_logits" in kinds else None,
                        attn=list(attn) if attn is not None else None,
                        prefix_tokens=prefix if isinstance(prefix, int) else None)


def build_objective(config: TrainConfig, student: nn.Module, teacher: nn.Module | None,
                    example: torch.Tensor | None):  # noqa: ANN201 - ComposedLoss
    """The composed loss of ``config`` (:func:`studentnas.distill.losses.compose_losses`). Losses with
    learned connectors are sized from one eval-mode pass of both networks over ``example`` images."""
    from studentnas.distill.losses import compose_losses

    specs = loss_specs(config)
    kinds = loss_kinds(config)
    s_out = t_out = None
    if example is not None and set(kinds) - {"logits", "labels"}:
        modes = [(m, m.training) for m in (student, teacher) if m is not None]
        try:
            with torch.no_grad():
                for m, _ in modes:
                    m.eval()
                s_out = model_outputs(student, example, kinds)
                t_out = model_outputs(teacher, example, kinds) if teacher is not None else None
        finally:
            for m, mode in modes:
                m.train(mode)
    return compose_losses(specs, s_out, t_out)
