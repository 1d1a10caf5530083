"""What long work tells the person running it: progress bars, status lines and warnings, all on stderr.

:class:`Progress` is a tqdm bar with ETA on a terminal, plain log lines otherwise, nothing when quiet;
:func:`sayer` gives a stage its status-line printer (silent under ``--quiet``); :func:`warn` prints
one ``studentnas: warning:`` line. Stdout stays for results (tables, JSON) that other tools read.

Example:
    >>> with Progress(total=3, desc="demo", quiet=True) as bar:
    ...     bar.update(1, best=1.5)
    >>> say = sayer(quiet=True)
    >>> say("not shown")
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO


class Progress:
    """Counts finished units of work. ``update(n, **stats)`` shows ``stats`` beside the count."""

    def __init__(self, total: int, desc: str, quiet: bool = False, initial: int = 0, stream: TextIO | None = None,
                 log_every: float = 10.0, unit: str = "cand"):
        self.total, self.desc, self.quiet, self.count = total, desc, quiet, initial
        self.stream = stream or sys.stderr
        self.log_every = log_every
        self._bar = None
        self._start = time.monotonic()
        self._last_log = 0.0
        self._initial = initial
        if not quiet and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream, dynamic_ncols=True,
                             unit=unit)

    def update(self, n: int = 1, **stats: Any) -> None:
        self.count += n
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(n)
            if stats:
                self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in stats.items()})
            return
        now = time.monotonic()
        if now - self._last_log >= self.log_every or self.count >= self.total:
            self._last_log = now
            done = self.count - self._initial
            elapsed = now - self._start
            eta = elapsed / done * (self.total - self.count) if done else float("nan")
            extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())
            print(f"{self.desc}: {self.count}/{self.total} elapsed {elapsed:.0f}s eta {eta:.0f}s {extra}".rstrip(),
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def sayer(quiet: bool, prefix: str = "") -> Callable[[str], None]:
    """A status-line printer for one stage: ``prefix + message`` on stderr, or nothing when ``quiet``."""
    if quiet:
        return lambda _message: None
    return lambda message: print(f"{prefix}{message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """One ``studentnas: warning:`` line on stderr (shown even under ``--quiet``)."""
    print(f"studentnas: warning: {message}", file=sys.stderr, flush=True)
