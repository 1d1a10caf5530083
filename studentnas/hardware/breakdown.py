"""How a network's cost splits by stage: MACs and params of the stem, each stage and the head.

Stages are the container modules named in the model's timm ``feature_info`` (``layer1..4`` of a
ResNet, ``stages.0..2`` of an NB201 network), or its top-level containers when it has none.
Everything registered before the first stage is the ``stem``, everything after the last the
``head``. MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (its FLOPs / 2, as in
:func:`studentnas.hardware.counting.counted_macs`), per module; the rows add up exactly to the model's total.

Example:
    >>> from studentnas import get_space
    >>> space = get_space("resnet")
    >>> rows = stage_costs(space.build(space.named("resnet18")), (3, 224, 224))
    >>> [r["stage"] for r in rows]
    ['stem', 'layer1', 'layer2', 'layer3', 'layer4', 'head']
    >>> sum(r["macs"] for r in rows) == space.cost(space.named("resnet18")).macs
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def stage_names(model: nn.Module) -> list[str]:
    """Qualified names of the model's stages (containers in ``feature_info``, else top-level containers)."""
    modules = dict(model.named_modules())
    named = [f["module"] for f in getattr(model, "feature_info", None) or [] if isinstance(f, dict)]
    stages = [n for n in named if n in modules and list(modules[n].children())]
    return stages or [n for n, m in model.named_children() if list(m.children())]


def stage_costs(model: nn.Module, input_size: tuple[int, int, int]) -> list[dict[str, Any]]:
    """Rows ``{stage, macs, params, macs_share, params_share}`` for stem, stages and head, in order."""
    from torch.utils.flop_counter import FlopCounterMode

    stages = stage_names(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
    root = type(model).__name__
    per_module = {name: sum(ops.values()) / 2 for name, ops in counter.get_flop_counts().items()}
    total_macs = per_module.get("Global", 0.0)

    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    first = min((order[s] for s in stages), default=0)

    def group(param_name: str) -> str:
        for stage in stages:
            if param_name.startswith(stage + "."):
                return stage
        owner = param_name.rsplit(".", 1)[0] if "." in param_name else ""
        return "head" if order.get(owner, 0) > first else "stem"

    params = {name: 0.0 for name in ["stem", *stages, "head"]}
    for name, p in model.named_parameters():
        params[group(name)] += p.numel()
    macs = {stage: per_module.get(f"{root}.{stage}", 0.0) for stage in stages}
    macs["head"] = sum(per_module.get(f"{root}.{n}", 0.0) for n in _head_children(model, stages))
    macs["stem"] = total_macs - sum(macs.values())  # includes any work done in the root's own forward
    total_params = sum(params.values()) or 1.0
    return [{"stage": s, "macs": macs[s], "params": params[s], "macs_share": macs[s] / (total_macs or 1.0),
             "params_share": params[s] / total_params} for s in ["stem", *stages, "head"]]


def _head_children(model: nn.Module, stages: list[str]) -> list[str]:
    """Top-level children registered after the last stage's top-level ancestor."""
    names = [n for n, _ in model.named_children()]
    tops = [names.index(s.split(".")[0]) for s in stages if s.split(".")[0] in names]
    return names[max(tops) + 1:] if tops else []
