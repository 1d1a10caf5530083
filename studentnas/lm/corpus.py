"""Text corpora as byte tokens for the language model: Debian's ``fortunes`` or your own text.

Spec strings (``--data``):

- ``fortunes``: Debian's ``fortunes`` package (``apt-get install fortunes``; BSD licence), about
  2.6 MB of English quotations, jokes, poems and definitions in ``/usr/share/games/fortunes/``.
  Only the plain text files are read: the ``.dat`` indexes and the ``.u8`` symlinks are skipped.
  ``fortunes:DIR`` reads the same layout from another folder.
- ``text:PATH``: a UTF-8 text file, or a folder whose ``.txt`` files (recursively) are read.

Tokens are the UTF-8 bytes (vocabulary 256), so nothing is downloaded. **Split:** every file is cut
into three contiguous slices, the first 90 % of its bytes for training, the next 5 % for validation
and the last 5 % for test. Each cut is moved forward to the next record boundary (a ``%`` line
between fortunes, a blank line or else a line break in plain text), so no quotation is split
between train and test. The slices of all files, in sorted path order, are concatenated per split.
The split does not depend on a seed, so every run sees the same validation and test bytes.

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_text("".join(f"line {i}\\n" for i in range(100)))
    >>> corpus = load_corpus(f"text:{folder}")
    >>> len(corpus.train) + len(corpus.val) + len(corpus.test) == corpus.total_bytes == 790
    True
    >>> x, y = windows(corpus.train, context=8, batch=2, generator=torch.Generator().manual_seed(0))
    >>> x.shape, bool((x[:, 1:] == y[:, :-1]).all())
    (torch.Size([2, 8]), True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from studentnas.core.errors import BadInputError
from studentnas.core.registry import Registry

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_FIX = "install Debian's package (apt-get install fortunes) or pass fortunes:DIR"
FORTUNES_LICENCE = "BSD (Debian package fortunes, fortune-mod 1.99.1; see /usr/share/doc/fortunes/copyright)"
#: Shares of every file's bytes in (train, val, test).
SPLIT = (0.90, 0.05, 0.05)
SPLIT_RULE = "each file cut into contiguous 90/5/5 % slices at record boundaries, sorted file order"


@dataclass
class Corpus:
    """A tokenised corpus: 1-D ``uint8`` byte tensors per split, where it came from and its licence."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    source: str
    licence: str
    files: list[str] = field(default_factory=list)
    split: str = SPLIT_RULE

    @property
    def total_bytes(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)

    def describe(self) -> dict:
        """JSON-ready summary (sizes in bytes = tokens) for sidecars and reports."""
        return {"source": self.source, "licence": self.licence, "files": len(self.files), "split": self.split,
                "bytes": {"train": len(self.train), "val": len(self.val), "test": len(self.test),
                          "total": self.total_bytes}}


def _cut(data: bytes, share: float, start: int, separators: tuple[bytes, ...]) -> int:
    """The first index at or after ``share`` of ``data`` (and ``start``) that follows a record boundary."""
    target = max(start, round(len(data) * share))
    for sep in separators:
        found = data.find(sep, max(start, target - len(sep)))
        if found >= 0:
            return found + len(sep)
    return len(data)


def split_bytes(data: bytes, separators: tuple[bytes, ...] = (b"\n\n", b"\n")) -> tuple[bytes, bytes, bytes]:
    """``data`` as contiguous (train, val, test) slices of about 90/5/5 %, cut after a separator.

    Example:
        >>> split_bytes(b"".join(b"%d\\n" % i for i in range(10, 30)), (b"\\n",))[1:]
        (b'28\\n', b'29\\n')
    """
    first = _cut(data, SPLIT[0], 0, separators)
    second = _cut(data, SPLIT[0] + SPLIT[1], first, separators)
    return data[:first], data[first:second], data[second:]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise BadInputError(f"cannot read {path}: {err.strerror}; check that it exists and is readable") from None


def _build(files: list[Path], separators: tuple[bytes, ...], source: str, licence: str) -> Corpus:
    parts: tuple[list[bytes], list[bytes], list[bytes]] = ([], [], [])
    for path in files:
        for bucket, piece in zip(parts, split_bytes(_read(path), separators)):
            bucket.append(piece)
    train, val, test = (torch.frombuffer(bytearray(b"".join(p)), dtype=torch.uint8) if any(p)
                        else torch.zeros(0, dtype=torch.uint8) for p in parts)
    return Corpus(train, val, test, source, licence, [str(p) for p in files])


