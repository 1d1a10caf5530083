"""Published zero-cost proxy values for NB201 cells (NAS-Bench-Suite-Zero, NASLib's ``zc_nasbench201.json``).

Layout of the file: ``{dataset: {arch_tuple_string: {"idx", "arch", "val_accuracy",
PROXY: {"score", "time"}}}}`` with datasets ``cifar10``, ``cifar100``, ``ImageNet16-120``. The arch
tuple is NASLib's six-int encoding, mapped to NB201 strings by the nb201 space's
``from_naslib_tuple``; the exact match of ``params`` with our analytic cost over every cell checks
that mapping (``tests/test_bench.py``).

NASLib's proxy names map to ours through :data:`NASLIB_TO_OURS` (``flops`` is our ``macs``; it
counts FLOPs in NASLib's tensorwatch convention, BN and ReLU included, so it ranks cells almost but
not exactly like MACs). ``time`` is GPU seconds per arch as recorded by NASLib.

Example:
    >>> from pathlib import Path
    >>> path = Path("../shared/reference/nb201/naslib_zc_nasbench201.json")
    >>> cells = load_published(path, "cifar10")
    >>> len(cells), cells[0].scores["params"]
    (724, 0.615386)
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from studentnas.bench.ground_truth import DATASETS, check_dataset
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES

NASLIB_PROXIES = ("flops", "params", "synflow", "grasp", "fisher", "grad_norm", "l2_norm", "plain", "nwot",
                  "epe_nas", "jacov", "snip")
NASLIB_TO_OURS = {"flops": "macs"}  # every other NASLib name is the name of our proxy
OURS_TO_NASLIB = {ours: theirs for theirs, ours in NASLIB_TO_OURS.items()}


def published_name(proxy: str) -> str:
    """The NASLib name of our proxy ``proxy`` (``macs`` -> ``flops``, others unchanged).

    Example:
        >>> published_name("macs"), published_name("nwot")
        ('flops', 'nwot')
    """
    return OURS_TO_NASLIB.get(proxy, proxy)


@dataclass(frozen=True)
class PublishedCell:
    """One cell of the published file: NB201 arch string, NASLib tuple and index, validation accuracy,
    and the published proxy values under *our* names (``scores``) with their GPU seconds (``seconds``)."""

    arch: str
    naslib_tuple: tuple[int, ...]
    idx: int
    val_accuracy: float
    scores: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _parse_tuple(key: str, where: str) -> tuple[int, ...]:
    try:
        value = ast.literal_eval(key)
    except (ValueError, SyntaxError) as err:
        raise BadInputError(f"{where}: arch key {key!r} is not a tuple like '(0, 2, 3, 2, 3, 1)'") from err
    if not isinstance(value, tuple) or not all(isinstance(i, int) for i in value):
        raise BadInputError(f"{where}: arch key {key!r} is not a tuple of ints like '(0, 2, 3, 2, 3, 1)'")
    return value


def load_published(path: str | Path, dataset: str) -> list[PublishedCell]:
    """The cells of ``dataset`` in the published file, in the file's order.

    Raises a BadInputError naming the file and the expected layout when the file is missing, is not
    JSON, lacks ``dataset`` or holds a cell that is not an NB201 cell.
    """
    check_dataset(dataset)
    path = Path(path).expanduser()
    layout = '{dataset: {"(i, i, i, i, i, i)": {"val_accuracy": ..., PROXY: {"score": ..., "time": ...}}}}'
    if not path.is_file():
        raise BadInputError(f"published-scores file '{path}' does not exist; pass NASLib's zc_nasbench201.json "
                            "(e.g. ../shared/reference/nb201/naslib_zc_nasbench201.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadInputError(f"published-scores file '{path}' is not JSON ({err}); expected layout {layout}") from err
    if not isinstance(data, dict) or not isinstance(data.get(dataset), dict):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise BadInputError(f"published-scores file '{path}' has no '{dataset}' section (found {found}); expected "
                            f"layout {layout} with datasets {', '.join(DATASETS)}")
    space = SPACES.get("nb201")()
    cells = []
    for key, entry in data[dataset].items():
        where = f"'{path}' [{dataset}][{key}]"
        if not isinstance(entry, dict):
            raise BadInputError(f"{where}: expected an object with val_accuracy and proxy scores, got {entry!r}")
        ops = _parse_tuple(key, where)
        try:
            arch = space.from_naslib_tuple(ops)
        except BadInputError as err:
            raise BadInputError(f"{where}: {err}") from err
        scores, seconds = {}, {}
        for name in NASLIB_PROXIES:
            value = entry.get(name)
            if isinstance(value, dict):
                ours = NASLIB_TO_OURS.get(name, name)
                scores[ours], seconds[ours] = _number(value.get("score")), _number(value.get("time"))
        idx = entry.get("idx")
        cells.append(PublishedCell(arch=space.format_arch(arch), naslib_tuple=ops,
                                   idx=int(idx) if isinstance(idx, (int, str)) and str(idx).isdigit() else -1,
                                   val_accuracy=_number(entry.get("val_accuracy")), scores=scores, seconds=seconds))
    if not cells:
        raise BadInputError(f"published-scores file '{path}' has no cells for '{dataset}'")
    return cells
