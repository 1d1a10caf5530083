"""Atomic file writes: a temporary file beside the target, renamed into place only when complete.

A reader (or a resumed run) never sees half a file, and a crash leaves the old file or none. The
result gets the permissions any new file gets here (``0666 & ~umask``), not ``mkstemp``'s private 0600,
so run directories stay readable by whoever can read the run.

Example:
    >>> import tempfile
    >>> from pathlib import Path
from typing import Any
    >>> p = write_atomic(Path(tempfile.mkdtemp()) / "a" / "b.txt", lambda tmp: Path(tmp).write_text("hi"))
    >>> p.read_text()
    'hi'
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[str], object], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder (created if needed), then rename it to
    ``path``; on any error the temporary file is removed and the error propagates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` atomically (:func:`write_atomic`); NaN is refused."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))
