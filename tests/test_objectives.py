"""`search --objectives`: multi-objective runs on tiny NB201 searches (a few seconds each).

The front is checked against a brute-force dominance test written here (not pymoo's), and the
recorded hypervolume is recomputed from the recorded reference point.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import studentnas as sn
from studentnas.cli.main import main
from studentnas.core import objectives as obj
from studentnas.core.pareto import ReferencePoint, hypervolume

TINY = dict(teacher="resnet18", space="nb201", image_size=32, budget="60MMACs", batch_size=8, seed=0, quiet=True)
TINY_CLI = ["search", "--teacher", "resnet18", "--space", "nb201", "--image-size", "32", "--budget", "60MMACs",
            "--batch-size", "8", "--quiet"]


def brute_force_front(cands: list[sn.Candidate], objectives: list[str]) -> set[str]:
    vecs = {c.id: obj.minimisation_vector(c, objectives) for c in cands}
    vecs = {k: v for k, v in vecs.items() if v is not None}

    def dominated(v: tuple) -> bool:
        return any(all(a <= b for a, b in zip(w, v)) and w != v for w in vecs.values())

    return {k for k, v in vecs.items() if not dominated(v)}


@pytest.fixture(scope="module")
def nsga2_run(tmp_path_factory) -> sn.Run:
    out = tmp_path_factory.mktemp("obj") / "nsga2"
    return sn.search(**TINY, objectives="nwot,macs", searcher="nsga2", candidates=10, out=out)


def test_pareto_json_holds_the_front_of_the_objectives(nsga2_run: sn.Run) -> None:
    pareto = json.loads((nsga2_run.path / "pareto.json").read_text())
    assert pareto["objectives"] == ["nwot", "macs"] and pareto["objective"] == "nwot" and pareto["cost"] == "macs"
    assert {e["id"] for e in pareto["front"]} == brute_force_front(nsga2_run.candidates, ["nwot", "macs"])
    scores = [e["scores"]["nwot"] for e in pareto["front"]]
    assert scores == sorted(scores, reverse=True)
    assert all(c.cost.macs <= 60e6 for c in nsga2_run.candidates)


def test_run_json_records_hypervolume_and_its_reference_point(nsga2_run: sn.Run) -> None:
    cfg = nsga2_run.config
    assert cfg["objectives"] == ["nwot", "macs"] and cfg["searcher"] == "nsga2" and cfg["n_candidates"] == 10
    ref = ReferencePoint.from_dict(cfg["reference_point"])
    scores = [c.scores["nwot"] for c in nsga2_run.candidates if c.ok]
    assert ref.ideal == (max(scores), 0.0) and ref.nadir == (min(scores), 60e6)  # worst score, and the budget
    assert 0 < cfg["hypervolume"] < 1
    assert cfg["hypervolume"] == pytest.approx(hypervolume(nsga2_run.candidates, ["nwot", "macs"], ref)[0])


def test_default_search_stays_single_proxy_with_a_macs_front(tmp_path: Path) -> None:
    run = sn.search(**TINY, candidates=4, searcher="random", out=tmp_path / "r")
    assert run.config["objectives"] is None and run.config["front_objectives"] == ["nwot", "macs"]
    assert run.objectives == ["nwot", "macs"] and math.isfinite(run.config["hypervolume"])
    assert {c.id for c in run.pareto} == brute_force_front(run.candidates, ["nwot", "macs"])


def test_latency_objective_with_optuna_and_resume(tmp_path: Path, cli) -> None:  # noqa: ANN001
    out = tmp_path / "lat"
    first = cli(*TINY_CLI, "--objectives", "nwot,latency", "--searcher", "optuna-tpe", "--candidates", "5",
                "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "on the Pareto front of nwot vs latency" in first.stdout
    loud = [a for a in TINY_CLI if a != "--quiet"]  # the log line names what the budget measures
    again = cli(*loud, "--objectives", "nwot,latency", "--searcher", "optuna-tpe", "--candidates", "7",
                "--out", str(out), "--resume")
    assert again.returncode == 0, again.stderr
    assert "latency measured (an objective)" in again.stderr and "inf" not in again.stderr
    run = sn.load_run(out)
    assert run.config["replayed"] == 5 and len(run.candidates) == len({c.id for c in run.candidates}) == 7
    assert all(c.cost.latency_ms is not None and c.cost.latency_ms > 0 for c in run.candidates)
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["objectives"] == ["nwot", "latency"] and pareto["cost"] == "latency"
    assert {e["id"] for e in pareto["front"]} == brute_force_front(run.candidates, ["nwot", "latency"])
    assert run.config["reference_point"]["objectives"] == ["nwot", "latency"]
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="studentnas",
                              storage=JournalStorage(JournalFileBackend(str(out / "optuna.journal"))))
    evaluated = [t for t in study.trials if t.user_attrs.get("studentnas:kind") == "evaluated"]
    assert sorted(t.user_attrs["studentnas:arch"] for t in evaluated) == sorted(c.id for c in run.candidates)


@pytest.mark.parametrize(("args", "message"), [
    (["--objectives", "macs,params"], "all cost metrics; add a proxy score"),
    (["--objectives", "nwot"], "needs two or more objectives"),
    (["--objectives", "nwot,macs,nwot"], "named twice"),
    (["--objectives", "nwto,macs"], "unknown proxy 'nwto'. Did you mean 'nwot'"),
])
def test_bad_objectives_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main([*TINY_CLI, "--candidates", "2", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_resume_with_other_objectives_is_refused(nsga2_run: sn.Run, capsys) -> None:  # noqa: ANN001
    code = main([*TINY_CLI, "--searcher", "nsga2", "--candidates", "10", "--objectives", "nwot,params",
                 "--out", str(nsga2_run.path), "--resume"])
    assert code == 2 and "objectives: the run has ['nwot', 'macs']" in capsys.readouterr().err
