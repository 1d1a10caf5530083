"""The library of the ``resnet`` Puzzle family: its options, the replacements of each block and their builders.

:func:`parse_options` checks the grid's options, :func:`single_replacements` and :func:`width_replacements`
list a block's (and a stage pair's) replacements, and :data:`BUILDERS` makes the module of each
replacement kind from the parent (see :mod:`studentnas.puzzle.families.resnet` for the whole library).

Example:
    >>> parse_options({"widths": [0.5, 0.5], "merge": False})["widths"]
    (0.5,)
    >>> parse_options({"width": 0.5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: unknown ResNet library option(s) 'width'; valid options: widths, basic, ...
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.puzzle.decompose import Decomposed
from studentnas.puzzle.families.resnet_blocks import PRUNERS, basic_from_bottleneck, linear_block, width_count
from studentnas.puzzle.library import LayerInfo, Replacement

#: The library grid and its defaults; ``replacements(dec, options)`` accepts exactly these keys.
DEFAULT_OPTIONS: dict[str, Any] = {
    "widths": (0.75, 0.5, 0.25),  # width-pruned blocks of the parent's type
    "basic": True,  # a basic block in place of a bottleneck
    "linear": True,  # one 1x1 conv + BN
    "noop": True,  # identity where the stride is 1 and C_in == C_out
    "merge": True,  # one block for two consecutive blocks of a stage
    "merge_widths": (1.0, 0.5),
}
_FRACTION_KEYS = ("widths", "merge_widths")

# ---------------------------------------------------------------------------------------------------------------------
# Options


def _fractions(key: str, value: object) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise BadInputError(f"ResNet library option {key}={value!r} must be a list of fractions in (0, 1], "
                            f"e.g. {key}={DEFAULT_OPTIONS[key]}")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1]
    if bad:
        raise BadInputError(f"ResNet library option {key} has {bad[0]!r}; every width must be a fraction in (0, 1], "
                            f"e.g. {key}={DEFAULT_OPTIONS[key]}")
    return tuple(dict.fromkeys(float(v) for v in value))


def parse_options(options: Mapping[str, object] | None) -> dict[str, Any]:
    """``options`` merged over :data:`DEFAULT_OPTIONS`, validated (unknown keys and bad values are bad input)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise BadInputError(f"unknown ResNet library option(s) {', '.join(map(repr, unknown))}; "
                            f"valid options: {', '.join(DEFAULT_OPTIONS)}")
    merged = {**DEFAULT_OPTIONS, **options}
    for key, value in merged.items():
        if key in _FRACTION_KEYS:
            merged[key] = _fractions(key, value)
        elif not isinstance(value, bool):
            raise BadInputError(f"ResNet library option {key}={value!r} must be true or false")
    return merged


# ---------------------------------------------------------------------------------------------------------------------
# The library


def width_replacements(info: LayerInfo, kind: str, widths: Sequence[float], start: int, end: int) -> list[Replacement]:
    """One replacement per width, skipping widths that round to a mid-channel count already listed."""
    seen: set[int] = set()
    out = []
    for width in widths:
        count = width_count(width, info.extra["mid_channels"])
        if count not in seen:
            seen.add(count)
            out.append(Replacement(start, end, kind, {"width": width}))
    return out


def _noop_allowed(info: LayerInfo) -> bool:
    return info.extra["stride"] == 1 and info.in_shape == info.out_shape


def single_replacements(info: LayerInfo, opts: Mapping[str, Any]) -> list[Replacement]:
    """The one-block replacements of block ``info`` under the parsed ``opts``: ``teacher`` first, then the
    narrower, basic, linear and noop variants the block's kind allows (an ``unknown`` block: ``teacher`` only)."""
    i = info.index
    reps = [Replacement(i, i + 1, "teacher")]
    if info.kind == "unknown":
        return reps
    reps += width_replacements(info, info.kind, opts["widths"], i, i + 1)
    if info.kind == "bottleneck" and opts["basic"]:
        reps.append(Replacement(i, i + 1, "basic"))
    if opts["linear"]:
        reps.append(Replacement(i, i + 1, "linear"))
    if opts["noop"] and _noop_allowed(info):
        reps.append(Replacement(i, i + 1, "noop"))
    return reps


