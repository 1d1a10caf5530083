"""Raw readers for the on-disk formats behind :mod:`studentnas.data.images`.

IDX files (the MNIST family), CIFAR python pickles, ImageFolder trees and the calibration sample shipped
in the package. Every reader returns plain numpy arrays (uint8 ``N x H x W x C`` images, int64 labels) and
raises :class:`~studentnas.core.errors.BadInputError` naming the file, the expected layout and the fix. The
``check_*`` functions validate a source quickly (paths, headers) without reading it all.

Example:
    >>> import gzip, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny-labels-idx1-ubyte.gz"
    >>> header = bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big")   # uint8, 1 dimension of size 3
    >>> _ = path.write_bytes(gzip.compress(header + bytes([7, 8, 9])))
    >>> read_idx(path).tolist()
    [7, 8, 9]
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
import pickle
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from studentnas.core.errors import BadInputError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_FIX = (
    "install Debian's package (apt-get install dataset-fashion-mnist) or pass fashion-mnist:DIR where DIR holds "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
)
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
_GRAY_MODES = {"1", "L", "LA"}
SAMPLE_FILE = "fashion_mnist_calibration.npz"


# ----------------------------------------------------------------------------------------------- files, IDX


def _read_file(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped when the file is gzip-compressed."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise BadInputError(f"cannot read {path}: {err.strerror}; check that it exists and is readable") from err
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise BadInputError(f"{path}: corrupt gzip data ({err}); download the file again") from err


def _check_file(path: Path, fix: str) -> None:
    """Raise unless ``path`` is a readable, non-empty file."""
    if not path.is_file():
        raise BadInputError(f"{path}: file not found; {fix}")
    try:
        with path.open("rb") as handle:
            first = handle.read(1)
    except OSError as err:
        raise BadInputError(f"cannot read {path}: {err.strerror}; check its permissions") from err
    if not first:
        raise BadInputError(f"{path}: file is empty; {fix}")


def _idx_header_error(path: Path, header: bytes) -> BadInputError:
    return BadInputError(
        f"{path}: not an IDX file (header {header[:4].hex() or 'empty'}; IDX starts 00 00 <type> <ndim>); "
        "download the file again"
    )


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (plain or gzipped): big-endian header, then the array in C order."""
    raw = _read_file(Path(path))
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise _idx_header_error(path, raw)
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise BadInputError(f"{path}: truncated IDX header ({len(raw)} bytes); download the file again")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise BadInputError(
            f"{path}: IDX header promises {dims} ({expected} bytes) but the file holds {len(raw) - offset} bytes; "
            "download the file again"
        )
    return np.frombuffer(raw, dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _mnist_path(directory: Path, stem: str) -> Path:
    """``DIR/stem.gz`` or, failing that, the uncompressed ``DIR/stem``."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise BadInputError(f"fashion-mnist: {stem}.gz not found in {directory}; {_MNIST_FIX}")


def check_fashion_mnist(directory: Path) -> None:
    """Fast check: the four IDX files exist, are readable, non-empty and start with an IDX header."""
    for stem in (*_MNIST_FILES["train"], *_MNIST_FILES["test"]):
        path = _mnist_path(directory, stem)
        _check_file(path, _MNIST_FIX)
        try:
            with gzip.open(path) if path.suffix == ".gz" else path.open("rb") as handle:
                header = handle.read(4)
        except (OSError, EOFError, zlib.error) as err:
            raise BadInputError(f"{path}: corrupt gzip data ({err}); download the file again") from err
        if len(header) < 4 or header[:2] != b"\0\0" or header[2] not in _IDX_DTYPES:
            raise _idx_header_error(path, header)


def read_fashion_mnist(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 N x 28 x 28 x 1) and labels (int64 N) of one Fashion-MNIST split."""
    image_stem, label_stem = _MNIST_FILES[split]
    image_path, label_path = _mnist_path(directory, image_stem), _mnist_path(directory, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise BadInputError(f"{image_path}: expected uint8 N x 28 x 28 images, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images) or labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise BadInputError(
            f"{label_path}: expected {len(images)} labels in 0..9, got shape {labels.shape}; use the file that "
            f"belongs to {image_path.name}"
        )
    return images[..., None], labels.astype(np.int64)


# ----------------------------------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its python pickles and what the keys are called."""

    name: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: bytes
    names_key: bytes

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, *self.test, self.meta)

    def expected(self, path: Path) -> str:
        """Where the pickles belong, for ``path`` being the dataset's folder or its parent."""
        parent = path.parent if path.name == self.folder else path
        return f"expected {parent}/{self.folder}/{{{','.join(self.files)}}} (PATH may be {self.folder} or its parent)"


CIFAR10 = CifarLayout("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                      ("test_batch",), "batches.meta", b"labels", b"label_names")
CIFAR100 = CifarLayout(
    "CIFAR-100", "cifar-100-python", ("train",), ("test",), "meta", b"fine_labels", b"fine_label_names"
)
_CIFAR_FIX = "download and extract the python version from https://www.cs.toronto.edu/~kriz/cifar.html"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles containers and numpy arrays only, so a crafted file cannot run code."""

    _MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"}
    _NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str) -> object:
        if (module in self._MODULES and name in self._NAMES) or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def resolve_cifar_dir(path: Path, layout: CifarLayout) -> Path:
    """The folder holding the pickles: ``path`` itself or ``path/<layout.folder>``."""
    for candidate in (path, path / layout.folder):
        if any((candidate / name).is_file() for name in layout.files):
            return candidate
    if path.is_file():
        raise BadInputError(f"{layout.name}: {path} is a file; extract it first, {layout.expected(path.parent)}")
    raise BadInputError(f"{layout.name}: no python batches at {path}; {layout.expected(path)}; {_CIFAR_FIX}")


def check_cifar(path: Path, layout: CifarLayout) -> None:
    """Fast check: every pickle of ``layout`` exists, is readable, non-empty and looks like a pickle."""
    root = resolve_cifar_dir(path, layout)
    for name in layout.files:
        _check_file(root / name, f"{layout.expected(root)}; {_CIFAR_FIX}")
        with (root / name).open("rb") as handle:
            if handle.read(1) not in (b"\x80", b"(", b"}"):
                raise BadInputError(f"{root / name}: not a python pickle; {layout.expected(root)}; {_CIFAR_FIX}")


def _unpickle(path: Path, layout: CifarLayout) -> dict:
    _check_file(path, f"{layout.expected(path.parent)}; {_CIFAR_FIX}")
    try:
        with path.open("rb") as handle:
            content = _ArrayUnpickler(handle, encoding="bytes").load()
    except Exception as err:  # corrupt pickles raise almost any type; re-raised with the cause attached
        raise BadInputError(
            f"{path}: not a readable {layout.name} pickle ({type(err).__name__}: {err}); "
            f"{layout.expected(path.parent)}; {_CIFAR_FIX}"
        ) from err
    if not isinstance(content, dict):
        raise BadInputError(f"{path}: holds a {type(content).__name__}, expected a dict; {_CIFAR_FIX}")
    return content


def _field(content: dict, key: bytes, path: Path) -> object:
    for candidate in (key, key.decode()):
        if candidate in content:
            return content[candidate]
    raise BadInputError(f"{path}: missing key {key!r} (has {sorted(map(str, content))}); {_CIFAR_FIX}")


def _read_cifar_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    content = _unpickle(path, layout)
    data = np.asarray(_field(content, b"data", path))
    labels = np.asarray(_field(content, layout.label_key, path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise BadInputError(
            f"{path}: expected uint8 data N x 3072 and N labels, got data {data.dtype} {data.shape} and "
            f"labels {labels.shape}; {_CIFAR_FIX}"
        )
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


def read_cifar(path: Path, layout: CifarLayout, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images (uint8 N x 32 x 32 x 3), labels and class names of one CIFAR split."""
    root = resolve_cifar_dir(path, layout)
    meta_path = root / layout.meta
    names = _field(_unpickle(meta_path, layout), layout.names_key, meta_path)
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    batches = [_read_cifar_batch(root / name, layout) for name in (layout.train if split == "train" else layout.test)]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise BadInputError(f"{root}: labels go up to {labels.max()} but {meta_path} names {len(classes)} classes")
    return images, labels, classes


# ----------------------------------------------------------------------------------------------- ImageFolder


def image_folder_roots(root: Path, split: str) -> tuple[Path, list[Path]]:
    """The folder to read for ``split`` and every folder whose sub-folders name classes."""
    held_out = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
    if (root / "train").is_dir() and held_out is not None:
        return (root / "train" if split == "train" else held_out), [root / "train", held_out]
    return root, [root]


def _class_names(roots: Sequence[Path]) -> tuple[str, ...]:
    return tuple(sorted({d.name for r in roots for d in r.iterdir() if d.is_dir() and not d.name.startswith(".")}))


def _iter_images(directory: Path) -> Iterator[Path]:
    """Image files under ``directory`` in a stable order, hidden files and folders skipped."""
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                yield Path(current) / name


def _layout_hint(root: Path) -> str:
    if (root / "cifar-10-batches-py").is_dir() or (root / "data_batch_1").is_file():
        return f" (it looks like CIFAR-10: use cifar10:{root})"
    if (root / "cifar-100-python").is_dir() or (root / "meta").is_file() and (root / "train").is_file():
        return f" (it looks like CIFAR-100: use cifar100:{root})"
    if any(root.glob("*-idx3-ubyte*")):
        return f" (it looks like Fashion-MNIST: use fashion-mnist:{root})"
    return ""


def _no_images(root: Path) -> BadInputError:
    return BadInputError(
        f"ImageFolder {root} contains no images; expected {root}/<class>/<image>.png, one sub-folder per class, "
        f"extensions {' '.join(IMAGE_EXTENSIONS)}{_layout_hint(root)}"
    )


def list_image_folder(root: Path, split: str) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Image paths, their labels and the class names of an ImageFolder tree (nothing is decoded)."""
    folder, roots = image_folder_roots(root, split)
    classes = _class_names(roots)
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = list(_iter_images(folder / name)) if (folder / name).is_dir() else []
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise _no_images(folder)
    return paths, np.asarray(labels, dtype=np.int64), classes


def check_image_folder(root: Path) -> None:
    """Fast check: at least one class sub-folder holding an image whose header PIL can read."""
    folder, roots = image_folder_roots(root, "train")
    first = next((p for name in _class_names(roots) for p in _iter_images(folder / name)), None)
    if first is None:
        raise _no_images(folder)
    _image_mode(first)


def _unreadable(path: Path, err: Exception) -> BadInputError:
    return BadInputError(f"cannot read image {path}: {err}; delete or replace the file")


_PIL_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _image_mode(path: Path) -> str:
    try:
        with Image.open(path) as image:
            return image.mode
    except _PIL_ERRORS as err:
        raise _unreadable(path, err) from err


def _load_image(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode)
    except _PIL_ERRORS as err:
        raise _unreadable(path, err) from err


def read_images(paths: Sequence[Path]) -> np.ndarray:
    """Decode ``paths`` into uint8 N x H x W x C: L when all are grayscale, else RGB; sized like the first."""
    mode = "L" if all(_image_mode(p) in _GRAY_MODES for p in paths) else "RGB"
    channels = 1 if mode == "L" else 3
    out: np.ndarray | None = None
    for i, path in enumerate(paths):
        image = _load_image(path, mode)
        if out is None:
            out = np.empty((len(paths), image.height, image.width, channels), dtype=np.uint8)
        if image.size != (out.shape[2], out.shape[1]):
            image = image.resize((out.shape[2], out.shape[1]), Image.Resampling.BILINEAR)
        out[i] = np.asarray(image).reshape(out.shape[1:])
    if out is None:
        raise BadInputError("no image paths given; pass at least one image")
    return out


# ----------------------------------------------------------------------------------------- shipped sample


def _sample_resource() -> importlib.resources.abc.Traversable:
    resource = importlib.resources.files("studentnas") / "assets" / SAMPLE_FILE
    if not resource.is_file():
        raise BadInputError(
            f"the calibration sample studentnas/assets/{SAMPLE_FILE} is missing from the installed package; "
            "reinstall studentnas or pass --data fashion-mnist"
        )
    return resource


def check_shipped_sample() -> None:
    """Fast check: the sample is inside the installed package."""
    _sample_resource()


def read_shipped_sample() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The calibration sample shipped in the package: images, labels, class names."""
    with importlib.resources.as_file(_sample_resource()) as path, np.load(path, allow_pickle=False) as archive:
        return archive["images"], archive["labels"].astype(np.int64), tuple(str(c) for c in archive["classes"])
