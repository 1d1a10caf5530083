"""One training objective from a weighted list of registered losses: :func:`compose_losses`.

A config names the terms of ``L = sum_i w_i * L_i``, each an entry ``{"name": ..., "weight": ...,
<the loss's own parameters>}`` (a bare name means weight 1 and defaults), for example RepDistiller's KD
recipe plus a hint::

    [{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "T": 4}, {"name": "fitnet", "weight": 100}]

:func:`compose_losses` validates the whole list before building anything (unknown loss: close names;
unknown parameter: the valid ones), builds every loss with :meth:`DistillLoss.build` on one example
batch (``student``/``teacher`` :class:`ModelOutputs`, needed by losses with connectors) and returns a
:class:`ComposedLoss`. Calling it gives a :class:`LossResult`: the weighted total to backpropagate and
the unweighted value of every term (detached) for logging. Repeated names get keys ``name_2``, ``name_3``.

For the trainer: ``composed.inputs`` says what to collect (``features``, ``pre_logits``, ``attn`` cost
extra work), ``composed.uses_teacher`` whether the teacher must run at all (not for ``ce`` alone), and
``composed.parameters()`` are the connectors, to optimise with the student (move the loss with
``.to(device)`` and switch it with ``.train()``/``.eval()`` alongside the student: the connectors hold
BatchNorm). ``composed.weights`` may be changed between steps (e.g. DKD's linear warm-up).

Example:
    >>> import torch
    >>> loss = compose_losses([{"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9, "T": 4}])
    >>> z_s, z_t, y = torch.zeros(2, 10), torch.zeros(2, 10), torch.tensor([1, 2])
    >>> result = loss(ModelOutputs(logits=z_s), ModelOutputs(logits=z_t), y)
    >>> sorted(result.parts), round(float(result.total), 4)       # 0.1 * ln 10 + 0.9 * 0
    (['ce', 'kd'], 0.2303)
    >>> compose_losses([{"name": "kd", "temperature": 4}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: loss 'kd' has no parameter 'temperature'. Valid parameters: T (besides ...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.registry import suggest
from studentnas.distill.losses.base import INPUT_KINDS, LOSSES, DistillLoss, ModelOutputs, check_number

__all__ = ["ComposedLoss", "LossResult", "LossTerm", "compose_losses", "parse_loss_specs"]


@dataclass(frozen=True)
class LossTerm:
    """One validated entry of a loss list: its key in the parts, registered name, weight and parameters."""

    key: str
    name: str
    weight: float
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, **self.params}


class LossResult(NamedTuple):
    """The weighted sum (backpropagate it) and each term's unweighted, detached value (log them)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


def parse_loss_specs(specs: Sequence[Mapping[str, Any] | str]) -> list[LossTerm]:
    """Validate a loss list without building anything; every problem is a :class:`BadInputError`.

    >>> parse_loss_specs(["kd", {"name": "kd", "weight": 0.5, "T": 2}])
    [LossTerm(key='kd', name='kd', weight=1.0, params={}), LossTerm(key='kd_2', name='kd', weight=0.5, params={'T': 2})]
    """
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence) or not specs:
        raise BadInputError(f"losses must be a non-empty list of entries like {{'name': 'kd', 'weight': 0.9, 'T': 4}}, "
                            f"got {specs!r}")
    terms: list[LossTerm] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        entry = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise BadInputError(f"loss entry {i} must be a loss name or a mapping with a 'name', got {spec!r}; "
                                f"e.g. {{'name': 'kd', 'weight': 0.9, 'T': 4}} (losses: {', '.join(LOSSES.list())})")
        name = entry["name"]
        cls: type[DistillLoss] = LOSSES.get(name)
        weight = check_number(entry.get("weight", 1.0), "weight", name, example="'weight': 0.5")
        params = {k: v for k, v in entry.items() if k not in ("name", "weight")}
        valid = cls.parameter_names()
        for key in params:
            if key not in valid:
                listed = ", ".join(valid) if valid else "none"
                raise BadInputError(f"loss '{name}' has no parameter '{key}'.{suggest(key, valid)} Valid parameters: "
                                    f"{listed} (besides name and weight)")
        seen[name] = seen.get(name, 0) + 1
        terms.append(LossTerm(name if seen[name] == 1 else f"{name}_{seen[name]}", name, weight, dict(params)))
    return terms


class ComposedLoss(nn.Module):
    """A weighted sum of built losses; ``forward(student, teacher, labels)`` returns a :class:`LossResult`."""

    def __init__(self, terms: Sequence[LossTerm], losses: Sequence[DistillLoss]):
        super().__init__()
        if len(terms) != len(losses) or not terms:
            raise ValueError("ComposedLoss needs one built loss per term; use compose_losses")
        self.terms = list(terms)
        self.losses = nn.ModuleDict({term.key: loss for term, loss in zip(terms, losses)})
        self.weights: dict[str, float] = {term.key: term.weight for term in terms}

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every kind some term consumes, in :data:`INPUT_KINDS` order."""
        used = {kind for loss in self.losses.values() for kind in loss.inputs}
        return tuple(kind for kind in INPUT_KINDS if kind in used)

    @property
    def uses_teacher(self) -> bool:
        return any(loss.uses_teacher for loss in self.losses.values())

    def config(self) -> list[dict[str, Any]]:
        """The loss list this was built from (JSON-ready, for run records)."""
        return [term.to_dict() | {"weight": self.weights[term.key]} for term in self.terms]

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None = None,
                labels: torch.Tensor | None = None) -> LossResult:
        if teacher is None:
            if self.uses_teacher:
                need = [k for k, loss in self.losses.items() if loss.uses_teacher]
                raise BadInputError(f"losses {', '.join(need)} need the teacher's outputs, but none were given")
            teacher = ModelOutputs()
        weighted: list[torch.Tensor] = []
        parts: dict[str, torch.Tensor] = {}
        for key, loss in self.losses.items():
            value = loss.forward_outputs(student, teacher, labels)
            parts[key] = value.detach()
            weighted.append(self.weights[key] * value)
        return LossResult(torch.stack(weighted).sum(), parts)


def compose_losses(specs: Sequence[Mapping[str, Any] | str], student: ModelOutputs | None = None,
                   teacher: ModelOutputs | None = None) -> ComposedLoss:
    """Build the weighted loss list ``specs`` for a student/teacher pair (see the module docstring).

    Args:
        specs: entries ``{"name": ..., "weight": ..., **params}`` or bare names.
        student, teacher: the two networks' :class:`ModelOutputs` on one example batch; required only by
            losses with connectors (``fitnet``, ``diswot_semantic`` with different widths).
    """
    terms = parse_loss_specs(specs)
    built: list[DistillLoss] = []
    for term in terms:
        built.append(LOSSES.get(term.name).build(student, teacher, **term.params))
    return ComposedLoss(terms, built)
