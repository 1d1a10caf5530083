"""The hyper-parameter space of ``studentnas distill``: a YAML or JSON file of tunable ranges.

Keys (every one optional; a missing key keeps its default):

===================  ==========================================================  ===================
key                  meaning                                                     default
===================  ==========================================================  ===================
``lr``               peak SGD learning rate (cosine to 0)                        [0.01, 0.2] log
``weight_decay``     SGD weight decay                                            [1e-5, 1e-3] log
``momentum``         SGD (Nesterov) momentum                                     0.9
``label_smoothing``  of the cross-entropy term                                   0.0
``temperature``      of the logit losses that take one (kd, dkd, ...)            [1, 8]
``ce_weight``        weight of the cross-entropy term                            [0.1, 1.0]
``loss``             KD loss, or a choice of them; ``a+b`` combines two          kd
``loss_weights``     mapping: loss name -> weight (a value or a range)           1.0 each
===================  ==========================================================  ===================

A value is a number (fixed), ``[low, high]`` (a range, log-uniform for ``lr`` and ``weight_decay``,
uniform otherwise) or ``{low: .., high: .., log: true|false}``. ``loss`` is a name, a ``+``-joined
combination, or a list of them to choose from. The CE-only baseline (``--baseline``) tunes the same
ranges of ``lr``, ``weight_decay``, ``momentum`` and ``label_smoothing`` and nothing else.

Example:
    >>> space = HyperParamSpace.parse({"lr": [0.01, 0.1], "loss": ["kd", "kd+diswot_relation"], "momentum": 0.8,
    ...                            "loss_weights": {"diswot_relation": [100, 3000]}})
    >>> sorted(space.distributions("kd"))
    ['ce_weight', 'loss', 'lr', 'temperature', 'weight_decay', 'weight_diswot_relation']
    >>> sorted(space.distributions("ce"))   # the baseline tunes only what it shares with KD
    ['lr', 'weight_decay']
    >>> cfg = space.train_config({"lr": 0.05, "weight_decay": 1e-4, "temperature": 2.0, "ce_weight": 0.5,
    ...                           "loss": "kd"}, "kd", epochs=3, batch_size=32, seed=0)
    >>> cfg.lr, cfg.momentum, cfg.losses
    (0.05, 0.8, ({'name': 'kd', 'weight': 1.0, 'T': 2.0},))
    >>> HyperParamSpace.parse({"learning_rate": [0.1, 1]})
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: search space: unknown key 'learning_rate' (did you mean 'lr'?); valid keys: ce_weight, label_smoothing, loss, loss_weights, lr, momentum, temperature, weight_decay
"""  # noqa: E501

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studentnas.core.errors import BadInputError
from studentnas.distill.train_config import TrainConfig, available_losses, loss_parameters

MODES = ("kd", "ce")
TEMPERATURE = "T"  # the losses' name for the temperature parameter  # distillation, and the cross-entropy-only baseline
LOG_SCALE = ("lr", "weight_decay")
NUMERIC = ("lr", "weight_decay", "momentum", "label_smoothing", "temperature", "ce_weight")
SHARED = ("lr", "weight_decay", "momentum", "label_smoothing")  # what the CE baseline tunes too
VALID_KEYS = (*NUMERIC, "loss", "loss_weights")
LIMITS = {"lr": (0.0, 10.0, False), "weight_decay": (0.0, 1.0, True), "momentum": (0.0, 0.999, True),
          "label_smoothing": (0.0, 0.999, True), "temperature": (0.0, 100.0, False), "ce_weight": (0.0, 100.0, True),
          "weight": (0.0, 1e6, True)}
ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "decay": "weight_decay", "t": "temperature",
           "tau": "temperature", "alpha": "ce_weight", "smoothing": "label_smoothing", "losses": "loss",
           "weights": "loss_weights"}
DEFAULTS: dict[str, Any] = {"lr": [0.01, 0.2], "weight_decay": [1e-5, 1e-3], "momentum": 0.9, "label_smoothing": 0.0,
                            "temperature": [1.0, 8.0], "ce_weight": [0.1, 1.0], "loss": "kd", "loss_weights": {}}


