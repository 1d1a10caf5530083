"""The resume journal of a proxy benchmark: ``OUT.partial.jsonl`` beside ``--json OUT``.

Line 1 is a header ``{"journal": ..., "identity": {...}}`` holding everything a score depends on
(space, dataset, data, batch size, seed). Every further line is one scored cell, appended, flushed
and fsynced as soon as the cell is done (:class:`studentnas.runfiles.journal.Journal`):
``{"arch", "scores", "seconds", "errors"}``, with ``null`` for a failed score. On a rerun with the
same identity, cells already in the journal with every requested proxy (and the same proxy code
fingerprints, see ``proxy_suite.proxy_fingerprint``) are not scored again; a cell scored again (for a
new or changed proxy) is superseded by its later line. The journal is a cache, so unreadable lines
(one cut short by a kill, or any other that does not read) are named with their numbers in one
warning and their cells scored again; a torn last line is cut off first. The journal is kept after
the final JSON is written, so a later run with more ``--samples`` or more proxies only scores what
is new.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "b.json.partial.jsonl"
    >>> j = Journal(path, {"seed": 0})
    >>> j.open(fresh=False)
    {}
    >>> j.append({"arch": "a", "scores": {"nwot": 1.0}, "seconds": {}, "errors": {}}); j.close()
    >>> sorted(Journal(path, {"seed": 0}).open(fresh=False))
    ['a']
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from studentnas.core.console import warn
from studentnas.core.errors import BadInputError
from studentnas.runfiles.journal import Journal as JsonlJournal

JOURNAL_KIND = "studentnas bench proxies"


def journal_path(out: str | Path) -> Path:
    """``OUT.partial.jsonl`` for ``--json OUT``.

    Example:
        >>> journal_path("/tmp/bench.json").name
        'bench.json.partial.jsonl'
    """
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN), recursively.

    Example:
        >>> json_safe({"a": [1.0, float("nan")]})
        {'a': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _cell(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("arch"), str):
        raise TypeError("a cell record is a JSON object with an 'arch' string")
    return value


class Journal:
    """Per-cell records after an identity header, on a :class:`studentnas.runfiles.journal.Journal` (append +
    flush + fsync). :meth:`open` returns the finished cells."""

    def __init__(self, path: str | Path, identity: dict[str, Any]):
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity))  # normalised as it reads back (tuples -> lists)
        self.lines = JsonlJournal(self.path, parse=_cell, has_header=True)
        self._open = False

    def _read(self) -> dict[str, dict[str, Any]]:
        header = self.lines.header()
        if not isinstance(header, dict) or header.get("journal") != JOURNAL_KIND:
            raise BadInputError(f"'{self.path}' is not a bench journal (its first line is no {JOURNAL_KIND!r} "
                                "header); delete it or pass --fresh")
        theirs = header.get("identity", {})
        diffs = [f"{key} was {theirs.get(key)!r}, now {value!r}" for key, value in self.identity.items()
                 if theirs.get(key) != value]
        if diffs:
            raise BadInputError(f"cannot resume from '{self.path}': {'; '.join(diffs)}; rerun with the earlier "
                                "settings, pass --fresh to start over, or choose another --json path")
        cells, bad = self.lines.scan()
        torn = self.lines.torn_line()
        if torn is not None:
            bad.append(f"line {torn} (cut short by a kill)")
        if bad:  # a cache: those cells are scored again rather than refusing the run
            warn(f"ignored {len(bad)} unreadable line(s) of '{self.path}': {'; '.join(bad)}; those cells are "
                 "scored again")
        return {record["arch"]: record for record in cells}

    def open(self, fresh: bool) -> dict[str, dict[str, Any]]:
        """Open for appending; returns ``{arch: record}`` already journalled (none when ``fresh``)."""
        resume = not fresh and self.path.is_file() and self.path.stat().st_size > 0
        records = self._read() if resume else {}
        if resume:
            self.lines.repair()  # cut off a line cut short by a kill
        else:
            self.lines.start({"journal": JOURNAL_KIND, "identity": self.identity})
        self._open = True
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Write one cell's record (non-finite floats as null) and fsync it."""
        if not self._open:
            raise RuntimeError("Journal.append before Journal.open")
        self.lines.append(json_safe(record))

    def close(self) -> None:
        """End appending (a later :meth:`append` needs :meth:`open` again)."""
        self._open = False
