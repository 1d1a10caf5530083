"""One model format, one loader: each kind the tool writes, written by its real command, loads with
``studentnas.load_model``; a model and its sidecar appear together or not at all, even under SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import studentnas as sn
from studentnas.core.errors import BadInputError
from studentnas.lm.model import create_lm
from studentnas.runfiles import models
from studentnas.runfiles.models import load_model, marker_path, read_weights, sidecar_path, write_model

FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
KINDS = {"student", "puzzle-student", "teacher", "lm"}


def _sidecar(path: Path) -> dict:
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["format"] == 2 and {"studentnas", "torch", "timm"} <= set(meta["versions"]) and meta["write_id"]
    return meta


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    assert not a.training and not b.training
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_the_facade_has_one_loader() -> None:
    assert sn.load_student is sn.load_model is load_model
    assert "load_model" in sn.__all__ and "load_student" in sn.__all__
    assert KINDS <= set(models.MODEL_KINDS.list())


def test_searched_student(cli, tmp_path: Path) -> None:
    from studentnas.core.space import space_from_config
    from studentnas.engine.evaluate import build_student

    run_dir, out = tmp_path / "run", tmp_path / "s.safetensors"
    done = cli("search", "--teacher", "resnet18", "--space", "nb201", "--image-size", "32", "--budget", "60MMACs",
               "--batch-size", "8", "--candidates", "4", "--quiet", "--out", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert cli("export", str(run_dir), "--rank", "1", "--out", str(out)).returncode == 0
    assert _sidecar(out)["kind"] == "student"
    run = sn.load_run(run_dir)
    best = run.pareto[0]
    writer = build_student(space_from_config(run.config["space"]), best.arch, run.config["seed"],
                           run.config["num_classes"], 3).eval()
    _same_outputs(load_model(out), writer, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))


def test_teacher(cli, tmp_path: Path) -> None:
    from studentnas.data.teachers import load_teacher

    if not FMNIST.is_file():
        pytest.fail("Debian's dataset-fashion-mnist is required (make data installs it)")
    out = tmp_path / "t.safetensors"
    done = cli("teacher", "train", "--model", "resnet18", "--data", "fashion-mnist", "--epochs", "1", "--image-size",
               "16", "--train-images", "64", "--test-images", "32", "--batch-size", "16", "--threads", "1",
               "--quiet", "--out", str(out))
    assert done.returncode == 0, done.stderr
    meta = _sidecar(out)
    assert meta["kind"] == "teacher" and meta["num_classes"] == 10
    model = load_model(out)
    assert model.num_classes == 10 and type(model).__name__ == "ResNet"
    # the same weights as --teacher-checkpoint reads them
    _same_outputs(model, load_teacher("resnet18", out).model, torch.randn(2, 3, 16, 16))


def test_language_model(cli, tmp_path: Path) -> None:
    from studentnas.lm.model import load_lm

    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
    out = tmp_path / "lm.safetensors"
    done = cli("lm", "train", "--data", f"text:{text}", "--steps", "2", "--batch-size", "2", "--context", "32",
               "--eval-windows", "2", "--quiet", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert _sidecar(out)["kind"] == "lm"
    model = load_model(out)
    assert model.config.context == 32
    _same_outputs(model, load_lm("gpt_tiny", out), torch.randint(0, 256, (2, 32)))


def test_puzzle_student(cli, tmp_path: Path) -> None:
    """The student `studentnas puzzle` writes (random teacher: no global KD) is the realised MIP choice
    with BN statistics re-estimated: the same parameters as its BLD blocks, the same outputs."""
    from studentnas.puzzle.decompose import family_for
    from studentnas.puzzle.library import Library
    from studentnas.puzzle.realise import realise
    from studentnas.puzzle.samples import TeacherSpec

    if not FMNIST.is_file():
        pytest.fail("Debian's dataset-fashion-mnist is required (make data installs it)")
    out = tmp_path / "r"
    done = cli("puzzle", "--teacher", "resnet18", "--budget", "80%macs", "--out", str(out), "--image-size", "32",
               "--data", "fashion-mnist", "--bld-samples", "32", "--score-samples", "16", "--test-samples", "16",
               "--bld-budget", "32", "--random-baselines", "1", "--threads", "1", "--quiet", "--library-options",
               '{"widths": [0.5], "merge": false, "linear": false, "noop": false}')
    assert done.returncode == 0, done.stderr
    root = out / "puzzle"
    path = root / "students" / "80pctmacs.safetensors"
    assert _sidecar(path)["kind"] == "puzzle-student"
    student = sn.load_model(path)
    lib = Library.from_dict(json.loads((root / "library.json").read_text()))
    solution = json.loads((root / "solutions" / "80pctmacs.json").read_text())
    spec = TeacherSpec.from_dict(json.loads((root / "config.json").read_text())["identity"]["teacher"])
    teacher = spec.load()
    family = family_for(teacher)
    writer = realise(family.decompose(teacher, spec.input_shape), family,
                     [lib.by_id()[c["id"]].replacement for c in solution["mip"]["chosen"]], root)
    weights = read_weights(path)
    for name, value in writer.named_parameters():
        assert torch.equal(value, weights[name]), name
    writer.load_state_dict({k: v for k, v in weights.items() if "running_" in k or "num_batches" in k}, strict=False)
    _same_outputs(student, writer, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))


def _tiny_lm(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_lm("gpt_tiny", layers=1, dim=16, heads=2, kv_heads=2, ffn_dim=32, context=8).eval()


def _write_lm(path: Path, seed: int) -> dict:
    net = _tiny_lm(seed)
    return write_model(path, net, {"model": "gpt_tiny", "config": net.config.to_dict(), "seed": seed}, kind="lm")


TOKENS = torch.tensor([list(b"abcdefgh")])

# Writes the seed-1 model over each folder's seed-0 model, SIGKILLed at the point the folder is named after
# (each in a forked child, so the interpreter and torch start once).
KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import torch
    from studentnas.lm.model import create_lm
    from studentnas.runfiles import models

    def kill(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    for folder in map(Path, sys.argv[1:]):
        if os.fork() == 0:
            json_atomic, atomic = models.write_json_atomic, models.write_atomic
            if folder.name == "before-sidecar":  # the marker is written, the sidecar not yet
                models.write_json_atomic = lambda p, d: kill() if p.suffix == ".json" else json_atomic(p, d)
            elif folder.name == "between-files":  # the new sidecar is in place, the weights in a temp file
                models.write_atomic = lambda p, write, **k: atomic(p, lambda tmp: (write(tmp), kill()), **k)
            else:  # both files are in place, the marker not yet removed
                models.write_atomic = lambda *a, **k: (atomic(*a, **k), kill())
            torch.manual_seed(1)
            net = create_lm("gpt_tiny", layers=1, dim=16, heads=2, kv_heads=2, ffn_dim=32, context=8).eval()
            models.write_model(folder / "m.safetensors", net, {"model": "gpt_tiny", "config": net.config.to_dict(),
                                                              "seed": 1}, kind="lm")
            os._exit(0)
        _, status = os.wait()
        print(folder.name, os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
""")