@dataclass(frozen=True)
class Range:
    """A tunable float range (``low == high`` is a fixed value)."""

    low: float
    high: float
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def to_json(self) -> Any:
        return self.low if self.fixed else {"low": self.low, "high": self.high, "log": self.log}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInputError(f"search space: {where} = {value!r} is not a finite number; write e.g. 0.1")
    return float(value)


def _range(key: str, value: Any, limit: str | None = None) -> Range:
    low_ok, high_ok, inclusive = LIMITS[limit or key]
    log = key in LOG_SCALE
    if isinstance(value, Mapping):
        extra = set(value) - {"low", "high", "log"}
        if extra or not {"low", "high"} <= set(value):
            raise BadInputError(f"search space: {key} = {value!r}; a range mapping has exactly low, high and "
                                "optionally log, e.g. {low: 0.01, high: 0.2, log: true}")
        low, high = _number(value["low"], f"{key}.low"), _number(value["high"], f"{key}.high")
        log = bool(value.get("log", log))
    elif isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise BadInputError(f"search space: {key} = {value!r}; a range is [low, high] with two numbers, "
                                "a fixed value is one number")
        low, high = _number(value[0], f"{key}[0]"), _number(value[1], f"{key}[1]")
    else:
        low = high = _number(value, key)
    if low > high:
        raise BadInputError(f"search space: {key} = {value!r} has low > high; write [{high:g}, {low:g}]")
    if low < low_ok or high > high_ok or (low == low_ok and not inclusive):
        bound = ">=" if inclusive else ">"
        raise BadInputError(f"search space: {key} = {value!r} is out of bounds; it must be {bound} {low_ok:g} and "
                            f"<= {high_ok:g}")
    if log and low <= 0 < high:
        raise BadInputError(f"search space: {key} = {value!r}: a log-scale range needs low > 0; "
                            "write e.g. [1e-5, 1e-3], or {low: 0, high: ..., log: false}")
    return Range(low, high, log and not low == high)


def _loss_combo(text: Any) -> tuple[str, ...]:
    if not isinstance(text, str) or not text.strip():
        raise BadInputError(f"search space: loss {text!r} is not a loss name; valid losses: "
                            f"{', '.join(available_losses())}")
    names = tuple(n.strip() for n in text.split("+"))
    valid = available_losses()
    for name in names:
        if name == "ce":
            raise BadInputError("search space: loss 'ce' is the cross-entropy term, always present; tune its weight "
                                f"with ce_weight and name KD losses here: {', '.join(valid)}")
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise BadInputError(f"search space: unknown loss '{name}'{hint}; valid losses: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise BadInputError(f"search space: loss '{text}' names a loss twice; give each once and set its weight "
                            "in loss_weights")
    return names


