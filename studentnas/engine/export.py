"""Export a searched student as safetensors plus a JSON sidecar, and load it back.

The file's safetensors metadata holds the same JSON as the sidecar (space config, arch, cost,
scores, classes, input size), so ``load_student`` needs only the ``.safetensors`` file. The weights
are the ones the student was scored with (its initialisation is seeded by the run seed and arch id).

Example::

    >>> path = export_student("runs/r1", rank=1, out="student.safetensors")  # doctest: +SKIP
    >>> model = load_student(path)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from studentnas.core.arch import Arch
from studentnas.core.candidate import Candidate
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES
from studentnas.core.space import SearchSpace
from studentnas.engine.evaluate import build_student
from studentnas.engine.rundir import Run
from studentnas.runfiles.atomic import write_atomic, write_json_atomic

META_KEY = "studentnas"


def space_from_config(config: dict[str, Any]) -> SearchSpace:
    """Rebuild the exact space instance recorded in a run or an exported file."""
    return SPACES.get(config["name"]).from_config(config)


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
        "format": 1, "space": config["space"], "arch": cand.arch.to_dict(), "label": str(cand.arch),
        "cost": cand.cost.to_dict(), "scores": dict(cand.scores), "num_classes": config["num_classes"],
        "input_size": config["input_size"], "teacher": config["teacher"], "run": str(run.path), "seed": config["seed"],
    }
    return write_student(out, model, meta)


def write_student(out: str | Path, model: nn.Module, meta: dict[str, Any], key: str = META_KEY) -> Path:
    """Write ``model``'s weights to ``out`` (.safetensors, ``meta`` as JSON under ``key`` in its metadata) and
    ``meta`` to the .json sidecar, both atomically. For :func:`load_student`, ``meta`` needs space, arch,
    num_classes and input_size. Used by ``export``, by ``distill`` for the trained students and by
    ``teacher train`` (with its own ``key``)."""
    from safetensors.torch import save_file

    out = Path(out)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    write_atomic(out, lambda tmp: save_file(state, tmp, metadata={key: json.dumps(meta)}))
    write_json_atomic(out.with_suffix(".json"), meta)
    return out


def read_student_meta(path: str | Path) -> dict[str, Any]:
    """The studentnas metadata of an exported ``.safetensors`` file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"student file '{path}' does not exist; create it with `studentnas export`")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = (fh.metadata() or {}).get(META_KEY)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for bad files
        raise BadInputError(f"'{path}' is not a readable safetensors file ({type(err).__name__}); "
                            "export it again with `studentnas export`") from None
    if meta is None:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise BadInputError(f"'{path}' has no studentnas metadata and no sidecar '{sidecar.name}'; "
                                "export it with `studentnas export`")
        meta = sidecar.read_text()
    return json.loads(meta)


def load_student(path: str | Path) -> nn.Module:
    """Rebuild an exported student module with its weights (timm-style, eval mode)."""
    from safetensors.torch import load_file

    meta = read_student_meta(path)
    space = space_from_config(meta["space"])
    model = space.build(Arch.from_dict(meta["arch"]), num_classes=meta["num_classes"], in_chans=meta["input_size"][0])
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
