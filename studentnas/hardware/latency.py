"""Batch-1 CPU latency of students: measured once per (arch, input, device) and cached on disk.

A latency is the median of ``repeats`` timed forward passes after ``warmup`` untimed ones
(:func:`measure_latency_ms`, whose loop is :func:`median_forward_ms`), at batch 1, in ``channels_last`` (the fastest CPU
layout for convolutions, and the one the evaluator scores in), under ``torch.inference_mode`` and
with a fixed number of torch threads: ``STUDENTNAS_LATENCY_THREADS`` or 1. One thread is the
default because it is the least disturbed by other work on the machine; the thread count is part of
the device signature, so latencies measured with other counts are never mixed up.

Measurements are kept in ``latency.json`` in the cache folder (``$STUDENTNAS_CACHE_DIR``, else
``$XDG_CACHE_HOME/studentnas``, else ``~/.cache/studentnas``), keyed by device signature (CPU
model, CPU count, torch version, threads, layout) and then by arch key (arch id, a digest of the
space's config, input size and classes; the id alone is not enough because a teacher-centred
space gives the same genes other channel counts). Writers merge under a file lock and replace the
file atomically, so parallel workers never lose or tear each other's entries.

Example:
    >>> import tempfile
    >>> from studentnas import get_space
    >>> meter = LatencyMeter(cache=LatencyCache(tempfile.mkdtemp() + "/latency.json"), repeats=3)
    >>> space = get_space("nb201")
    >>> ms = meter.measure(space, space.smallest(), (3, 32, 32), num_classes=10)
    >>> ms > 0 and meter.measure(space, space.smallest(), (3, 32, 32), num_classes=10) == ms  # cached
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studentnas.core.arch import Arch
from studentnas.core.console import warn
from studentnas.core.errors import BadInputError
from studentnas.core.space import SearchSpace

THREADS_ENV = "STUDENTNAS_LATENCY_THREADS"
CACHE_ENV = "STUDENTNAS_CACHE_DIR"
CACHE_VERSION = 1
LAYOUT = "channels_last"



def measure_latency_ms(
    model: nn.Module, input_size: tuple[int, int, int], repeats: int = 20, warmup: int = 3, threads: int | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> float:
    """Median batch-1 CPU latency in ms over ``repeats`` runs after ``warmup`` runs, threads fixed.

    The input is drawn from a private generator (the global RNG is untouched) in ``memory_format``;
    the model's train/eval mode is restored afterwards. :class:`studentnas.hardware.latency.LatencyMeter`
    adds the on-disk cache.
    """
    prev = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        x = torch.randn(1, *input_size, generator=torch.Generator().manual_seed(0))
        return median_forward_ms(model, x.contiguous(memory_format=memory_format), repeats, warmup)
    finally:
        torch.set_num_threads(prev)


def median_forward_ms(model: nn.Module, x: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time in ms of ``model(x)`` over ``repeats`` runs after ``warmup`` untimed ones, in eval mode
    under ``torch.inference_mode`` with the current torch threads; the model's train/eval mode is restored.

    Example:
        >>> from torch import nn
        >>> median_forward_ms(nn.Linear(4, 2), torch.zeros(1, 4), repeats=3, warmup=1) > 0
        True
    """
    was_training = model.training
    model.eval()
    try:
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    finally:
        model.train(was_training)


def default_threads() -> int:
    """Torch threads used for latency: ``$STUDENTNAS_LATENCY_THREADS`` or 1."""
    text = os.environ.get(THREADS_ENV, "1")
    if not text.strip().isdigit() or int(text) < 1:
        raise BadInputError(f"{THREADS_ENV}={text!r} must be a positive whole number of threads, e.g. 1 or 4")
    return int(text)


