"""Ground-truth accuracies of NAS-Bench-201 cells, keyed by NB201 arch string.

Two sources:

* :func:`load_nats_csv`: a CSV in the layout of NATS-Bench's topology export (one row per cell,
  columns ``ArchitectureString`` and ``CIFAR10TestAccuracy200Epochs`` /
  ``CIFAR100TestAccuracy200Epochs`` / ``ImageNetTestAccuracy200Epochs``, test accuracy in % after
  200 epochs). The project's reference copy is ``../shared/reference/nb201/nats_bench.csv``; users
  pass their own by path.
* :func:`load_analog_nasbench`: CIFAR-10 only, from the ``analog-nasbench`` PyPI package
  (Apache-2.0; ``pip install 'studentnas[nasbench]'``), for users without the CSV. Its cells were
  trained independently of NATS-Bench; its ``baseline_accuracy`` (the digital, full-precision
  network) has Spearman 0.99 with the CSV's CIFAR-10 column over all 15,625 cells. Its keys use
  NASLib's six-int encoding, mapped with the nb201 space's ``from_naslib_tuple``.

Example:
    >>> from pathlib import Path
    >>> csv_path = Path("../shared/reference/nb201/nats_bench.csv")
    >>> acc = load_nats_csv(csv_path, "cifar10")  # 15,625 rows: ~3-5 s  # doctest: +SKIP
    >>> round(max(acc.values()), 2)  # the table above  # doctest: +SKIP
    94.37
"""

from __future__ import annotations

import csv
import functools
import importlib
import math
import pickle
import sys
import types
from importlib import metadata
from pathlib import Path

from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
INPUT_SIZE = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "ImageNet16-120": (3, 16, 16)}
NATS_COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "ImageNet16-120": "ImageNetTestAccuracy200Epochs",
}
ARCH_COLUMN = "ArchitectureString"
ANALOG = "analog-nasbench"
# The bench is NB201-specific; the space is looked up through the registry (the core imports no plugin).
_ANALOG_CLASSES = frozenset({"Architecture", "DriftMeasurement"})


def check_dataset(dataset: str) -> str:
    """``dataset`` if it is one of :data:`DATASETS`, else a BadInputError with the choices."""
    if dataset not in DATASETS:
        raise BadInputError(f"NB201 dataset {dataset!r} is not one of {', '.join(DATASETS)}; e.g. --dataset cifar10")
    return dataset


def load_nats_csv(path: str | Path, dataset: str) -> dict[str, float]:
    """``{NB201 arch string: test accuracy in %}`` for ``dataset`` from a NATS-Bench CSV.

    Every arch string is checked with the nb201 space's ``from_string``; a missing file, a missing
    column, a bad arch string or a non-numeric accuracy raises a BadInputError naming the file,
    the row and the expected columns. Parsed tables are cached per (file, size, mtime, dataset), so
    repeated benchmarks in one process read the file once; each call returns a fresh dict.
    """
    column = NATS_COLUMNS[check_dataset(dataset)]
    path = Path(path).expanduser()
    if not path.is_file():
        expected = f"{ARCH_COLUMN} and {', '.join(NATS_COLUMNS.values())}"
        raise BadInputError(f"ground-truth file '{path}' does not exist; pass the NATS-Bench CSV (columns {expected}), "
                            f"e.g. ../shared/reference/nb201/nats_bench.csv, or --ground-truth {ANALOG} for CIFAR-10")
    stat = path.stat()
    return dict(_parse_nats_csv(path.resolve(), stat.st_size, stat.st_mtime_ns, column))


@functools.lru_cache(maxsize=8)
def _parse_nats_csv(path: Path, _size: int, _mtime_ns: int, column: str) -> tuple[tuple[str, float], ...]:
    expected = f"{ARCH_COLUMN} and {', '.join(NATS_COLUMNS.values())}"
    space = SPACES.get("nb201")()
    accuracies: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if ARCH_COLUMN not in header or column not in header:
            raise BadInputError(f"ground-truth file '{path}' has columns {header[:6]}, but needs {ARCH_COLUMN} and "
                                f"{column} (NATS-Bench layout: {expected}); export it from NATS-Bench's topology "
                                "space or use ../shared/reference/nb201/nats_bench.csv")
        for line, row in enumerate(reader, start=2):
            arch = row[ARCH_COLUMN]
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise BadInputError(f"ground-truth file '{path}' line {line}: {column} = {row[column]!r} is not a "
                                    "number; fix or drop the row")
            try:
                key = space.format_arch(space.from_string(arch))
            except BadInputError as err:
                raise BadInputError(f"ground-truth file '{path}' line {line}: {err}") from err
            accuracies[key] = value
    if not accuracies:
        raise BadInputError(f"ground-truth file '{path}' has a header but no rows; it needs one row per NB201 cell")
    return tuple(accuracies.items())


