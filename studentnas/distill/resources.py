"""The Ray side of ``studentnas distill``: what one trial asks for (``--resources-per-trial``), whether the
cluster can give it, and starting or joining Ray.

Example:
    >>> need = parse_resources("cpu=2")
    >>> need, check_resources(need, [{"CPU": 4}], {"CPU": 3})
    ({'cpu': 2.0}, None)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

from studentnas.core.errors import BadInputError

RESOURCE_KEYS = {"cpu": "CPU", "gpu": "GPU"}


def parse_resources(text: str | dict | None) -> dict[str, float]:
    """``--resources-per-trial``: ``cpu=2``, a bare number of CPUs, or a JSON object (``gpu`` must be 0: the
    trainer runs on CPU).

    >>> parse_resources("cpu=2,gpu=0"), parse_resources("3"), parse_resources(None)
    ({'cpu': 2.0, 'gpu': 0.0}, {'cpu': 3.0}, {'cpu': 1.0})
    """
    if text is None:
        return {"cpu": 1.0}
    if isinstance(text, dict):
        raw = dict(text)
    else:
        stripped = text.strip()
        try:
            raw = json.loads(stripped) if stripped.startswith("{") else None
        except json.JSONDecodeError:
            raw = None
        if raw is None:
            raw = {}
            for part in filter(None, (p.strip() for p in stripped.split(","))):
                key, eq, value = part.partition("=")
                raw["cpu" if not eq else key.strip().lower()] = key if not eq else value
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key not in RESOURCE_KEYS:
            raise BadInputError(f"--resources-per-trial: unknown resource '{key}'; valid: cpu, gpu "
                                "(e.g. cpu=2 or cpu=1,gpu=1)")
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number) or number < 0:
            raise BadInputError(f"--resources-per-trial: {key}={value!r} is not a number >= 0; e.g. cpu=2")
        out[key] = number
    if out.get("gpu", 0) > 0:
        raise BadInputError(f"--resources-per-trial gpu={out['gpu']:g}: the distillation trainer runs on CPU only; "
                            "drop gpu= (give each trial more CPUs with cpu=N instead)")
    out.setdefault("cpu", 1.0)
    if out["cpu"] <= 0:
        raise BadInputError("--resources-per-trial: cpu must be > 0 (a trial runs on CPU threads); e.g. cpu=1")
    return out


def check_resources(need: dict[str, float], nodes: Sequence[dict[str, float]], available: dict[str, float]) -> None:
    """Refuse a per-trial request no node can hold, or that the cluster has no free capacity for now.

    ``nodes`` holds each alive node's total resources (Ray names: ``CPU``, ``GPU``); ``available`` the
    cluster's free resources. Better a clear error than a Tune run that waits forever.

    >>> check_resources({"cpu": 2}, [{"CPU": 1}, {"CPU": 1}], {"CPU": 2})
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --resources-per-trial cpu=2: no node of the Ray cluster has 2 CPUs (the largest has 1, 2 in all; a trial runs on one node); ask for cpu=1 or fewer, or add a bigger node
    >>> check_resources({"cpu": 1}, [{"CPU": 4}], {"CPU": 0})
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --resources-per-trial cpu=1: the Ray cluster has no free CPUs (0 of 4 free; other jobs hold the rest); wait for them or stop them, or lower --resources-per-trial
    """  # noqa: E501
    for key, ray_key in RESOURCE_KEYS.items():
        amount = need.get(key, 0.0)
        if amount <= 0:
            continue
        unit = f"{ray_key}s"
        largest = max((n.get(ray_key, 0.0) for n in nodes), default=0.0)
        total = sum(n.get(ray_key, 0.0) for n in nodes)
        if largest < amount:
            fix = f"ask for {key}={largest:g} or fewer" if largest > 0 else f"drop {key}= from it"
            raise BadInputError(f"--resources-per-trial {key}={amount:g}: no node of the Ray cluster has {amount:g} "
                                f"{unit} (the largest has {largest:g}, {total:g} in all; a trial runs on one node); "
                                f"{fix}, or add a bigger node")
        free = available.get(ray_key, 0.0)
        if free < amount:
            raise BadInputError(f"--resources-per-trial {key}={amount:g}: the Ray cluster has "
                                f"{'no free ' + unit if free == 0 else f'only {free:g} free {unit}'} ({free:g} of "
                                f"{total:g} free; other jobs hold the rest); wait for them or stop them, or lower "
                                "--resources-per-trial")


def connect_ray(address: str | None, cpus: int | None) -> bool:
    """Start a local Ray (``cpus`` CPUs, default all) or join ``address``; True if this call started it.

    Every worker runs the torchvision shim first (``worker_process_setup_hook``), as in ``search``.
    """
    import ray

    from studentnas.engine.parallel import init_ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    init_ray(address, cpus or os.cpu_count() or 1)
    return True


def check_cluster(need: dict[str, float]) -> None:
    """:func:`check_resources` against the connected Ray cluster's alive nodes and free resources."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    check_resources(need, nodes, ray.available_resources())
