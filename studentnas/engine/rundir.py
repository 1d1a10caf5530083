"""Run directories: ``run.json``, ``candidates.jsonl`` (the journal) and ``pareto.json`` (docs/architecture.md).

The journal is the source of truth: one JSON line per evaluated candidate, appended, flushed and
fsynced as each finishes (:class:`~studentnas.runfiles.journal.Journal`). A run killed at any moment
(even mid-line) is resumed by reading it back; a torn last line is dropped, and complete lines that
do not read are all named in one error. Other files are written atomically (temp file + rename), so a reader never
sees half a file.

Example:
    >>> import tempfile
    >>> d = RunDir(tempfile.mkdtemp() + "/r1")
    >>> d.create({"seed": 0}); d.config()["seed"]
    0
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from studentnas.core import objectives as obj
from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError
from studentnas.core.pareto import front as front_of
from studentnas.core.space import SearchSpace, space_from_config
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.runfiles.journal import Journal

RUN_JSON, JOURNAL, PARETO_JSON = "run.json", "candidates.jsonl", "pareto.json"


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    """``field: run has X, you asked Y`` for each identity field that differs."""
    return [f"{f}: the run has {old.get(f)!r}, you asked {new.get(f)!r}" for f in fields if old.get(f) != new.get(f)]


class RunDir:
    """The files of one run. Nothing is written until :meth:`create` (so bad input leaves no trace)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def exists(self) -> bool:
        return (self.path / RUN_JSON).is_file()

    def create(self, config: Mapping[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / RUN_JSON, dict(config))
        (self.path / JOURNAL).touch()

    def config(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / RUN_JSON).read_text())
        except FileNotFoundError:
            raise BadInputError(f"'{self.path}' is not a run directory (no {RUN_JSON}); "
                                f"pass the --out folder of a `studentnas search`{self._puzzle_hint()}") from None
        except json.JSONDecodeError as err:
            raise BadInputError(f"'{self.path / RUN_JSON}' is corrupt ({err}); delete the run and search again") \
                from None

    def _puzzle_hint(self) -> str:
        """Where the run directories of a ``studentnas puzzle`` folder (OUT or OUT/puzzle) are, if it is one."""
        for root in (self.path, self.path / "puzzle"):
            budgets = sorted(p.name for p in (root / "candidates").glob("*") if (p / RUN_JSON).is_file())
            if budgets:
                return f", or a Puzzle budget's: {', '.join(str(root / 'candidates' / b) for b in budgets)}"
        return ""

    def update_config(self, **fields: Any) -> None:
        write_json_atomic(self.path / RUN_JSON, {**self.config(), **fields})

    @property
    def journal(self) -> Journal[Candidate]:
        """``candidates.jsonl`` as a :class:`~studentnas.runfiles.journal.Journal` of candidates."""
        return Journal(self.path / JOURNAL, parse=Candidate.from_dict,
                       fix="remove those lines to resume (their candidates are evaluated again)")

    def read_candidates(self, repair: bool = False) -> list[Candidate]:
        """All journalled candidates. A torn last line (killed mid-write) is ignored, and cut off when ``repair``;
        corrupt complete lines are all named in one :class:`BadInputError`."""
        journal = self.journal
        out = journal.read()
        if repair:
            journal.repair()
        return out

    def append(self, cand: Candidate) -> None:
        """Journal one evaluated candidate (flushed and fsynced before this returns)."""
        self.journal.append(cand.to_dict())

    def write_pareto(self, front: list[Candidate], objective: str, objectives: Sequence[str] | None,
                     space: SearchSpace) -> None:
        """pareto.json: the front (best first, each labelled by ``space.format_arch``), its primary ``objective``
        and all its ``objectives`` (None: the primary one and MACs)."""
        objectives = list(objectives or [objective, "macs"])
        cost = next((o for o in objectives if obj.is_cost(o)), "macs")
        entries = [{"rank": i + 1, "id": c.id, "arch": c.arch.to_dict(), "label": space.format_arch(c.arch),
                    "macs": c.cost.macs, "params": c.cost.params, "scores": dict(c.scores),
                    **({"latency_ms": c.cost.latency_ms} if c.cost.latency_ms is not None else {}),
                    **({"peak_memory_mb": c.cost.peak_memory_mb} if c.cost.peak_memory_mb is not None else {})}
                   for i, c in enumerate(front)]
        write_json_atomic(self.path / PARETO_JSON, {"objective": objective, "cost": cost, "objectives": objectives,
                                                    "front": entries})


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


class Run:
    """A finished or partial run, loaded from its directory. Python twin of the run folder."""

    def __init__(self, path: str | Path):
        self.dir = RunDir(path)
        self.config = self.dir.config()
        self.candidates = self.dir.read_candidates()

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def objective(self) -> str:
        return self.config["proxies"][0]

    @functools.cached_property
    def space(self) -> SearchSpace:
        """The search space the run was made in, rebuilt from run.json; it labels the run's archs
        (``run.space.format_arch(c.arch)``)."""
        if not isinstance(self.config.get("space"), dict):
            raise BadInputError(f"{self.path / RUN_JSON} records no search space ('space'); it was not written by "
                                "`studentnas search` or `studentnas puzzle`: rerun the search")
        return space_from_config(self.config["space"])

    @property
    def objectives(self) -> list[str]:
        """What the front is over: the run's --objectives, else (primary proxy, macs)."""
        return list(self.config.get("front_objectives") or [self.objective, "macs"])

    @property
    def pareto(self) -> list[Candidate]:
        """Non-dominated ok candidates over :attr:`objectives` (default: primary score up, MACs down), best first."""
        return front_of(self.candidates, self.objectives)

    def candidate(self, arch_id: str) -> Candidate:
        for c in self.candidates:
            if c.id == arch_id:
                return c
        raise BadInputError(f"run '{self.path}' has no candidate with id '{arch_id}'; ids are listed in "
                            f"{self.path / JOURNAL}")

    def to_dataframe(self):  # noqa: ANN201 - pandas is optional
        """One row per candidate: id, label, status, reason, macs, params, latency_ms and peak_memory_mb
        (NaN where not measured), score_<proxy> per proxy, seconds, worker, on_front."""
        try:
            import pandas as pd
        except ImportError:
            raise BadInputError("Run.to_dataframe needs pandas: pip install 'studentnas[pandas]'") from None
        front = {c.id for c in self.pareto}
        rows = [{"id": c.id, "label": self.space.format_arch(c.arch), "status": c.status, "reason": c.reason,
                 "macs": c.cost.macs, "params": c.cost.params, "latency_ms": _or_nan(c.cost.latency_ms),
                 "peak_memory_mb": _or_nan(c.cost.peak_memory_mb), **{f"score_{k}": v for k, v in c.scores.items()},
                 "seconds": c.seconds,
                 "worker": c.worker, "on_front": c.id in front} for c in self.candidates]
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"Run('{self.path}', {len(self.candidates)} candidates, {len(self.pareto)} on the front)"


def load_run(path: str | Path) -> Run:
    """Load a run directory written by ``studentnas search``."""
    return Run(path)
