"""search() end to end in-process, the run directory layout, export and load_student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import studentnas as sn
from studentnas.core.proxy import ProxyContext
from studentnas.core.space import space_from_config
from studentnas.engine.evaluate import build_student
from studentnas.hardware.counting import counted_macs


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> sn.Run:
    out = tmp_path_factory.mktemp("runs") / "r"
    return sn.search(teacher="resnet18", budget=["40MMACs", "3Mparams"], proxy="nwot,params,synflow",
                     candidates=12, image_size=32, batch_size=8, seed=1, out=out, quiet=True)


def test_run_directory_layout(run: sn.Run) -> None:
    cfg = json.loads((run.path / "run.json").read_text())
    assert cfg["status"] == "finished" and cfg["n_candidates"] == 12 and cfg["input_size"] == [3, 32, 32]
    assert cfg["budget"] == ["40MMACs", "3Mparams"] and cfg["proxies"] == ["nwot", "params", "synflow"]
    lines = (run.path / "candidates.jsonl").read_text().splitlines()
    assert len(lines) == 12
    front = json.loads((run.path / "pareto.json").read_text())["front"]
    assert front and {"id", "arch", "macs", "params", "scores"} <= set(front[0])
    scores = [e["scores"]["nwot"] for e in front]
    assert scores == sorted(scores, reverse=True), "best first"
    for entry in front:
        assert entry["macs"] <= 40e6 and entry["params"] <= 3e6
    macs = [e["macs"] for e in front]
    assert macs == sorted(macs, reverse=True), "on a front, a better score costs more"


def test_every_candidate_respects_the_budget(run: sn.Run) -> None:
    for cand in run.candidates:
        assert cand.cost.macs <= 40e6 and cand.cost.params <= 3e6


def test_dataframe(run: sn.Run) -> None:
    df = sn.load_run(run.path).to_dataframe()
    assert len(df) == 12 and df["on_front"].sum() == len(run.pareto) and "score_nwot" in df


def test_export_and_load_give_identical_outputs(run: sn.Run, tmp_path: Path) -> None:
    path = sn.export_student(run.path, tmp_path / "s.safetensors", rank=1)
    meta = json.loads(path.with_suffix(".json").read_text())
    best = run.pareto[0]
    assert meta["arch"] == best.arch.to_dict() and meta["scores"] == dict(best.scores)
    model = sn.load_student(path)
    space = space_from_config(run.config["space"])
    reference = build_student(space, best.arch, run.config["seed"], run.config["num_classes"], 3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert counted_macs(model, (3, 32, 32)) == best.cost.macs <= 40e6


def test_every_front_member_measures_within_budget_after_export(run: sn.Run, tmp_path: Path) -> None:
    for rank, cand in enumerate(run.pareto, start=1):
        model = sn.load_student(sn.export_student(run.path, tmp_path / f"{rank}.safetensors", rank=rank))
        assert counted_macs(model, (3, 32, 32)) == cand.cost.macs <= 40e6


def test_exported_student_reproduces_its_score(run: sn.Run, tmp_path: Path) -> None:
    # The exported weights are the scored weights: rescoring with the run's batch gives the same nwot.
    best = run.pareto[0]
    path = sn.export_student(run.path, tmp_path / "b.safetensors", arch_id=best.id)
    from studentnas.data import images as data

    images = data.load_images(None, split="train", limit=8, seed=1)  # exactly what search() loads
    batch, labels = data.calibration_batch(images, 8, (3, 32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1)
    cl = torch.channels_last  # the evaluator scores in channels_last; so do we, for bit-identical numbers
    ctx = ProxyContext(batch.contiguous(memory_format=cl), labels, 1000)
    student = sn.load_student(path).to(memory_format=cl)
    assert sn.get_proxy("nwot").score(student, ctx) == best.scores["nwot"]


def test_load_student_rejects_a_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors at all")
    with pytest.raises(sn.BadInputError, match="not a readable safetensors file"):
        sn.load_student(bad)


def test_export_cli(cli, run: sn.Run, tmp_path: Path) -> None:
    out = tmp_path / "cli.safetensors"
    proc = cli("export", str(run.path), "--rank", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and out.with_suffix(".json").exists() and "GMACs" in proc.stdout
    bad = cli("export", str(run.path), "--rank", "99", "--out", str(out))
    assert bad.returncode == 2 and "--rank must be between 1 and" in bad.stderr


def test_list_commands(cli) -> None:
    proc = cli("list", "proxies")
    assert proc.returncode == 0 and "nwot" in proc.stdout and "synflow" in proc.stdout
    assert "resnet101" in cli("list", "teachers", "resnet1*").stdout
    assert cli("list", "bananas").returncode == 2


def test_help_teaches(cli) -> None:
    out = cli("search", "--help").stdout
    assert "budget grammar" in out and "examples:" in out and "--resume" in out
