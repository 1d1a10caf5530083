"""Export a searched student as safetensors plus a JSON sidecar (kind ``student``), and rebuild it.

The pair is written by :func:`studentnas.runfiles.models.write_model`; its metadata holds the space
config, arch, cost, scores, classes and input size, from which :func:`rebuild_student` (registered for
:func:`studentnas.load_model`) builds the module. The weights are the ones the student was scored with
(its initialisation is seeded by the run seed and arch id). ``distill`` writes its trained students as
the same kind.

Example::

    >>> path = export_student("runs/r1", rank=1, out="student.safetensors")  # needs a run  # doctest: +SKIP
    >>> model = load_model(path)  # the file above  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from studentnas.core.arch import Arch
from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError
from studentnas.core.space import space_from_config
from studentnas.engine.evaluate import build_student
from studentnas.engine.rundir import Run
from studentnas.runfiles.models import MODEL_KINDS, load_weights, write_model


def pick_candidate(run: Run, rank: int | None = None, arch_id: str | None = None) -> Candidate:
    """The ``rank``-th member of the front (1 = best score), or the candidate with ``arch_id``."""
    if (rank is None) == (arch_id is None):
        raise BadInputError("pass exactly one of --rank K or --id ID")
    if arch_id is not None:
        cand = run.candidate(arch_id)
        if not cand.ok:
            raise BadInputError(f"candidate {arch_id} {cand.status} ({cand.reason}); pick an ok candidate")
        return cand
    front = run.pareto
    if not 1 <= rank <= len(front):
        raise BadInputError(f"--rank must be between 1 and {len(front)} (the front of '{run.path}'), got {rank}")
    return front[rank - 1]


def export_student(run_path: str | Path, out: str | Path, rank: int | None = None, arch_id: str | None = None) -> Path:
    """Write ``out`` (.safetensors) and ``out`` with a .json suffix for one student of a run."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise BadInputError(f"--out must end in .safetensors, got '{out}'")
    run = Run(run_path)
    cand = pick_candidate(run, rank, arch_id)
    config = run.config
    space = space_from_config(config["space"])
    model = build_student(space, cand.arch, config["seed"], config["num_classes"], config["input_size"][0])
    meta = {
        "space": config["space"], "arch": cand.arch.to_dict(), "label": space.format_arch(cand.arch),
        "cost": cand.cost.to_dict(), "scores": dict(cand.scores), "num_classes": config["num_classes"],
        "input_size": config["input_size"], "teacher": config["teacher"], "run": str(run.path), "seed": config["seed"],
    }
    write_model(out, model, meta, kind="student")
    return out


@MODEL_KINDS.register("student")
def rebuild_student(path: Path, meta: dict[str, Any]) -> nn.Module:
    """A searched or distilled student: the recorded space builds the arch, ``path`` gives the weights."""
    space = space_from_config(meta["space"])
    model = space.build(Arch.from_dict(meta["arch"]), num_classes=meta["num_classes"], in_chans=meta["input_size"][0])
    return load_weights(model, path)