def cache_dir() -> Path:
    """The folder of studentnas' on-disk caches (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "studentnas"


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_signature(threads: int) -> str:
    """Everything a latency depends on besides the network: CPU, CPU count, torch, threads, layout."""
    return f"cpu:{cpu_name()}|{os.cpu_count()} cpus|torch {torch.__version__}|{threads} threads|{LAYOUT}"


def arch_key(space: SearchSpace, arch: Arch, input_size: tuple[int, int, int], num_classes: int) -> str:
    """``<arch id>/<space config digest>/<C>x<H>x<W>/<classes>``: what one measurement is valid for."""
    digest = hashlib.sha1(json.dumps(space.config(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{arch.id}/{digest}/{'x'.join(map(str, input_size))}/{num_classes}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` + '.lock' (fcntl where it exists; no lock elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: last writer wins, entries are only re-measured
        yield
        return
    with open(f"{path}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class LatencyCache:
    """Milliseconds per (device signature, section, key) in one JSON file shared by processes.

    Sections: ``archs`` (whole-network measurements) and ``layers`` (the estimator's lookup table).
    The file is read once and re-read (under the lock) on every :meth:`update`.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else cache_dir() / "latency.json"
        self._data: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": CACHE_VERSION, "devices": {}}
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            warn(f"latency cache {self.path} is unreadable ({err}); starting it afresh")
            return {"version": CACHE_VERSION, "devices": {}}
        if data.get("version") != CACHE_VERSION or not isinstance(data.get("devices"), dict):
            return {"version": CACHE_VERSION, "devices": {}}
        return data

    def section(self, device: str, section: str) -> dict[str, float]:
        """All entries of one device and section (read-only view)."""
        if self._data is None:
            self._data = self._read()
        return self._data["devices"].get(device, {}).get(section, {})

    def get(self, device: str, section: str, key: str) -> float | None:
        return self.section(device, section).get(key)

    def update(self, device: str, section: str, values: Mapping[str, float]) -> None:
        """Merge ``values`` into the file (lock, re-read, merge, atomic replace)."""
        if not values:
            return
        from studentnas.runfiles.atomic import write_json_atomic

        with _locked(self.path):
            data = self._read()
            data["devices"].setdefault(device, {}).setdefault(section, {}).update(
                {k: float(v) for k, v in values.items()})
            write_json_atomic(self.path, data)
        self._data = data


class LatencyMeter:
    """Measures (or looks up) the batch-1 CPU latency of archs, see the module docstring.

    Args:
        threads: torch threads while timing (default: :func:`default_threads`).
        repeats, warmup: timed and untimed forward passes.
        cache: where measurements live; ``None`` gives the default file.
    """

    def __init__(self, threads: int | None = None, repeats: int = 20, warmup: int = 3,
                 cache: LatencyCache | None = None):
        if repeats < 1 or warmup < 0:
            raise BadInputError(f"latency needs repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
        self.threads = threads if threads is not None else default_threads()
        self.repeats, self.warmup = repeats, warmup
        self.cache = cache if cache is not None else LatencyCache()
        self.device = device_signature(self.threads)

    def measure_model(self, model: nn.Module, input_size: tuple[int, int, int]) -> float:
        """Median latency in ms of ``model`` (converted to channels_last in place; not cached)."""
        model.to(memory_format=torch.channels_last)
        return measure_latency_ms(model, input_size, repeats=self.repeats, warmup=self.warmup, threads=self.threads,
                                  memory_format=torch.channels_last)

    def cached(self, space: SearchSpace, arch: Arch, input_size: tuple[int, int, int],
               num_classes: int) -> float | None:
        """The cached latency of ``arch`` on this device, or None."""
        return self.cache.get(self.device, "archs", arch_key(space, arch, input_size, num_classes))

    def measure(self, space: SearchSpace, arch: Arch, input_size: tuple[int, int, int], num_classes: int,
                model: nn.Module | None = None) -> float:
        """Latency of ``arch`` in ms: from the cache, else measured on ``model`` (built when None) and cached.

        Weights do not change dense CPU latency, so any build of the arch (e.g. the evaluator's
        seeded student) may be passed as ``model``.
        """
        key = arch_key(space, arch, tuple(input_size), num_classes)
        hit = self.cache.get(self.device, "archs", key)
        if hit is not None:
            return hit
        if model is None:
            model = space.build(arch, num_classes=num_classes, in_chans=input_size[0])
        ms = self.measure_model(model, tuple(input_size))
        self.cache.update(self.device, "archs", {key: ms})
        return ms
