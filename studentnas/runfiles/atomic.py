"""Atomic file writes: a temporary file beside the target, renamed into place only when complete.

A reader (or a resumed run) never sees half a file, and a crash leaves the old file or none. The
result gets the permissions any new file gets here (``0666 & ~umask``), not ``mkstemp``'s private 0600,
so run directories stay readable by whoever can read the run.

The temporary file is hidden and names its writer: ``.NAME.HOST.PID.RANDOM.tmp``. A writer killed
before its rename leaves that file behind; the next :func:`write_atomic` to the same target removes
the temporary files of that target whose writer ran on this host and is no longer alive. Temporary
files of live processes, and of other hosts (Ray workers writing to a shared folder: their pids mean
nothing here), are left alone.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = write_atomic(Path(tempfile.mkdtemp()) / "a" / "b.txt", lambda tmp: Path(tmp).write_text("hi"))
    >>> p.read_text()
    'hi'
    >>> stale = p.parent / f".b.txt.{this_host()}.{2**22 + 1}.abc123_x.tmp"  # above any pid: a dead writer
    >>> _ = stale.write_text("half"); _ = write_atomic(p, lambda tmp: Path(tmp).write_text("again"))
    >>> stale.exists(), sorted(f.name for f in p.parent.iterdir())
    (False, ['b.txt'])
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def this_host() -> str:
    """This machine's name as temporary file names carry it (letters, digits, ``_`` and ``-`` only).

    >>> "." in this_host()
    False
    """
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts as alive).

    >>> pid_alive(os.getpid()), pid_alive(2**22 + 1)
    (True, False)
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temps(path: str | Path, suffix: str = ".tmp") -> list[Path]:
    """Remove the temporary files :func:`write_atomic` left for ``path`` from dead writers on this host;
    returns what was removed. Files of live writers, of other hosts and of other targets are kept."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"([A-Za-z0-9_-]+)\.(\d+)\.[A-Za-z0-9_]+" + re.escape(suffix))
    host, removed = this_host(), []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match.group(1) != host or pid_alive(int(match.group(2))):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # another writer cleaned it first
        removed.append(Path(entry.path))
    return removed


def write_atomic(path: str | Path, write: Callable[[str], object], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder (created if needed), then rename it to
    ``path``; on any error the temporary file is removed and the error propagates. Temporary files of
    ``path`` left by dead writers on this host are removed first (:func:`remove_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, suffix)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{this_host()}.{os.getpid()}.", suffix=suffix)
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
