"""What one training run does: :class:`TrainConfig` (epochs, SGD settings, the CE term, the weighted KD
loss list), and what that objective is made of: its whole loss list (:func:`loss_specs`) and the model
outputs it consumes (:func:`loss_kinds`).

Example:
    >>> config = TrainConfig(epochs=2, ce_weight=0.5, losses=({"name": "kd", "weight": 0.5},))
    >>> config.needs_teacher, loss_kinds(config)
    (True, ('logits', 'labels'))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from studentnas.core.errors import BadInputError


@dataclass(frozen=True)
class TrainConfig:
    """What one training run does. ``losses`` are KD loss specs ``{"name": ..., "weight": ..., **kwargs}``
    (names from ``studentnas list losses``); with none, the run is plain cross-entropy training.

    Example:
        >>> TrainConfig(epochs=2, losses=({"name": "kd", "weight": 1.0, "temperature": 4.0},)).needs_teacher
        True
        >>> TrainConfig(epochs=0)
        Traceback (most recent call last):
        ...
        studentnas.core.errors.BadInputError: epochs 0: must be a whole number >= 1; e.g. --epochs 10
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.0
    ce_weight: float = 1.0
    losses: tuple[dict[str, Any], ...] = ()
    augment: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                flag = name.replace("_", "-")
                raise BadInputError(f"{name} {value!r}: must be a whole number >= {low}; e.g. --{flag} "
                                    f"{10 if name == 'epochs' else 64}")
        checks = {"lr": (0.0, False), "weight_decay": (0.0, True), "momentum": (0.0, True),
                  "label_smoothing": (0.0, True), "ce_weight": (0.0, True)}
        for name, (low, inclusive) in checks.items():
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < low or (value == low and not inclusive):
                raise BadInputError(f"{name} {getattr(self, name)!r}: must be a finite number "
                                    f"{'>=' if inclusive else '>'} {low:g}")
        if self.label_smoothing >= 1 or self.momentum >= 1:
            raise BadInputError(f"label_smoothing {self.label_smoothing} and momentum {self.momentum} must be < 1")
        object.__setattr__(self, "losses", tuple(dict(s) for s in self.losses))
        if self.ce_weight == 0 and not self.losses:
            raise BadInputError("ce_weight 0 with no KD loss leaves nothing to train; give ce_weight > 0 or a loss")

    @property
    def needs_teacher(self) -> bool:
        return bool(self.losses)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["losses"] = [dict(s) for s in self.losses]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "losses" else v) for k, v in data.items() if k in known})


def available_losses() -> list[str]:
    """KD losses a config may name (``studentnas list losses`` without ``ce``, which is the CE term)."""
    from studentnas.distill.losses import LOSSES

    return [name for name in sorted(LOSSES.list()) if name != "ce"]


def loss_parameters(name: str) -> list[str]:
    """The options of a registered loss besides name and weight, e.g. ``['T']`` for ``kd``."""
    from studentnas.distill.losses import LOSSES

    return LOSSES.get(name).parameter_names()


def loss_specs(config: TrainConfig) -> list[dict[str, Any]]:
    """The whole objective as a weighted loss list: the CE term first, then ``config.losses``.

    Example:
        >>> loss_specs(TrainConfig(ce_weight=0.1, label_smoothing=0.1, losses=({"name": "kd", "weight": 0.9},)))
        [{'name': 'ce', 'weight': 0.1, 'label_smoothing': 0.1}, {'name': 'kd', 'weight': 0.9}]
    """
    return [{"name": "ce", "weight": config.ce_weight, "label_smoothing": config.label_smoothing},
            *(dict(s) for s in config.losses)]


def loss_kinds(config: TrainConfig) -> tuple[str, ...]:
    """What the objective consumes (``logits``, ``labels``, ``features``, ``pre_logits``, ``attn``)."""
    from studentnas.distill.losses import INPUT_KINDS, LOSSES, parse_loss_specs

    used = {kind for term in parse_loss_specs(loss_specs(config)) for kind in LOSSES.get(term.name).inputs}
    return tuple(kind for kind in INPUT_KINDS if kind in used)
