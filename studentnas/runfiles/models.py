"""Model files: every model the tool writes is ``NAME.safetensors`` plus a JSON sidecar ``NAME.json``.

The sidecar and the safetensors header (under :data:`META_KEY`) hold the same JSON: the writer's
metadata plus ``kind`` (``student``, ``puzzle-student``, ``teacher``, ``lm``), ``format``, the
provenance ``versions`` and ``write_id``, a random token the two files share. :func:`load_model`
reads it, looks the kind up in :data:`MODEL_KINDS` and returns the rebuilt module with its weights,
in eval mode. The rebuild functions live in the feature modules that write each kind; the registry
imports them on first lookup, so this layer imports no feature.

A model and its sidecar appear together or not at all. :func:`write_model` leaves a marker
``.NAME.safetensors.pending`` (writer host, pid and ``write_id``), renames the sidecar into place,
then the weights, then removes the marker; each file is written atomically. A kill in between leaves
the old pair, the new pair, or a new sidecar beside missing or older weights, which the loader
refuses (the ``write_id`` differs). The next write into that folder removes such a leftover once its
writer is dead (:func:`clean_interrupted`). Files written before the sidecar had a ``kind`` (their
header key names it) still load.

Example:
    >>> import tempfile
    >>> import torch
    >>> from studentnas.lm.model import create_lm
    >>> net = create_lm("gpt_tiny", layers=1).eval()
    >>> out = Path(tempfile.mkdtemp()) / "lm.safetensors"
    >>> sidecar = write_model(out, net, {"model": "gpt_tiny", "config": net.config.to_dict()}, kind="lm")
    >>> sidecar["kind"], sorted(p.name for p in out.parent.iterdir())
    ('lm', ['lm.json', 'lm.safetensors'])
    >>> tokens = torch.tensor([list(b"hi")])
    >>> torch.equal(load_model(out)(tokens), net(tokens))
    True
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.core.registry import Registry
from studentnas.runfiles.atomic import pid_alive, remove_stale_temps, this_host, write_atomic, write_json_atomic
from studentnas.runfiles.provenance import versions

#: Key of the sidecar's JSON in the safetensors header metadata.
META_KEY = "studentnas"
#: The file format of the pair (1: no ``kind``/``write_id``, a header key per kind).
FORMAT = 2
#: Header keys of format-1 files other than :data:`META_KEY`, and the kind each one held.
LEGACY_KEYS = {"studentnas_puzzle": "puzzle-student", "studentnas_teacher": "teacher", "studentnas_lm": "lm"}
WRITERS = "`studentnas export`, `distill`, `puzzle`, `teacher train` or `lm train`"

Rebuild = Callable[[Path, dict[str, Any]], nn.Module]
M = TypeVar("M", bound=nn.Module)

#: Model kind -> ``rebuild(path, meta) -> nn.Module`` (weights loaded). The built-in kinds register
#: themselves in these modules, imported on the first lookup.
MODEL_KINDS: Registry[Rebuild] = Registry("model kind", modules=(
    "studentnas.engine.export", "studentnas.puzzle.realise", "studentnas.distill.teacher_train",
    "studentnas.lm.model"))


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a ``.safetensors`` model file."""
    return Path(path).with_suffix(".json")


def marker_path(path: str | Path) -> Path:
    """The marker :func:`write_model` keeps beside ``path`` while the pair is being written."""
    path = Path(path)
    return path.with_name(f".{path.name}.pending")


def write_model(out: str | Path, model: nn.Module, meta: dict[str, Any], kind: str) -> dict[str, Any]:
    """Write ``model``'s weights to ``out`` (.safetensors) and its sidecar, together or not at all.

    The sidecar is ``meta`` plus ``kind``, ``format``, ``versions`` and ``write_id``; the same JSON goes
    into the weights' header. Leftovers of interrupted writes in ``out``'s folder are removed first.
    Returns the sidecar's dict.
    """
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_interrupted(out.parent)
    write_id = uuid.uuid4().hex
    full = {**meta, "format": FORMAT, "kind": kind, "versions": versions(), "write_id": write_id}
    text = json.dumps(full, sort_keys=True, allow_nan=False)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    marker = marker_path(out)
    write_json_atomic(marker, {"host": this_host(), "pid": os.getpid(), "write_id": write_id})
    try:
        write_json_atomic(sidecar_path(out), full)
        write_atomic(out, lambda tmp: save_file(state, tmp, metadata={META_KEY: text}))
    except BaseException:
        settle(out, write_id)
        raise
    marker.unlink(missing_ok=True)
    return full


def settle(out: Path, write_id: str) -> None:
    """End the write ``write_id`` of ``out`` that stopped: a sidecar of that write without its weights is
    removed with the weights beside it (older ones, whose sidecar it replaced); then the marker."""
    sidecar = sidecar_path(out)
    if _sidecar_id(sidecar) == write_id and _weights_id(out) != write_id:
        sidecar.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    marker_path(out).unlink(missing_ok=True)


