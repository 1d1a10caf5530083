"""Can this output be written? Checked before any work, so a bad ``--out`` is bad input (exit 2), not a
crash after training.

Nothing permanent is created: the nearest existing folder of the path gets a temporary probe file that
is removed at once (permission bits alone say nothing for root, and nothing about read-only or virtual
file systems such as ``/proc``).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> check_writable_dir(root / "runs" / "r1", "--out") == root / "runs" / "r1"
    True
    >>> (root / "runs").exists()  # nothing was created
    False
    >>> _ = (root / "a.txt").write_text("x")
    >>> check_writable_dir(root / "a.txt", "--out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --out '...a.txt' is a file, not a directory; pass a new or empty ...
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from studentnas.core.errors import BadInputError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the current folder for a relative path)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _probe(base: Path, path: Path, flag: str, example: str) -> None:
    """Raise unless a file can be created in the existing folder ``base`` (the probe is removed at once)."""
    where = "in it" if base == path else f"in '{base}'"
    try:
        fd, tmp = tempfile.mkstemp(dir=base, prefix=".studentnas-write-probe.")
    except OSError as err:
        raise BadInputError(f"{flag} '{path}' cannot be written: creating a file {where} fails "
                            f"({err.strerror or err}); pass a path you can write, e.g. {flag} {example}") from None
    os.close(fd)
    os.unlink(tmp)


def _check_can_create_in(path: Path, flag: str, example: str) -> None:
    """Raise unless new files can be made where ``path`` (not existing, or a file to replace) will go."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise BadInputError(f"{flag} '{path}' cannot be created: '{base}' is a file, not a directory; "
                            f"pass a path under a directory, e.g. {flag} {example}")
    _probe(base, path, flag, example)


def check_writable_file(path: str | Path, flag: str, example: str = "out.json") -> Path:
    """``path`` as a :class:`~pathlib.Path` when a file can be written there (a new file, or one to
    replace; missing folders may be created), else :class:`BadInputError` naming ``flag``, the path and
    the fix (``example`` is the suggested value). Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{flag} '{path}' is a directory; pass a file path such as "
                            f"{flag} {path / Path(example).name}")
    _check_can_create_in(path, flag, example)
    return path


def check_model_out(out: str | Path, example: str) -> Path:
    """``--out`` of a command that writes one model: it ends in ``.safetensors``, is not a directory and can
    be written (:func:`check_writable_file`); else :class:`BadInputError` with ``example`` as the fix.

    Example:
        >>> check_model_out("model.pt", "lm.safetensors")
        Traceback (most recent call last):
        ...
        studentnas.core.errors.BadInputError: --out must end in .safetensors, got 'model.pt'; e.g. --out lm.safetensors
    """
    path = Path(out)
    if path.suffix != ".safetensors":
        raise BadInputError(f"--out must end in .safetensors, got '{out}'; e.g. --out {example}")
    if path.is_dir():
        raise BadInputError(f"--out '{out}' is a directory; give a file path such as {path / example}")
    return check_writable_file(path, "--out", example=example)


def check_writable_dir(path: str | Path, flag: str, example: str = "runs/my-run") -> Path:
    """``path`` as a :class:`~pathlib.Path` when it is a writable directory or can be created as one, else
    :class:`BadInputError` naming ``flag``, the path and the fix (``example`` is the suggested value).
    Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{flag} '{path}' is a file, not a directory; pass a new or empty directory, "
                            f"e.g. {flag} {example}")
    if path.is_dir():
        _probe(path, path, flag, example)
    else:
        _check_can_create_in(path, flag, example)
    return path