# ----------------------------------------------------------------------------------------------- corpora

#: Corpus readers by spec prefix: ``reader(argument or None) -> Corpus``.
CORPORA: Registry = Registry("text corpus")


@CORPORA.register("fortunes")
def read_fortunes(folder: str | None = None) -> Corpus:
    """Debian's fortunes (plain files of ``/usr/share/games/fortunes`` or ``folder``; no .dat, no symlinks)."""
    root = Path(folder).expanduser() if folder else FORTUNES_DIR
    if not root.is_dir():
        raise BadInputError(f"fortunes corpus: folder {root} does not exist; {FORTUNES_FIX}")
    files = sorted(p for p in root.iterdir()
                   if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
                   and not p.name.startswith("."))
    if not files:
        raise BadInputError(f"fortunes corpus: no fortune files in {root}; {FORTUNES_FIX}")
    if folder is None and not (root / "science").is_file():  # fortunes-min alone ships one 24 kB file
        raise BadInputError(f"fortunes corpus: {root} holds only {len(files)} file(s), the fortunes-min package; "
                            "install the full corpus with apt-get install fortunes")
    return _build(files, (b"\n%\n", b"\n"), f"fortunes ({root}, {len(files)} files)", FORTUNES_LICENCE)


@CORPORA.register("text")
def read_text(path: str | None = None) -> Corpus:
    """A UTF-8 file, or every ``.txt`` file under a folder (recursively, sorted)."""
    if not path:
        raise BadInputError("text corpus: no path; pass text:PATH with a UTF-8 file or a folder of .txt files")
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.rglob("*.txt") if p.is_file())
        if not files:
            raise BadInputError(f"text corpus: folder {root} holds no .txt files; add some or pass one file")
    elif root.is_file():
        files = [root]
    else:
        raise BadInputError(f"text corpus: {root} does not exist; pass text:PATH with a UTF-8 file or a folder")
    for file in files:
        try:
            _read(file).decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadInputError(f"text corpus: {file} is not UTF-8 (byte {err.start}); convert it, e.g. "
                                "iconv -t utf-8") from None
    return _build(files, (b"\n\n", b"\n"), f"text ({root}, {len(files)} files)", "the user's own text")


def load_corpus(spec: str, min_bytes: int = 2) -> Corpus:
    """The corpus named by ``spec`` (see the module docstring); each split must hold ``min_bytes`` bytes."""
    name, _, arg = spec.partition(":")
    reader: Callable[[str | None], Corpus] = CORPORA.get(name.strip().lower())
    corpus = reader(arg or None)
    for split in ("train", "val", "test"):
        size = len(getattr(corpus, split))
        if size < min_bytes:
            raise BadInputError(f"text corpus '{spec}': its {split} split has {size} bytes but at least {min_bytes} "
                                f"are needed (context + 1); give more text ({corpus.total_bytes} bytes in all)")
    return corpus


# ----------------------------------------------------------------------------------------------- batches


def windows(tokens: torch.Tensor, context: int, batch: int,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random contiguous windows: inputs ``x`` and next-byte targets ``y``, both ``(batch, context)`` long.

    Starts are uniform over every window that fits, drawn from ``generator``.
    """
    if len(tokens) < context + 1:
        raise BadInputError(f"{len(tokens)} tokens are too few for windows of context {context}; "
                            "give more text or a smaller context")
    starts = torch.randint(0, len(tokens) - context, (batch,), generator=generator)
    offsets = torch.arange(context + 1)
    chunk = tokens[starts[:, None] + offsets].long()
    return chunk[:, :-1], chunk[:, 1:]


def eval_windows(tokens: torch.Tensor, context: int, max_windows: int | None = None) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """Non-overlapping windows covering ``tokens`` in order (deterministic; evenly thinned to ``max_windows``)."""
    if len(tokens) < context + 1:
        raise BadInputError(f"{len(tokens)} tokens are too few for windows of context {context}; "
                            "give more text or a smaller context")
    count = (len(tokens) - 1) // context
    starts = torch.arange(count) * context
    if max_windows is not None and count > max_windows:
        starts = starts[torch.linspace(0, count - 1, max_windows).round().long()]
    chunk = tokens[starts[:, None] + torch.arange(context + 1)].long()
    return chunk[:, :-1], chunk[:, 1:]