class _AnalogUnpickler(pickle.Unpickler):
    """Unpickles only analog-nasbench's two record classes (the file holds nothing else)."""

    def __init__(self, file: object, module: types.ModuleType):
        super().__init__(file)
        self._module = module

    def find_class(self, module: str, name: str) -> type:
        if module == "analognasbench.data" and name in _ANALOG_CLASSES:
            return getattr(self._module, name)
        raise pickle.UnpicklingError(f"analog-nasbench data refers to {module}.{name}, which is not one of its "
                                     f"record classes {sorted(_ANALOG_CLASSES)}; refusing to load it")


def _import_analog_module() -> types.ModuleType:
    """``analognasbench.data``, imported with a stub ``pkg_resources`` (setuptools >= 81 has none).

    The package imports ``pkg_resources`` only to locate its data file, which we do ourselves. The
    stub is put in ``sys.modules`` for the import and the previous entry (or its absence) restored.
    """
    saved = sys.modules.get("pkg_resources")
    had = "pkg_resources" in sys.modules
    stub = types.ModuleType("pkg_resources", "stub injected by studentnas to import analognasbench")
    sys.modules["pkg_resources"] = stub
    try:
        return importlib.import_module("analognasbench.data")
    except ModuleNotFoundError as err:
        if err.name not in ("analognasbench", "analognasbench.data"):
            raise
        raise BadInputError(f"--ground-truth {ANALOG} needs the analog-nasbench package, which is not installed; "
                            "pip install 'studentnas[nasbench]' (or pass the NATS-Bench CSV path)") from err
    finally:
        if had:
            sys.modules["pkg_resources"] = saved
        else:
            sys.modules.pop("pkg_resources", None)


def analog_nasbench_version() -> str:
    """The installed analog-nasbench version, e.g. ``'0.1.3'``."""
    try:
        return metadata.version(ANALOG)
    except metadata.PackageNotFoundError as err:
        raise BadInputError(f"the {ANALOG} package is not installed; pip install 'studentnas[nasbench]'") from err


def load_analog_nasbench(metric: str = "baseline_accuracy") -> dict[str, float]:
    """``{NB201 arch string: CIFAR-10 accuracy in %}`` from the analog-nasbench package.

    ``metric`` is an attribute of its records; ``baseline_accuracy`` is the full-precision digital
    network (the others are quantised or analog-hardware accuracies).
    """
    analog_nasbench_version()
    module = _import_analog_module()
    path = Path(module.__file__).with_name("data.anb")
    if not path.is_file():
        raise BadInputError(f"analog-nasbench is installed but its data file '{path}' is missing; reinstall it: "
                            f"pip install --force-reinstall {ANALOG}")
    with path.open("rb") as handle:
        records = _AnalogUnpickler(handle, module).load()
    if not isinstance(records, dict) or not records:
        raise BadInputError(f"'{path}' does not hold analog-nasbench's dict of records; reinstall {ANALOG}")
    space = SPACES.get("nb201")()
    accuracies: dict[str, float] = {}
    for key, record in records.items():
        value = getattr(record, metric, None)
        if not isinstance(value, (int, float)):
            raise BadInputError(f"analog-nasbench record {key} has no numeric {metric!r}; use baseline_accuracy")
        accuracies[space.format_arch(space.from_naslib_tuple(tuple(int(i) for i in key)))] = float(value)
    return accuracies


def load_ground_truth(source: str | Path, dataset: str) -> tuple[dict[str, float], str]:
    """Accuracies and a description of where they came from, for ``--ground-truth SOURCE``.

    ``SOURCE`` is a NATS-Bench CSV path or ``analog-nasbench`` (CIFAR-10 only).
    """
    check_dataset(dataset)
    if str(source) == ANALOG:
        if dataset != "cifar10":
            raise BadInputError(f"--ground-truth {ANALOG} has CIFAR-10 accuracies only, not {dataset}; pass the "
                                "NATS-Bench CSV for cifar100 or ImageNet16-120")
        acc = load_analog_nasbench()
        return acc, (f"{ANALOG} {analog_nasbench_version()} (PyPI, Apache-2.0): CIFAR-10 baseline_accuracy "
                     f"of {len(acc)} cells")
    acc = load_nats_csv(source, dataset)
    return acc, f"NATS-Bench CSV {Path(source).expanduser()}: {NATS_COLUMNS[dataset]} of {len(acc)} cells"