def test_a_kill_at_any_moment_leaves_a_whole_model_or_none(tmp_path: Path) -> None:
    points = ["before-sidecar", "between-files", "after-both"]
    for point in points:
        _write_lm(tmp_path / point / "m.safetensors", seed=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, *(str(tmp_path / p) for p in points)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == [w for p in points for w in (p, "True")], proc.stderr
    old, new = _tiny_lm(0)(TOKENS), _tiny_lm(1)(TOKENS)
    for point in points:
        path = tmp_path / point / "m.safetensors"
        assert marker_path(path).is_file(), "the writer died before removing its marker"
        if point == "between-files":
            assert any(p.name.endswith(".tmp") for p in path.parent.iterdir()), "the weights' temp file is left"
        if point == "between-files":
            with pytest.raises(BadInputError, match="come from different writes.*write the model again"):
                load_model(path)
        else:
            assert torch.equal(load_model(path)(TOKENS), old if point == "before-sidecar" else new)
        _write_lm(path.with_name("next.safetensors"), seed=2)  # the next write into the folder settles it
        names = sorted(p.name for p in path.parent.iterdir())
        expected = ["next.json", "next.safetensors"] + ([] if point == "between-files" else ["m.json", "m.safetensors"])
        assert names == sorted(expected), point
        if point == "between-files":
            with pytest.raises(BadInputError, match="does not exist"):
                load_model(path)


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.safetensors"

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(models, "write_atomic", disk_full)  # fails between the sidecar and the weights
    with pytest.raises(OSError, match="No space"):
        _write_lm(path, seed=0)
    assert not list(tmp_path.iterdir())


def test_a_sidecar_without_its_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    _write_lm(path, seed=0)
    path.unlink()
    with pytest.raises(BadInputError, match="m.safetensors' is missing: its write was interrupted"):
        load_model(path)


def test_format_1_files_still_load(tmp_path: Path) -> None:
    """Files of the first format: metadata under a key per kind, no kind/write_id (students had none)."""
    net = _tiny_lm(0)
    old = {"format": 1, "model": "gpt_tiny", "config": net.config.to_dict()}
    path = tmp_path / "lm.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path),
              metadata={"studentnas_lm": json.dumps(old)})
    sidecar_path(path).write_text(json.dumps(old))
    assert torch.equal(load_model(path)(TOKENS), net(TOKENS))
    sidecar_path(path).unlink()  # the header alone is enough, as it always was
    assert models.read_model_meta(path)["kind"] == "lm"


@pytest.mark.parametrize(("content", "sidecar", "needle"), [
    (b"not safetensors at all", None, "not a readable safetensors file"),
    (None, None, "has no studentnas metadata and no sidecar 'x.json'"),
    (None, '{"kind": "hologram", "write_id": null}', "kind 'hologram', which this studentnas cannot rebuild"),
    (None, "{torn", "sidecar '.*x.json' is not a JSON object"),
    (None, '{"kind": "student"}', "lacks 'space', which a student model needs"),
])
def test_bad_files_are_one_line_bad_input(tmp_path: Path, content: bytes | None, sidecar: str | None,
                                          needle: str) -> None:
    path = tmp_path / "x.safetensors"
    if content is None:
        save_file({"w": torch.zeros(2)}, str(path))
    else:
        path.write_bytes(content)
    if sidecar is not None:
        sidecar_path(path).write_text(sidecar)
    with pytest.raises(BadInputError, match=needle) as info:
        load_model(path)
    assert "\n" not in str(info.value) and "x." in str(info.value)
    with pytest.raises(BadInputError, match="is a directory"):
        load_model(tmp_path)
