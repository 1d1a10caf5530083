"""Append-only JSON-lines journals: the one way every resumable stage records finished work.

A journal is a file of one JSON object per line. Each finished unit of work (a search candidate, a
distillation trial, a benchmark cell, a Puzzle score, a study training) is appended as one line,
flushed and fsynced before the caller goes on, so a kill at any moment loses at most the line being
written. Reading tolerates exactly that: a last line without its newline (torn by a kill) is ignored,
and :meth:`Journal.append` cuts it off before writing. A complete line that is not valid JSON (or that
the caller's ``parse`` rejects) is corruption, not a kill: :meth:`Journal.read` reports *every* such
line with its number in one :class:`~studentnas.core.errors.BadInputError`, naming the fix.

Resume by key: :meth:`Journal.latest` maps a key of each record to its last record, so work done
again (a rescored cell) supersedes the earlier line.

Example:
    >>> import tempfile
    >>> j = Journal(Path(tempfile.mkdtemp()) / "work.jsonl")
    >>> j.append({"id": "a", "score": 1.0}); j.append({"id": "b", "score": 2.0}); j.append({"id": "a", "score": 3.0})
    >>> [r["score"] for r in j.read()]
    [1.0, 2.0, 3.0]
    >>> {k: r["score"] for k, r in j.latest(lambda r: r["id"]).items()}
    {'a': 3.0, 'b': 2.0}
    >>> with j.path.open("a") as fh:  # a kill in the middle of a line
    ...     _ = fh.write('{"id": "c", "sco')
    >>> len(j.read())
    3
    >>> j.append({"id": "c", "score": 4.0}); [r["id"] for r in j.read()]
    ['a', 'b', 'a', 'c']
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from studentnas.core.errors import BadInputError

T = TypeVar("T")

#: Parse failures a ``parse`` function may raise for a corrupt record (besides JSON's own).
PARSE_ERRORS = (ValueError, KeyError, TypeError)


def _identity(record: Any) -> Any:
    return record


def dumps_line(record: Any) -> str:
    """One journal line: compact JSON with sorted keys; NaN/inf are refused (JSON has none)."""
    return json.dumps(record, sort_keys=True, allow_nan=False) + "\n"


class Journal(Generic[T]):
    """An append-only JSON-lines file; see the module docstring.

    Args:
        path: the ``.jsonl`` file (created with its folder on the first append).
        parse: turns one decoded JSON value into a record (default: the value itself); raising one of
            :data:`PARSE_ERRORS` marks the line corrupt.
        fix: what the corruption error tells the user to do.
    """

    def __init__(self, path: str | Path, parse: Callable[[Any], T] = _identity,
                 fix: str = "remove or repair those lines to resume"):
        self.path = Path(path)
        self.parse = parse
        self.fix = fix

    def exists(self) -> bool:
        return self.path.is_file()

    def lines(self) -> Iterable[tuple[int, bytes]]:
        """``(line number, raw bytes)`` of every complete line (a torn last line is left out)."""
        if not self.path.is_file():
            return []
        raw = self.path.read_bytes()
        return [(n, line) for n, line in enumerate(raw.splitlines(keepends=True), start=1) if line.endswith(b"\n")]

    def read(self) -> list[T]:
        """Every complete record in file order; one error naming every corrupt line otherwise."""
        out: list[T] = []
        bad: list[str] = []
        for number, line in self.lines():
            if not line.strip():
                continue
            try:
                out.append(self.parse(json.loads(line)))
            except (json.JSONDecodeError, *PARSE_ERRORS) as err:
                bad.append(f"line {number} ({type(err).__name__}: {str(err)[:80]})")
        if bad:
            raise BadInputError(f"{self.path} is corrupt at {len(bad)} line(s): {'; '.join(bad)}; {self.fix}")
        return out

    def latest(self, key: Callable[[T], Hashable]) -> dict[Hashable, T]:
        """``{key(record): last record with that key}``, in order of first appearance."""
        out: dict[Hashable, T] = {}
        for record in self.read():
            out[key(record)] = record
        return out

    def repair(self) -> None:
        """Cut a torn last line off the file (nothing else changes)."""
        if not self.path.is_file():
            return
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            with self.path.open("r+b") as fh:
                fh.truncate(raw.rfind(b"\n") + 1)

    def append(self, record: Any, encode: Callable[[Any], str] = dumps_line) -> None:
        """Write one record as a line, then flush and fsync it (a torn last line is cut off first)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repair()
        line = encode(record)
        if not line.endswith("\n"):
            line += "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def start(self, header: Any | None = None) -> None:
        """Start the journal afresh: empty, or holding only ``header`` as its first line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", encoding="utf-8") as fh:
            if header is not None:
                fh.write(dumps_line(header))
            fh.flush()
            os.fsync(fh.fileno())