def clean_interrupted(folder: str | Path) -> list[Path]:
    """Settle the model writes in ``folder`` whose writer died (on this host), their temporary files
    included; returns their paths."""
    settled = []
    for marker in Path(folder).glob(".*.safetensors.pending"):
        try:
            record = json.loads(marker.read_text())
            host, pid, write_id = record["host"], int(record["pid"]), str(record["write_id"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours, or gone meanwhile
        if host != this_host() or pid_alive(pid):
            continue
        out = marker.with_name(marker.name[1:].removesuffix(".pending"))
        settle(out, write_id)
        for path in (out, sidecar_path(out), marker):
            remove_stale_temps(path)
        settled.append(out)
    return settled


def _sidecar_id(sidecar: Path) -> str | None:
    try:
        return json.loads(sidecar.read_text()).get("write_id")
    except (OSError, ValueError, AttributeError):
        return None


def _weights_id(path: Path) -> str | None:
    try:
        header = read_header(path)
    except BadInputError:
        return None
    return None if header is None else header.get("write_id")


def read_header(path: str | Path) -> dict[str, Any] | None:
    """The studentnas metadata in a ``.safetensors`` header (``kind`` filled in for format-1 files);
    None when it has none. Raises :class:`BadInputError` for a missing or unreadable file."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"model file '{path}' is a directory; pass the .safetensors file inside it")
    if not path.is_file():
        raise BadInputError(f"model file '{path}' does not exist; write it with {WRITERS}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            found = fh.metadata() or {}
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for bad files
        raise BadInputError(f"'{path}' is not a readable safetensors file (corrupt or another format: "
                            f"{type(err).__name__}); write it again with {WRITERS}") from None
    for key in (META_KEY, *LEGACY_KEYS):
        if key in found:
            meta = _parse(found[key], f"the header of '{path}'")
            meta.setdefault("kind", LEGACY_KEYS.get(key, "student"))
            return normalised(meta)
    return None


def normalised(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with a format-1 kind name replaced by today's (``puzzle`` -> ``puzzle-student``)."""
    return {**meta, "kind": "puzzle-student"} if meta.get("kind") == "puzzle" else meta


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise BadInputError(f"{where} is not a JSON object; write the model again with {WRITERS}")
    return meta


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of model file ``path``: its sidecar, or its header when the sidecar is absent.

    Refuses a sidecar that belongs to another write than the weights (an interrupted write).
    """
    path = Path(path)
    sidecar = sidecar_path(path)
    if not path.exists() and sidecar.is_file() and _sidecar_id(sidecar):
        raise BadInputError(f"'{path}' is missing: its write was interrupted or is still running (only its "
                            f"sidecar '{sidecar.name}' exists); write the model again")
    header = read_header(path)
    if not sidecar.is_file():
        if header is None:
            raise BadInputError(f"'{path}' has no studentnas metadata and no sidecar '{sidecar.name}'; "
                                f"write it with {WRITERS}")
        return header
    try:
        side = _parse(sidecar.read_text(), f"sidecar '{sidecar}'")
    except OSError as err:
        raise BadInputError(f"sidecar '{sidecar}' cannot be read ({err.strerror}); fix its permissions") from None
    if side.get("write_id") != (header or {}).get("write_id"):
        raise BadInputError(f"'{path}' and its sidecar '{sidecar.name}' come from different writes (one was "
                            "interrupted or is still running); write the model again")
    if header is not None and "write_id" not in header:
        return header  # format 1: the header is what load_student always read
    side.setdefault("kind", "student")
    return normalised(side)


def read_weights(path: str | Path) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file (``name -> tensor``)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for bad files
        raise BadInputError(f"'{path}' is not a readable safetensors file ({type(err).__name__}); "
                            f"write it again with {WRITERS}") from None


def load_weights(model: M, path: str | Path) -> M:
    """``model`` with the weights of ``path`` (every key must match), in eval mode."""
    try:
        model.load_state_dict(read_weights(path), strict=True)
    except (RuntimeError, KeyError) as err:
        first = (str(err).splitlines() or [""])[0][:160]
        raise BadInputError(f"'{path}' does not load into the architecture its metadata records ({first}); "
                            "write the model again") from None
    return model.eval()


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the model saved at ``path`` (any kind the tool writes) with its weights, in eval mode.

    ``studentnas.load_student`` is this function under its older name.
    """
    meta = read_model_meta(path)
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in MODEL_KINDS:
        raise BadInputError(f"'{path}' holds a model of kind {kind!r}, which this studentnas cannot rebuild "
                            f"(known: {', '.join(MODEL_KINDS.list())}); load it with the studentnas that wrote it")
    try:
        return MODEL_KINDS.get(kind)(Path(path), meta).eval()
    except KeyError as err:
        raise BadInputError(f"the metadata of '{path}' lacks {err}, which a {kind} model needs; "
                            f"write it again with {WRITERS}") from None
