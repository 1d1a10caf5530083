"""`studentnas pick`: the best student of a run under a smaller budget, on a run whose numbers we chose.

The run directory is written by hand (RunDir + candidates), so every expected answer is derived
by reading the table below, not by running a search.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import studentnas as sn
from studentnas.core.candidate import Candidate
from studentnas.core.cost import Cost
from studentnas.engine.pick import pick_student
from studentnas.engine.rundir import RunDir

# id -> (GMACs, M params, nwot, synflow); "f" failed. Front over (nwot up, MACs down): c1 c2 c3 c4.
TABLE = {"c1": (4.0, 20, 100.0, 5.0), "c2": (2.5, 12, 90.0, 9.0), "c3": (1.8, 15, 80.0, 1.0),
         "c4": (1.2, 6, 60.0, 3.0), "c5": (1.9, 9, 70.0, 8.0), "f": (0.5, 2, None, None)}
ARCHS = {name: sn.get_space("nb201").sample(np.random.default_rng(i)) for i, name in enumerate(TABLE)}  # 6 cells


@pytest.fixture(scope="module")
def run_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pick") / "run"
    run_dir = RunDir(path)
    run_dir.create({"teacher": "resnet50", "budget": ["5GFLOPs"], "proxies": ["nwot", "synflow"],
                    "space": sn.get_space("nb201").config(),
                    "teacher_cost": {"macs": 4e9, "params": 25e6}, "front_objectives": ["nwot", "macs"]})
    for name, (gmacs, mparams, nwot, synflow) in TABLE.items():
        arch, cost = ARCHS[name], Cost(gmacs * 1e9, mparams * 1e6)
        run_dir.append(Candidate(arch, cost, status="failed", reason="nan") if nwot is None
                       else Candidate(arch, cost, {"nwot": nwot, "synflow": synflow}))
    return path


def _id(name: str) -> str:
    return ARCHS[name].id


def test_smaller_budgets_by_hand(run_path: Path) -> None:
    best = pick_student(run_path, "2GFLOPs")  # c3, c4, c5 fit (the failed one never counts); c3 has nwot 80
    assert (best.candidate.id, best.front_rank, best.n_fitting, best.looser_than_run) == (_id("c3"), 3, 3, [])
    both = pick_student(run_path, ["2GFLOPs", "10Mparams"])  # c3 has 15 M params: c5 (70) beats c4 (60)
    assert (both.candidate.id, both.front_rank) == (_id("c5"), None)  # c5 is dominated by c3 on the front
    assert pick_student(run_path, "2GFLOPs", objective="synflow").candidate.id == _id("c5")  # synflow 8
    assert sn.pick(run_path, "50%MACs").id == _id("c3")  # half of the teacher's 4 GMACs is 2 GMACs
    assert sn.pick(run_path, "2.5GFLOPs").id == _id("c2")  # the limit is inclusive


def test_a_budget_looser_than_the_run_is_noted(run_path: Path) -> None:
    wide = pick_student(run_path, "6GFLOPs")
    assert wide.candidate.id == _id("c1") and wide.looser_than_run == ["6GFLOPs"]


@pytest.mark.parametrize(("budget", "objective", "message"), [
    ("1GFLOPs", None, "the smallest on its front, {c4}, has 1.2 GMACs"),
    ("30ms", None, "did not measure latency"),
    ("2GFLOPs", "grasp", "pick one of nwot, synflow"),
    ("2GFLOPs", "macs", "is not a proxy this run scored"),
    ("2 bananas", None, "unknown unit 'bananas'"),
])
def test_bad_picks_say_what_to_do(run_path: Path, budget: str, objective: str | None, message: str) -> None:
    with pytest.raises(sn.BadInputError, match=message.format(c4=_id("c4"))):
        pick_student(run_path, budget, objective)


def test_cli_json_and_exit_status(run_path: Path, cli) -> None:  # noqa: ANN001
    ok = cli("pick", str(run_path), "--budget", "2GFLOPs", "--json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert (data["id"], data["score"], data["front_rank"], data["budget"]) == (_id("c3"), 80.0, 3, ["2GFLOPs"])
    assert data["cost"]["macs"] == 1.8e9 and data["budget_resolved"] == "macs <= 2 GMACs"
    tight = cli("pick", str(run_path), "--budget", "1GFLOPs")
    assert tight.returncode == 2 and "Traceback" not in tight.stderr
    assert f"{_id('c4')}, has 1.2 GMACs" in tight.stderr and tight.stderr.count("\n") == 1


def test_cli_text_names_the_student_and_how_to_export_it(run_path: Path, capsys) -> None:  # noqa: ANN001
    from studentnas.cli.main import main

    assert main(["pick", str(run_path), "--budget", "6GFLOPs"]) == 0
    out, err = capsys.readouterr()
    assert f"by nwot: {_id('c1')} (4 GMACs, 20 M params; rank 1 on the run's front)" in out
    assert f"studentnas export {run_path} --id {_id('c1')}" in out
    assert "6GFLOPs is looser than the run's own budget (5GFLOPs)" in err