def mergeable(first: LayerInfo, second: LayerInfo) -> bool:
    """Two known blocks of one stage whose second keeps shape (so the first's mapping covers the pair)."""
    return ("unknown" not in (first.kind, second.kind) and first.stage == second.stage
            and _noop_allowed(second) and first.out_shape == second.out_shape)


# ---------------------------------------------------------------------------------------------------------------------
# Builders: one per replacement kind


def _generator(replacement: Replacement) -> torch.Generator:
    return torch.Generator().manual_seed(int(replacement.id, 16))


def _width_of(rep: Replacement) -> float:
    key = "merge_widths" if rep.kind == "merge" else "widths"
    return _fractions(key, [rep.options.get("width", 1.0)])[0]


def _build_teacher(dec: Decomposed, rep: Replacement) -> nn.Module:
    copies = [copy.deepcopy(m) for m in dec.modules_for(rep.start, rep.end)]
    return copies[0] if len(copies) == 1 else nn.Sequential(*copies)


def _build_width(dec: Decomposed, rep: Replacement) -> nn.Module:
    info, block = dec.infos[rep.start], dec.layers[rep.start]
    if rep.kind == "basic" and "width" not in rep.options:  # a basic block standing in for a bottleneck
        if info.kind != "bottleneck":
            raise BadInputError(f"{rep.label}: a basic block without a width replaces only a bottleneck, "
                                f"{info.name} is {info.kind}; give {{'width': f}} instead")
        return basic_from_bottleneck(block, _generator(rep))
    if rep.kind != info.kind or "width" not in rep.options:
        raise BadInputError(f"{rep.label}: {info.name} is a {info.kind} block; width-prune it as kind "
                            f"'{info.kind}' with {{'width': f}}")
    return PRUNERS[info.kind](block, _width_of(rep))


def _build_merge(dec: Decomposed, rep: Replacement) -> nn.Module:
    first, second = dec.infos[rep.start], dec.infos[rep.end - 1]
    if rep.width != 2 or not mergeable(first, second):
        raise BadInputError(f"{rep.label}: a merge covers two consecutive shape-compatible blocks of one stage; "
                            f"{first.name} (stage {first.stage}) and {second.name} (stage {second.stage}) are not")
    return PRUNERS[first.kind](dec.layers[rep.start], _width_of(rep))


def _build_linear(dec: Decomposed, rep: Replacement) -> nn.Module:
    return linear_block(dec.layers[rep.start], dec.infos[rep.start], _generator(rep))


def _build_noop(dec: Decomposed, rep: Replacement) -> nn.Module:
    info = dec.infos[rep.start]
    if not _noop_allowed(info):
        raise BadInputError(f"{rep.label}: a no-op needs stride 1 and equal input/output shapes; {info.name} maps "
                            f"{info.in_shape} to {info.out_shape} with stride {info.extra['stride']}")
    return nn.Identity()


BUILDERS: dict[str, Callable[[Decomposed, Replacement], nn.Module]] = {
    "teacher": _build_teacher, "bottleneck": _build_width, "basic": _build_width, "linear": _build_linear,
    "noop": _build_noop, "merge": _build_merge,
}


def check_span(dec: Decomposed, rep: Replacement) -> None:
    """Refuse a replacement this library cannot build on ``dec``: an unknown kind, a span past the last
    block, a multi-block span other than ``merge``, or anything but ``teacher`` on an ``unknown`` block."""
    if rep.kind not in BUILDERS:
        raise BadInputError(f"unknown ResNet replacement kind '{rep.kind}'; known kinds: {', '.join(BUILDERS)}")
    if rep.end > len(dec.layers):
        raise BadInputError(f"{rep.label} ends past the teacher's last layer {len(dec.layers) - 1}")
    if rep.width > 1 and rep.kind not in ("merge", "teacher"):
        raise BadInputError(f"{rep.label}: only 'merge' spans several layers; use a single-layer replacement")
    unknown = [dec.infos[i].name for i in rep.span if dec.infos[i].kind == "unknown"]
    if unknown and not rep.is_teacher:
        raise BadInputError(f"{rep.label}: block(s) {', '.join(unknown)} are of a kind this library does not "
                            "understand and are kept as-is; only 'teacher' replaces them")

