"""What identifies a ``studentnas puzzle`` run: its options (the CLI flags) and the identity check on resume.

A run directory records the settings that its cached work depends on (teacher, family, data, library
options, sample counts, BLD settings, seed) in ``RUN/puzzle/config.json``; a rerun with other settings
is refused (or starts over with ``fresh``), so cached activations, BLD weights and scores are never
mixed across settings. Budgets, the MIP's options and the global KD may change between calls.

Example:
    >>> opts = PuzzleOptions(teacher="resnet18", budget=["50%macs"], out="runs/p1")
    >>> opts.bld_samples, opts.mip_candidates, opts.metric
    (1024, 5, 'kl')
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studentnas.core.errors import BadInputError
from studentnas.puzzle.bld import BLDConfig
from studentnas.puzzle.samples import TeacherSpec
from studentnas.runfiles.atomic import write_json_atomic
from studentnas.runfiles.provenance import versions


@dataclass
class PuzzleOptions:
    """Settings of one ``studentnas puzzle`` call (the CLI flags)."""

    teacher: str
    budget: list[str]
    out: str
    data: str | None = None
    teacher_checkpoint: str | None = None
    image_size: int | None = None
    library: dict[str, Any] = field(default_factory=dict)  # family options (widths, noop, merge, ...)
    bld_samples: int = 1024
    score_samples: int = 500
    test_samples: int = 2000
    bld: BLDConfig = field(default_factory=BLDConfig)
    metric: str = "kl"
    max_noops: int | None = None
    random_baselines: int = 5
    mip_candidates: int = 5  # diverse MIP solutions re-scored as whole students; 1 = the plain optimum
    mip_diversity: float = 0.1
    gkd_epochs: int = 1
    gkd_steps: int = 200  # language models
    workers: int = 1
    ray_address: str | None = None
    mip_only: bool = False
    fresh: bool = False
    seed: int = 0
    quiet: bool = False


def run_identity(opts: PuzzleOptions, spec: TeacherSpec, family: str) -> dict[str, Any]:
    """The settings a run's cached work depends on (what ``config.json`` records)."""
    return {"teacher": spec.to_dict(), "family": family, "data": opts.data, "library": opts.library,
            "bld_samples": opts.bld_samples, "score_samples": opts.score_samples, "bld": asdict(opts.bld),
            "seed": opts.seed}


def check_identity(root: Path, identity: dict[str, Any], fresh: bool) -> None:
    """Refuse to resume ``root`` under another ``identity`` (or clear it when ``fresh``), then record it."""
    path = root / "config.json"
    if fresh and root.exists():
        shutil.rmtree(root)
    if path.is_file():
        old = json.loads(path.read_text()).get("identity")
        new = json.loads(json.dumps(identity))
        if old != new:
            keys = sorted(k for k in set(old or {}) | set(new) if (old or {}).get(k) != new.get(k))
            raise BadInputError(f"{root} holds a Puzzle run with other settings ({', '.join(keys)} differ); rerun "
                                "with the same settings to resume, --fresh to start over, or another --out")
    write_json_atomic(path, {"identity": identity, "versions": versions()})