@dataclass(frozen=True)
class HyperParamSpace:
    """The training hyper-parameters ``distill`` tunes (``--search-space FILE``), as validated ranges;
    :meth:`distributions` for Optuna, :meth:`train_config` from one sampled config. Not a space of
    architectures (that is :class:`studentnas.core.space.SearchSpace`)."""

    numbers: dict[str, Range]
    losses: tuple[str, ...]  # the choices, each a '+'-joined combination
    weights: dict[str, Range] = field(default_factory=dict)
    source: str = "defaults"

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, source: str = "defaults") -> HyperParamSpace:
        if raw is not None and not isinstance(raw, Mapping):
            raise BadInputError(f"search space {source}: expected a mapping of keys to ranges, got "
                                f"{type(raw).__name__}; write e.g. {{lr: [0.01, 0.2]}}")
        raw = dict(raw or {})
        for key in raw:
            if key not in VALID_KEYS:
                close = [ALIASES[str(key).lower()]] if str(key).lower() in ALIASES else \
                    difflib.get_close_matches(str(key), VALID_KEYS, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise BadInputError(f"search space: unknown key '{key}'{hint}; valid keys: "
                                    f"{', '.join(sorted(VALID_KEYS))}")
        merged = {**DEFAULTS, **raw}
        numbers = {k: _range(k, merged[k]) for k in NUMERIC}
        choices = merged["loss"] if isinstance(merged["loss"], list) else [merged["loss"]]
        if not choices:
            raise BadInputError("search space: loss = [] offers no loss; name at least one, e.g. loss: kd")
        combos = [_loss_combo(c) for c in choices]
        named = {n for combo in combos for n in combo}
        weights_raw = merged["loss_weights"]
        if not isinstance(weights_raw, Mapping):
            raise BadInputError(f"search space: loss_weights = {weights_raw!r}; write a mapping such as "
                                "{kd: 1.0, rkd: [0.5, 5]}")
        for name in weights_raw:
            if name not in named:
                raise BadInputError(f"search space: loss_weights names '{name}', which no loss choice uses; "
                                    f"losses in play: {', '.join(sorted(named))}")
        weights = {n: _range(f"loss_weights.{n}", weights_raw.get(n, 1.0), "weight") for n in sorted(named)}
        return cls(numbers, tuple("+".join(c) for c in combos), weights, source)

    @classmethod
    def load(cls, path: str | Path | None) -> HyperParamSpace:
        """Read a ``.yaml``/``.yml``/``.json`` file (None: the defaults)."""
        if path is None:
            return cls.parse(None)
        file = Path(path)
        if not file.is_file():
            raise BadInputError(f"--search-space '{path}' does not exist; give a YAML or JSON file of ranges "
                                "(see `studentnas distill --help`)")
        text = file.read_text()
        try:
            if file.suffix.lower() == ".json":
                raw = json.loads(text)
            else:
                import yaml

                raw = yaml.safe_load(text)
        except Exception as err:  # noqa: BLE001 - yaml and json raise their own error types
            detail = str(err).splitlines()[0][:120]
            raise BadInputError(f"--search-space '{path}' is not valid {'JSON' if file.suffix == '.json' else 'YAML'}"
                                f" ({detail}); fix the syntax") from None
        if raw is not None and not isinstance(raw, dict):
            raise BadInputError(f"--search-space '{path}': expected a mapping of keys to ranges at the top level, "
                                f"got {type(raw).__name__}")
        return cls.parse(raw, source=str(path))

    def to_json(self) -> dict[str, Any]:
        """The resolved space (what distill.json records; equal spaces give equal JSON)."""
        return {"numbers": {k: r.to_json() for k, r in sorted(self.numbers.items())}, "losses": list(self.losses),
                "loss_weights": {k: r.to_json() for k, r in sorted(self.weights.items())}}

    def _tuned_numbers(self, mode: str) -> dict[str, Range]:
        keys = SHARED if mode == "ce" else NUMERIC
        if mode == "kd" and not any(TEMPERATURE in loss_parameters(n) for combo in self.losses
                                    for n in combo.split("+")):
            keys = tuple(k for k in keys if k != "temperature")
        return {k: self.numbers[k] for k in keys}

    def distributions(self, mode: str) -> dict[str, Any]:
        """Optuna distributions of the tunable (non-fixed) parameters of ``mode`` (``kd`` or ``ce``)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        out: dict[str, Any] = {k: FloatDistribution(r.low, r.high, log=r.log)
                               for k, r in self._tuned_numbers(mode).items() if not r.fixed}
        if mode == "kd":
            if len(self.losses) > 1:
                out["loss"] = CategoricalDistribution(list(self.losses))
            out.update({f"weight_{n}": FloatDistribution(r.low, r.high, log=r.log)
                        for n, r in self.weights.items() if not r.fixed})
        return out

    def train_config(self, sampled: Mapping[str, Any], mode: str, *, epochs: int, batch_size: int, seed: int,
                     augment: bool = False) -> TrainConfig:
        """The :class:`TrainConfig` of one trial: sampled values over the fixed ones."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        numbers = {k: float(sampled.get(k, r.low)) for k, r in self.numbers.items()}
        losses: tuple[dict[str, Any], ...] = ()
        if mode == "kd":
            combo = str(sampled.get("loss", self.losses[0])).split("+")
            specs = []
            for name in combo:
                spec: dict[str, Any] = {"name": name,
                                        "weight": float(sampled.get(f"weight_{name}", self.weights[name].low))}
                if TEMPERATURE in loss_parameters(name):
                    spec[TEMPERATURE] = numbers["temperature"]
                specs.append(spec)
            losses = tuple(specs)
        return TrainConfig(epochs=epochs, batch_size=batch_size, lr=numbers["lr"], weight_decay=numbers["weight_decay"],
                           momentum=numbers["momentum"], label_smoothing=numbers["label_smoothing"],
                           ce_weight=numbers["ce_weight"] if mode == "kd" else 1.0, losses=losses, augment=augment,
                           seed=seed)
