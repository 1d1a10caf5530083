"""`studentnas distill RUN` end to end on a real Ray Tune (Optuna TPE + ASHA), with a real teacher trained
by `studentnas teacher train` on Fashion-MNIST and a real search run: the exported students, a trial
that fails and is retried from its checkpoint, a driver killed with SIGKILL and resumed, a two-node
loopback cluster, and bad input. Tiny on purpose: 16 px images, a few hundred images, 1-2 epochs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import test_ray
from PIL import Image

import studentnas as sn
from studentnas.cli.main import main
from studentnas.core.space import space_from_config
from studentnas.data.images import load_images
from studentnas.data.teachers import load_teacher
from studentnas.distill.batches import Batches
from studentnas.distill.evaluation import evaluate
from studentnas.distill.journal import TrialJournal
from studentnas.distill.trial import FAIL_ENV
from studentnas.engine.parallel import worker_node
from studentnas.runfiles.models import load_model, read_model_meta

cluster = test_ray.cluster  # the two-node loopback Ray fixture of the search tests
TINY = ["--data", "fashion-mnist", "--train-images", "200", "--test-images", "100", "--batch-size", "32"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "t.safetensors"
    sn.distill.train_teacher("resnet18", "fashion-mnist", 1, out, image_size=16, train_images=300, test_images=100,
                             batch_size=32, quiet=True)
    return out


@pytest.fixture(scope="module")
def searched(tmp_path_factory, teacher: Path) -> Path:
    """A real search with the trained teacher (--teacher-checkpoint), NB201 students at 16 px."""
    out = tmp_path_factory.mktemp("runs") / "r"
    sn.search(teacher="resnet18", teacher_checkpoint=teacher, space="nb201", budget="10MMACs", image_size=16,
              searcher="random", candidates=4, batch_size=8, seed=2, out=out, quiet=True)
    return out


@pytest.fixture
def run_dir(searched: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(searched, copy)
    return copy


def rows(run: Path) -> list[dict]:
    return TrialJournal(run / "distill" / "trials.jsonl").read()


def test_distill_with_baseline_exports_students_and_retries_a_failed_trial(cli, run_dir: Path, tmp_path: Path):
    marker = tmp_path / "failed-once"
    done = cli("distill", str(run_dir), "--top", "1", "--epochs", "2", "--trials", "2", "--baseline", "--cpus", "2",
               *TINY, env={FAIL_ENV: str(marker), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert marker.exists(), "one trial failed on purpose"
    journal = rows(run_dir)
    assert sorted((r["mode"], r["status"]) for r in journal) == [("ce", "ok")] * 2 + [("kd", "ok")] * 2
    retried = [r for r in journal if r["restarts"] == 1]
    assert len(retried) == 1, "FailureConfig retried the trial that failed"
    assert [h["epoch"] for h in retried[0]["history"]] == [1, 2], "retried from its epoch-1 checkpoint, not redone"
    for r in journal:  # ASHA (grace 1 epoch, halving) may stop a lagging trial after its first epoch
        assert len(r["history"]) == r["epochs_done"] and (r["epochs_done"] == 2 or r["stopped_early"]), r

    results = json.loads((run_dir / "distill" / "results.json").read_text())
    assert results["status"] == "done" and results["modes"] == ["kd", "ce"] and len(results["students"]) == 1
    student = results["students"][0]
    front = json.loads((run_dir / "pareto.json").read_text())["front"]
    assert student["id"] == front[0]["id"]
    assert student["kd_gain"] == pytest.approx(student["kd"]["test_top1"] - student["ce"]["test_top1"])
    assert student["kd"]["trials"] == 2 and student["ce"]["trials"] == 2
    assert set(student["kd"]["best_config"]) == {"lr", "weight_decay", "temperature", "ce_weight"}
    assert set(student["ce"]["best_config"]) == {"lr", "weight_decay"}, "the baseline tunes the shared ranges"
    assert student["ce"]["train_config"]["losses"] == [] and student["kd"]["train_config"]["losses"][0]["name"] == "kd"
    assert results["teacher"]["test_top1"] > 0 and len(list((run_dir / "distill" / "teacher_logits").iterdir())) == 1

    config = json.loads((run_dir / "run.json").read_text())
    space = space_from_config(config["space"])
    t = load_teacher("resnet18", config["teacher_checkpoint"])
    test = load_images("fashion-mnist", "test", limit=100, seed=0)
    for mode, name in (("kd", f"{student['id']}.safetensors"), ("ce", f"{student['id']}-ce.safetensors")):
        path = run_dir / "students" / name
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta == read_model_meta(path)
        cost = space.cost(sn.Arch.from_dict(meta["arch"]), (3, 16, 16), 10)
        assert (meta["macs"], meta["params"]) == (cost.macs, cost.params)
        assert meta["latency_ms"] > 0 and meta["best_config"] == student[mode]["best_config"]
        assert meta["test_top1"] == student[mode]["test_top1"] and meta["distill"]["mode"] == mode
        model = load_model(path)
        again = evaluate(model, Batches(test, (3, 16, 16), t.mean, t.std, 32))
        assert again["top1"] == pytest.approx(meta["test_top1"]), "the exported weights are the evaluated ones"

    # the same command again: it already holds a distillation
    again = cli("distill", str(run_dir), "--top", "1", "--epochs", "2", "--trials", "2", "--baseline", *TINY)
    assert again.returncode == 2 and "already holds a distillation; pass --resume" in again.stderr
    changed = cli("distill", str(run_dir), "--top", "1", "--epochs", "3", "--trials", "2", "--baseline", "--resume",
                  *TINY)
    assert changed.returncode == 2 and "epochs: the run has 2, you asked 3" in changed.stderr


@pytest.mark.slow
def test_sigkilled_driver_resumes_without_losing_a_finished_trial(cli, run_dir: Path) -> None:
    args = ["distill", str(run_dir), "--top", "1", "--epochs", "1", "--trials", "3", "--cpus", "1", *TINY]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "studentnas.cli", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = run_dir / "distill" / "trials.jsonl"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_text().count("\n") >= 1:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the driver only, mid-run
        proc.wait()
    finally:
        time.sleep(1)
        try:  # Ray's agents outlive a SIGKILLed driver: end the process group this test started
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = rows(run_dir)
    assert 1 <= len(before) < 3, "killed part-way"
    assert not (run_dir / "distill" / "results.json").exists()

    resumed = cli(*args, "--resume", env={"OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    after = rows(run_dir)
    assert after[: len(before)] == before, "finished trials are kept exactly"
    assert len(after) == 3 and len({r["trial_id"] for r in after}) == 3, "only the missing trials ran"
    configs = [json.dumps(r["config"], sort_keys=True) for r in after]
    assert len(set(configs)) == 3, "the resumed searcher does not propose a finished trial's config again"
    results = json.loads((run_dir / "distill" / "results.json").read_text())
    assert results["status"] == "done" and results["students"][0]["kd"]["trials"] == 3


@pytest.mark.slow
def test_distill_on_a_two_node_loopback_cluster(cli, cluster, run_dir: Path) -> None:
    address, env = cluster
    done = cli("distill", str(run_dir), "--top", "1", "--epochs", "1", "--trials", "2", "--ray-address", address,
               *TINY, env=env)
    assert done.returncode == 0, done.stderr
    journal = rows(run_dir)
    assert len(journal) == 2 and all(r["status"] == "ok" for r in journal)
    nodes = {worker_node(r["worker"]) for r in journal}
    assert len(nodes) == 2 and "" not in nodes, f"one trial per node: {[r['worker'] for r in journal]}"
    assert (run_dir / "students" / f"{journal[0]['student']}.safetensors").is_file()


# ------------------------------------------------------------------------------------------ bad input


def error_line(capsys, *args: str) -> str:
    code = main(["distill", *args])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("distill:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_choose_students_by_top_or_ids(searched: Path) -> None:
    from studentnas.distill.prepare import choose_students

    run = sn.load_run(searched)
    front = run.pareto
    assert [c.id for c in choose_students(run, None, None)] == [front[0].id], "default: the best student"
    assert [c.id for c in choose_students(run, len(front), None)] == [c.id for c in front]
    ids = [c.id for c in run.candidates if c.ok][:2][::-1]
    assert [c.id for c in choose_students(run, None, ",".join(ids))] == ids, "in the order given"
    with pytest.raises(sn.BadInputError, match="has no candidate with id 'nope'"):
        choose_students(run, None, "nope")
    with pytest.raises(sn.BadInputError, match="not both"):
        choose_students(run, 1, ids)


def test_run_without_a_pareto_front(capsys, run_dir: Path) -> None:
    (run_dir / "candidates.jsonl").write_text("")
    line = error_line(capsys, str(run_dir), *TINY)
    assert "has no Pareto front" in line and "--resume" in line


def test_corrupt_trial_journal_is_refused_before_ray_starts(capsys, run_dir: Path) -> None:
    journal = run_dir / "distill" / "trials.jsonl"
    journal.parent.mkdir()
    journal.write_text('{"student": "a", "mode": "kd", "status": "ok"}\nnot json\n{"student": "b"}\n{broken\n')
    line = error_line(capsys, str(run_dir), "--resume", *TINY)
    assert "corrupt at 2 line(s): line 2" in line and "line 4" in line, line
    assert sorted(p.name for p in journal.parent.iterdir()) == ["trials.jsonl"], "nothing written"


def test_top_larger_than_the_front(capsys, run_dir: Path) -> None:
    n = len(json.loads((run_dir / "pareto.json").read_text())["front"])
    line = error_line(capsys, str(run_dir), "--top", str(n + 5), *TINY)
    assert f"--top {n + 5} is larger than the Pareto front" in line and f"use --top {n} or fewer" in line


def test_search_space_with_an_unknown_key(capsys, run_dir: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.01, 0.1]\nlearning_rate_decay: 0.5\n")
    line = error_line(capsys, str(run_dir), "--search-space", str(space), *TINY)
    assert "unknown key 'learning_rate_decay'" in line
    assert "valid keys: ce_weight, label_smoothing, loss, loss_weights, lr, momentum, temperature, weight_decay" in line
    assert not (run_dir / "distill").exists()


def test_data_with_another_class_count_than_the_teacher(capsys, run_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog", "fox"):
            folder = tmp_path / "folder" / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    line = error_line(capsys, str(run_dir), "--data", str(tmp_path / "folder"))
    assert "has 3 classes but the teacher's head has 10" in line
    assert "studentnas teacher train --model resnet18" in line and "--teacher-checkpoint" in line


def test_more_cpus_per_trial_than_any_node_has(capsys, run_dir: Path) -> None:
    line = error_line(capsys, str(run_dir), "--cpus", "1", "--resources-per-trial", "cpu=2", *TINY)
    assert "no node of the Ray cluster has 2 CPUs (the largest has 1" in line
    assert not (run_dir / "distill").exists()


def test_no_free_cpus_is_an_error_not_a_hang(run_dir: Path, monkeypatch) -> None:
    """Another job holds the only CPU of a running cluster: the driver says so instead of waiting forever,
    both before starting (the resource check) and, should the CPUs go between the check and the trials'
    start, from the watchdog that gives up when no trial has started in STUDENTNAS_DISTILL_PENDING_TIMEOUT s."""
    import ray

    import studentnas.distill.tune as tune_mod
    from studentnas.distill.experiment import PENDING_TIMEOUT_ENV

    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        holder = ray.remote(num_cpus=1)(lambda: time.sleep(600)).remote()  # holds the CPU
        deadline = time.monotonic() + 60
        while ray.available_resources().get("CPU", 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        kwargs = {"top": 1, "epochs": 1, "trials": 1, "train_images": 200, "test_images": 100, "batch_size": 32,
                  "quiet": True}
        with pytest.raises(sn.BadInputError, match="the Ray cluster has no free CPUs"):
            sn.distill.distill(run_dir, "fashion-mnist", **kwargs)
        monkeypatch.setattr(tune_mod, "check_cluster", lambda need: None)  # the CPU goes after the check
        monkeypatch.setenv(PENDING_TIMEOUT_ENV, "3")
        with pytest.raises(sn.StudentNASError, match="no trial could start within 3 s"):
            sn.distill.distill(run_dir, "fashion-mnist", resume=True, **kwargs)
        ray.cancel(holder, force=True)
    finally:
        ray.shutdown()


def test_random_init_teacher_has_nothing_to_distil(capsys, tmp_path: Path) -> None:
    out = tmp_path / "random"
    sn.search(teacher="resnet18", space="nb201", budget="10MMACs", image_size=16, searcher="random", candidates=2,
              batch_size=8, out=out, quiet=True)
    line = error_line(capsys, str(out), *TINY)
    assert "is randomly initialised" in line and "--teacher-checkpoint" in line

