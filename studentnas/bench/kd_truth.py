"""KD ground-truth files: what ``studentnas bench kd`` writes and ``studentnas bench proxies --ground-truth``
reads, for any search space (the file names its space).

Two twins with the same students: ``kd_ground_truth.json`` (everything: space config, teacher, recipe, seeds,
provenance and one entry per student) and ``kd_ground_truth.csv`` (one row per student: ``id``, ``space``,
``space_config``, ``arch_json``, ``label``, ``macs``, ``params``, ``macs_share``, ``image_size``, ``num_classes``,
``kd_top1_mean``, ``kd_top1_s<SEED>`` per seed, and the same for ``ce_top1`` where CE-only was measured).

Example:
    >>> import tempfile
    >>> from studentnas.core.registry import SPACES
    >>> space = SPACES.get("nb201")()
    >>> arch = space.smallest()
    >>> student = {"id": arch.id, "arch": arch.to_dict(), "label": space.format_arch(arch), "macs": 1.0,
    ...            "params": 2.0, "macs_share": 0.1, "kd_top1": {"0": 50.0, "1": 52.0}, "kd_top1_mean": 51.0,
    ...            "ce_top1": None, "ce_top1_mean": None}
    >>> doc = {"format": FORMAT, "space": space.config(), "seeds": [0, 1], "image_size": 16, "num_classes": 10,
    ...        "students": [student]}
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_ground_truth(folder, doc)
    >>> truth = load_kd_ground_truth(folder / CSV_NAME)
    >>> truth.space.name, truth.kd == {arch.id: 51.0}, truth.input_size, is_kd_ground_truth(folder / JSON_NAME)
    ('nb201', True, (3, 16, 16), True)
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studentnas.bench.correlation import band_tag, pairwise_accuracy
from studentnas.core.arch import Arch
from studentnas.core.errors import BadInputError
from studentnas.core.space import SearchSpace, space_from_config
from studentnas.runfiles.atomic import write_atomic, write_json_atomic

FORMAT = "studentnas-kd-ground-truth/1"
JSON_NAME, CSV_NAME = "kd_ground_truth.json", "kd_ground_truth.csv"
FIXED_COLUMNS = ("id", "space", "space_config", "arch_json", "label", "macs", "params", "macs_share", "image_size",
                 "num_classes", "kd_top1_mean")


@dataclass
class KDTruth:
    """A loaded KD ground truth: the space, the students by id, their mean KD (and CE-only) top-1."""

    space: SearchSpace
    archs: dict[str, Arch]
    kd: dict[str, float]
    ce: dict[str, float]
    input_size: tuple[int, int, int]
    num_classes: int
    source: str


def _number(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else repr(value)


def csv_text(doc: Mapping[str, Any]) -> str:
    """The CSV twin of a ground-truth document (one row per student, seeds as columns)."""
    seeds = [str(s) for s in doc["seeds"]]
    has_ce = any(s.get("ce_top1") for s in doc["students"])
    columns = [*FIXED_COLUMNS, *(f"kd_top1_s{s}" for s in seeds)]
    if has_ce:
        columns += ["ce_top1_mean", *(f"ce_top1_s{s}" for s in seeds)]
    handle = io.StringIO()
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(columns)
    space_config = json.dumps(doc["space"], sort_keys=True)
    for st in doc["students"]:
        row = [st["id"], doc["space"]["name"], space_config, json.dumps(st["arch"], sort_keys=True), st["label"],
               _number(st["macs"]), _number(st["params"]), _number(st["macs_share"]), doc["image_size"],
               doc["num_classes"], _number(st["kd_top1_mean"]),
               *(_number((st["kd_top1"] or {}).get(s)) for s in seeds)]
        if has_ce:
            row += [_number(st.get("ce_top1_mean")), *(_number((st.get("ce_top1") or {}).get(s)) for s in seeds)]
        writer.writerow(row)
    return handle.getvalue()


def seed_noise(students: Sequence[Mapping[str, Any]], seeds: Sequence[int], mode: str = "kd",
               bands: Sequence[float] = (0.1, 0.2)) -> dict[str, Any]:
    """Is the ground truth sharper than its own noise? For the students trained on every seed (``mode``
    ``"kd"`` or ``"ce"``):

    * ``noise_std``: the pooled within-student standard deviation over seeds (top-1 points);
    * ``spread_std``: the standard deviation of the students' mean top-1 (what proxies must order);
    * ``noise_to_spread``: their ratio (well below 1 means students separate);
    * ``seed_agreement_<band>``: among pairs of students with MACs within the band, how often the first two
      seeds order the pair alike (ties count one half): the ceiling of any proxy's within-band pairwise
      accuracy against one seed, and a reading of how noisy the within-band order is.

    Example:
        >>> st = [{"macs": m, "kd_top1": {"0": a, "1": b}} for m, a, b in
        ...       [(100, 80.0, 81.0), (105, 85.0, 84.0), (108, 82.0, 84.5), (300, 90.0, 91.0)]]
        >>> out = seed_noise(st, [0, 1])  # the seeds disagree on the 105/108 pair only
        >>> round(out["noise_std"], 4), round(out["spread_std"], 3), round(out["seed_agreement_10"], 4), out["pairs_10"]
        (1.0753, 4.22, 0.6667, 3)
    """
    key = f"{mode}_top1"
    full = [st for st in students if all(str(sd) in (st.get(key) or {}) for sd in seeds)]
    if len(seeds) < 2 or len(full) < 2:
        return {"students": len(full), "noise_std": None, "spread_std": None, "noise_to_spread": None}
    values = [[float(st[key][str(sd)]) for sd in seeds] for st in full]
    within = [float(np.var(v, ddof=1)) for v in values]
    noise = math.sqrt(sum(within) / len(within))
    spread = float(np.std([np.mean(v) for v in values], ddof=1))
    out: dict[str, Any] = {"students": len(full), "seeds": list(seeds), "noise_std": noise, "spread_std": spread,
                           "noise_to_spread": noise / spread if spread else None}
    first, second = (np.array([v[i] for v in values]) for i in (0, 1))
    macs = np.array([float(st["macs"]) for st in full])
    for band in bands:
        value, pairs = pairwise_accuracy(second, first, macs, band)
        out[f"seed_agreement_{band_tag(band)}"], out[f"pairs_{band_tag(band)}"] = value, pairs
    return out


def write_ground_truth(folder: str | Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` as ``folder/kd_ground_truth.json`` and its CSV twin, each atomically."""
    folder = Path(folder)
    write_json_atomic(folder / JSON_NAME, dict(doc))
    text = csv_text(doc)
    write_atomic(folder / CSV_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def is_kd_ground_truth(path: str | Path) -> bool:
    """True when ``path`` is a file written by ``bench kd`` (JSON with its format, or CSV with its columns)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8") as handle:
            if path.suffix == ".json":
                return json.load(handle).get("format", "").startswith("studentnas-kd-ground-truth/")
            header = handle.readline()
    except (OSError, ValueError, AttributeError):
        return False
    return "arch_json" in header and "kd_top1_mean" in header


def _arch(space: SearchSpace, text: Any, where: str) -> Arch:
    """The arch of one student (JSON text or a dict), checked against ``space`` (the error names the gene)."""
    try:
        data = json.loads(text) if isinstance(text, str) else text
        arch = Arch.from_dict(data)
    except (ValueError, TypeError, KeyError) as err:
        raise BadInputError(f"{where}: the arch is not {{\"space\": ..., \"genes\": {{...}}}} JSON ({err}); "
                            "rebuild the file with `studentnas bench kd`") from None
    if arch.space != space.name:
        raise BadInputError(f"{where}: arch from space '{arch.space}', but the file's space is '{space.name}'; "
                            "every student must belong to the file's space")
    try:
        return space.validate(arch)
    except BadInputError as err:
        raise BadInputError(f"{where}: not an arch of space '{space.name}': {err}; fix or drop that student") from None


def _float(value: Any, where: str, column: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise BadInputError(f"{where}: {column} = {value!r} is not a number; fix or drop that student")
    return number


def _load_json(path: Path) -> tuple[SearchSpace, list[tuple[str, Any, Any, Any]], int, int]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    space = space_from_config(doc["space"])
    entries = [(f"'{path}' students[{i}]", s.get("arch"), s.get("kd_top1_mean"), s.get("ce_top1_mean"))
               for i, s in enumerate(doc["students"])]
    return space, entries, int(doc["image_size"]), int(doc["num_classes"])


def _load_csv(path: Path) -> tuple[SearchSpace, list[tuple[str, Any, Any, Any]], int, int]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise BadInputError(f"ground-truth file '{path}' has no students; rebuild it with `studentnas bench kd`")
    missing = [c for c in FIXED_COLUMNS if c not in rows[0]]
    if missing:
        raise BadInputError(f"ground-truth file '{path}' lacks the columns {missing}; rebuild it with "
                            "`studentnas bench kd`")
    space = space_from_config(json.loads(rows[0]["space_config"]))
    entries = [(f"'{path}' line {line}", r["arch_json"], r["kd_top1_mean"], r.get("ce_top1_mean"))
               for line, r in enumerate(rows, start=2)]
    return space, entries, int(rows[0]["image_size"]), int(rows[0]["num_classes"])


def load_kd_ground_truth(path: str | Path) -> KDTruth:
    """Read a ``bench kd`` file (JSON or CSV): every arch must belong to the file's space, and every student
    needs a numeric mean KD top-1; otherwise a one-line :class:`BadInputError` names the line and the gene."""
    path = Path(path).expanduser()
    try:
        space, entries, image_size, num_classes = (_load_json if path.suffix == ".json" else _load_csv)(path)
    except BadInputError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BadInputError(f"ground-truth file '{path}' is not a readable `bench kd` file ({type(err).__name__}: "
                            f"{err}); rebuild it with `studentnas bench kd`") from None
    archs: dict[str, Arch] = {}
    kd: dict[str, float] = {}
    ce: dict[str, float] = {}
    for where, arch_text, kd_mean, ce_mean in entries:
        arch = _arch(space, arch_text, where)
        value = _float(kd_mean, where, "kd_top1_mean")
        if value is None:
            continue  # a student whose every training failed: no ground truth to rank against
        archs[arch.id], kd[arch.id] = arch, value
        ce_value = _float(ce_mean, where, "ce_top1_mean")
        if ce_value is not None:
            ce[arch.id] = ce_value
    if not kd:
        raise BadInputError(f"ground-truth file '{path}' has no student with a KD accuracy; rebuild it")
    return KDTruth(space, archs, kd, ce, (3, image_size, image_size), num_classes,
                   f"KD ground truth {path}: mean KD top-1 of {len(kd)} {space.name} students")


class ArchTable:
    """A space whose ``from_string`` looks students up by id (how ``bench proxies`` scores any space by key);
    everything else is the wrapped space's."""

    def __init__(self, space: SearchSpace, archs: Mapping[str, Arch]):
        self.space, self.archs = space, dict(archs)

    def from_string(self, key: str) -> Arch:
        """The student with id ``key``."""
        return self.archs[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.space, name)


def ids_of(truth: KDTruth) -> Sequence[str]:
    """The students' ids, sorted (the order ``bench proxies`` samples from)."""
    return sorted(truth.kd)
