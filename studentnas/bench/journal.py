"""The resume journal of a proxy benchmark: ``OUT.partial.jsonl`` beside ``--json OUT``.

Line 1 is a header ``{"journal": ..., "identity": {...}}`` holding everything a score depends on
(space, dataset, data, batch size, seed). Every further line is one scored cell, appended and
flushed as soon as the cell is done: ``{"arch", "scores", "seconds", "errors"}``, with ``null`` for
a failed score. On a rerun with the same identity, cells already in the journal with every
requested proxy (and the same proxy code fingerprints, see ``proxy_suite.proxy_fingerprint``) are
not scored again; a cell scored again (for a new or changed proxy) is superseded by its later line.
A line cut short by a kill is reported and ignored. The journal is kept after the
final JSON is written, so a later run with more ``--samples`` or more proxies only scores what is new.

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
import sys
from pathlib import Path
from typing import IO, Any

from studentnas.core.errors import BadInputError

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


class Journal:
    """Append-only per-cell records with an identity header. :meth:`open` returns the finished cells."""

    def __init__(self, path: str | Path, identity: dict[str, Any]):
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity))  # normalised as it reads back (tuples -> lists)
        self._handle: IO[str] | None = None

    def _read(self) -> dict[str, dict[str, Any]]:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("journal") != JOURNAL_KIND:
            raise BadInputError(f"'{self.path}' is not a bench journal (its first line is no {JOURNAL_KIND!r} "
                                "header); delete it or pass --fresh")
        theirs = header.get("identity", {})
        diffs = [f"{key} was {theirs.get(key)!r}, now {value!r}" for key, value in self.identity.items()
                 if theirs.get(key) != value]
        if diffs:
            raise BadInputError(f"cannot resume from '{self.path}': {'; '.join(diffs)}; rerun with the earlier "
                                "settings, pass --fresh to start over, or choose another --json path")
        records: dict[str, dict[str, Any]] = {}
        bad = 0
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("arch"), str):
                bad += 1
                continue
            records[record["arch"]] = record
        if bad:
            print(f"studentnas bench: warning: ignored {bad} unreadable line(s) of '{self.path}' (a run killed "
                  "while writing); those cells are scored again", file=sys.stderr, flush=True)
        return records

    def open(self, fresh: bool) -> dict[str, dict[str, Any]]:
        """Open for appending; returns ``{arch: record}`` already journalled (none when ``fresh``)."""
        resume = not fresh and self.path.is_file() and self.path.stat().st_size > 0
        records = self._read() if resume else {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            ends_cleanly = self.path.read_bytes().endswith(b"\n")
            self._handle = self.path.open("a", encoding="utf-8")
            if not ends_cleanly:
                self._handle.write("\n")  # finish a line cut short by a kill
        else:
            self._handle = self.path.open("w", encoding="utf-8")
            self._handle.write(json.dumps({"journal": JOURNAL_KIND, "identity": self.identity}) + "\n")
        self._handle.flush()
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Write one cell's record and flush it to the OS."""
        if self._handle is None:
            raise RuntimeError("Journal.append before Journal.open")
        self._handle.write(json.dumps(json_safe(record)) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
