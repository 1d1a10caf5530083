"""The proxies a benchmark scores, and one cell scored by all of them (``studentnas bench proxies`` and
``bench search``; the drivers are :mod:`~studentnas.bench.proxy_bench` and :mod:`~studentnas.bench.search_bench`).

``params`` and ``macs`` are always scored first, as the baselines. A journalled score is reused
only while its proxy's code is unchanged (:func:`proxy_fingerprint`).

Example:
    >>> [p.name for p in resolve_proxies("nwot")]
    ['params', 'macs', 'nwot']
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from studentnas.core.errors import BadInputError
from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.registry import PROXIES
from studentnas.engine.evaluate import build_student

BASELINES = ("params", "macs")
_PROXY_ERRORS = (RuntimeError, ValueError, ArithmeticError, torch.linalg.LinAlgError)


def teacher_proxies() -> list[str]:
    """Registered proxies that need a teacher, which the NB201 bench has not (they are left out by default)."""
    return [n for n in PROXIES.list() if "teacher" in PROXIES.get(n).needs]


def resolve_proxies(proxies: str | Sequence[str] | None, has_teacher: bool = False) -> list[Proxy]:
    """The proxies to score: the baselines first, then the named ones (default: every registered proxy,
    less those that need a teacher when there is none). A named proxy that needs a teacher without
    ``--teacher`` is an error, raised before any work."""
    if proxies is None:
        names = [n for n in PROXIES.list() if has_teacher or n not in teacher_proxies()]
    else:
        names = [p.strip() for p in (proxies.split(",") if isinstance(proxies, str) else proxies) if p.strip()]
        if not names:
            raise BadInputError(f"--proxies is empty; pass NAME[,NAME...] (known: {', '.join(PROXIES.list())})")
    ordered = list(dict.fromkeys([*BASELINES, *names]))
    instances = [PROXIES.get(name)() for name in ordered]
    for proxy in instances:
        if "teacher" in proxy.needs and not has_teacher:
            raise BadInputError(f"proxy '{proxy.name}' needs a teacher, but none was given; pass --teacher NAME "
                                "(a timm model, e.g. resnet18, random init unless --teacher-checkpoint) or drop "
                                f"'{proxy.name}' from --proxies")
    return instances


def proxy_fingerprint(proxy: Proxy) -> str:
    """A short hash of the source files of ``proxy``'s module and of the sibling modules it imports
    (e.g. a shared-pass helper): a journalled score is reused only while this is unchanged.

    Example:
        >>> import studentnas
        >>> len(proxy_fingerprint(studentnas.get_proxy("params")))
        12
    """
    module = sys.modules[type(proxy).__module__]
    package = module.__name__.rpartition(".")[0]
    names = {module.__name__}
    for value in vars(module).values():
        owner = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(owner, str) and package and owner.startswith(package + "."):
            names.add(owner)
    digest = hashlib.sha256()
    for name in sorted(names):
        path = getattr(sys.modules.get(name), "__file__", None)
        digest.update(name.encode() + (Path(path).read_bytes() if path and Path(path).is_file() else b"?"))
    return digest.hexdigest()[:12]


def score_cell(space: Any, arch_text: str, proxies: Sequence[Proxy], ctx: ProxyContext, seed: int,
               input_size: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    """Build one cell's network and score it with every proxy through one candidate view.

    Returns the journal record ``{"arch", "scores", "seconds", "errors"}``; a proxy that raises or
    returns a non-finite value gets a nan score and its error text (a BadInputError propagates).
    """
    start = time.perf_counter()
    arch = space.from_string(arch_text)
    student = build_student(space, arch, seed, num_classes, input_size[0]).to(memory_format=torch.channels_last)
    view = ctx.for_candidate(space.cost(arch, input_size, num_classes))
    seconds: dict[str, float] = {"build": time.perf_counter() - start}
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    for proxy in proxies:
        t0 = time.perf_counter()
        try:
            value = proxy.score(student, view)
        except BadInputError:
            raise
        except _PROXY_ERRORS as err:
            value, errors[proxy.name] = math.nan, f"{type(err).__name__}: {err}"[:300]
        seconds[proxy.name] = time.perf_counter() - t0
        if not math.isfinite(value) and proxy.name not in errors:
            errors[proxy.name] = f"returned {value}"
        scores[proxy.name] = value if math.isfinite(value) else math.nan
    seconds["total"] = time.perf_counter() - start
    return {"arch": arch_text, "scores": scores, "seconds": seconds, "errors": errors}
