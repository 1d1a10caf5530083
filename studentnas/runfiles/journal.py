"""Append-only JSON-lines journals: the one way every resumable stage records finished work.

A journal is a file of one JSON object per line. Each finished unit of work (a search candidate, a
distillation trial, a benchmark cell, a Puzzle score, a study training) is appended as one line,
flushed and fsynced before the caller goes on, so a kill at any moment loses at most the line being
written. Reading tolerates exactly that: a last line without its newline (torn by a kill) is ignored,
and :meth:`Journal.append` cuts it off before writing. A complete line that is not valid JSON (or that
the caller's ``parse`` rejects) is corruption, not a kill: :meth:`Journal.read` reports *every* such
line with its number in one :class:`~studentnas.core.errors.BadInputError`, naming the fix
(:meth:`Journal.scan` returns them instead, for journals whose records are a cache worth redoing).

A journal may start with a header line (``has_header=True``): :meth:`Journal.start` writes it,
:meth:`Journal.header` reads it back, and the records are every line after it.

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
    >>> len(j.read()), j.torn_line()
    (3, 4)
    >>> j.append({"id": "c", "score": 4.0}); [r["id"] for r in j.read()]
    ['a', 'b', 'a', 'c']
    >>> with j.path.open("a") as fh:  # two lines damaged by hand: both are named at once
    ...     _ = fh.write('oops\\n{"id": "d"\\n')
    >>> j.read()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: ...work.jsonl is corrupt at 2 line(s): line 5 (...); line 6 (...); remove...
    >>> h = Journal(j.path.with_name("headed.jsonl"), has_header=True)
    >>> h.start({"identity": {"seed": 0}}); h.append({"id": "a"}); h.header(), h.read()
    ({'identity': {'seed': 0}}, [{'id': 'a'}])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

from studentnas.core.errors import BadInputError

T = TypeVar("T")

#: Parse failures a ``parse`` function may raise for a corrupt record (besides JSON's own).
PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


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
        has_header: line 1 is a header (:meth:`header`), not a record.
    """

    def __init__(self, path: str | Path, parse: Callable[[Any], T] = _identity,
                 fix: str = "remove or repair those lines to resume", has_header: bool = False):
        self.path = Path(path)
        self.parse = parse
        self.fix = fix
        self.has_header = has_header

    def exists(self) -> bool:
        """Whether the file is there (it may still be empty)."""
        return self.path.is_file()

    def _complete_lines(self) -> list[tuple[int, bytes]]:
        if not self.path.is_file():
            return []
        raw = self.path.read_bytes()
        return [(n, line) for n, line in enumerate(raw.splitlines(keepends=True), start=1) if line.endswith(b"\n")]

    def lines(self) -> list[tuple[int, bytes]]:
        """``(line number, raw bytes)`` of every complete record line (a torn last line and the header are
        left out)."""
        return [(n, line) for n, line in self._complete_lines() if not (self.has_header and n == 1)]

    def header(self) -> Any | None:
        """The decoded header line, or None when the journal has none (missing, empty, torn or not JSON)."""
        first = self._complete_lines()[:1]
        if not self.has_header or not first:
            return None
        try:
            return json.loads(first[0][1])
        except json.JSONDecodeError:
            return None

    def torn_line(self) -> int | None:
        """The number of the last line if a kill cut it short (no newline), else None."""
        if not self.path.is_file():
            return None
        raw = self.path.read_bytes()
        return raw.count(b"\n") + 1 if raw and not raw.endswith(b"\n") else None

    def scan(self) -> tuple[list[T], list[str]]:
        """Every complete record in file order, and ``line N (why)`` for each corrupt line (not raised)."""
        out: list[T] = []
        bad: list[str] = []
        for number, line in self.lines():
            if not line.strip():
                continue
            try:
                out.append(self.parse(json.loads(line)))
            except (json.JSONDecodeError, UnicodeDecodeError, *PARSE_ERRORS) as err:
                bad.append(f"line {number} ({type(err).__name__}: {str(err)[:80]})")
        return out, bad

    def read(self) -> list[T]:
        """Every complete record in file order; one error naming every corrupt line otherwise."""
        out, bad = self.scan()
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
        """Cut a torn last line off the file (nothing else changes); reads only the file's tail."""
        if not self.path.is_file():
            return
        with self.path.open("r+b") as fh:
            end = fh.seek(0, os.SEEK_END)
            if end == 0:
                return
            fh.seek(end - 1)
            if fh.read(1) == b"\n":
                return
            pos = end
            while pos > 0:
                step = min(1 << 16, pos)
                pos -= step
                fh.seek(pos)
                newline = fh.read(step).rfind(b"\n")
                if newline >= 0:
                    fh.truncate(pos + newline + 1)
                    return
            fh.truncate(0)

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
