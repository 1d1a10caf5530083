"""`studentnas bench kd` end to end: a tiny KD ground truth built from a real resnet18 teacher trained for one
epoch on Fashion-MNIST (16 px, a few hundred images), its CSV/JSON, a SIGKILL mid-run and --resume, the
default local Ray, the two-node loopback Ray cluster, `bench proxies --ground-truth` on the file, bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import test_ray
import torch
from safetensors.torch import load_file, save_file

from studentnas.distill.teacher_train import train_teacher

cluster = test_ray.cluster  # the two-node loopback Ray fixture of the search tests
RECIPE = ["--students", "3", "--seeds", "0,1", "--ce-only", "1", "--epochs", "1", "--train-images", "200",
          "--test-images", "100", "--batch-size", "32", "--image-size", "16", "--quiet"]
TRAININGS = 3 * 2 + 1 * 2  # 3 students x 2 seeds KD, 1 student x 2 seeds CE-only


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "t.safetensors"
    train_teacher("resnet18", "fashion-mnist", 1, out, image_size=16, train_images=300, test_images=100,
                  batch_size=32, quiet=True)
    return out


def kd_args(teacher: Path, out: Path, *extra: str) -> list[str]:
    return ["bench", "kd", "--teacher", "resnet18", "--teacher-checkpoint", str(teacher), *RECIPE, "--out", str(out),
            *extra]


@pytest.fixture(scope="module")
def built(teacher: Path, tmp_path_factory) -> Path:
    """A ground truth built in one go, trainings in this machine's process (--workers 1)."""
    from conftest import run_cli

    out = tmp_path_factory.mktemp("kd") / "truth"
    done = run_cli(*kd_args(teacher, out, "--workers", "1"))
    assert done.returncode == 0, done.stderr
    return out


def journal(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines() if line.strip()]


def keys(folder: Path) -> Counter:
    return Counter((r["student"], r["seed"], r["mode"]) for r in journal(folder) if r["status"] == "ok")


def accuracies(folder: Path) -> dict:
    doc = json.loads((folder / "kd_ground_truth.json").read_text())
    return {s["id"]: (s["kd_top1"], s["ce_top1"]) for s in doc["students"]}


def test_builds_a_ground_truth_with_csv_and_json(built: Path) -> None:
    doc = json.loads((built / "kd_ground_truth.json").read_text())
    assert doc["format"] == "studentnas-kd-ground-truth/1" and doc["space"]["name"] == "resnet"
    assert doc["seeds"] == [0, 1] and doc["failed"] == [] and doc["trained_now"] == TRAININGS
    assert doc["teacher"]["name"] == "resnet18" and 0 <= doc["teacher"]["test_top1"] <= 100
    assert doc["recipe"]["kd"]["losses"][0]["name"] == "kd" and doc["recipe"]["ce"]["losses"] == []
    assert doc["provenance"]["versions"]["torch"] == torch.__version__
    students = doc["students"]
    assert len(students) == 3 and len({s["id"] for s in students}) == 3
    shares = [s["macs_share"] for s in students]
    assert shares == sorted(shares) and all(0.1 <= x <= 0.4 for x in shares), shares
    assert all(set(s["kd_top1"]) == {"0", "1"} for s in students)
    assert all(abs(s["kd_top1_mean"] - sum(s["kd_top1"].values()) / 2) < 1e-9 for s in students)
    assert sum(s["ce_top1"] is not None for s in students) == 1
    noise = doc["noise"]["kd"]  # pooled seed std and spread, recomputed by hand
    per_seed = [[s["kd_top1"]["0"], s["kd_top1"]["1"]] for s in students]
    pooled = (sum((a - b) ** 2 / 2 for a, b in per_seed) / 3) ** 0.5
    assert noise["students"] == 3 and noise["noise_std"] == pytest.approx(pooled)
    assert noise["spread_std"] == pytest.approx(float(np.std([sum(v) / 2 for v in per_seed], ddof=1)))
    assert doc["noise"]["ce"]["students"] == 1 and doc["noise"]["ce"]["noise_std"] is None
    assert keys(built) == Counter({k: 1 for k in keys(built)}) and sum(keys(built).values()) == TRAININGS

    with (built / "kd_ground_truth.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [s["id"] for s in students]
    for row, s in zip(rows, students):
        assert json.loads(row["arch_json"]) == s["arch"] and row["space"] == "resnet"
        assert float(row["macs"]) == s["macs"] and float(row["kd_top1_s1"]) == s["kd_top1"]["1"]
        assert float(row["kd_top1_mean"]) == pytest.approx(s["kd_top1_mean"])
        assert (row["ce_top1_mean"] == "") == (s["ce_top1"] is None)
    config = json.loads((built / "config.json").read_text())
    assert config["identity"]["teacher_sha256"] == doc["teacher"]["sha256"]


def test_sigkill_then_resume_loses_and_redoes_nothing(teacher: Path, built: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "studentnas.cli", *kd_args(teacher, out, "--workers", "1")],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((out / "journal.jsonl").is_file() and len(journal(out)) >= 3):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no training finished in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    before = journal(out)
    assert 3 <= len(before) < TRAININGS, "killed mid-run"
    assert not (out / "kd_ground_truth.json").exists()

    from conftest import run_cli

    again = run_cli(*kd_args(teacher, out, "--workers", "1", "--resume"), env=env)
    assert again.returncode == 0, again.stderr
    after = journal(out)
    assert after[: len(before)] == before, "nothing lost: the killed run's lines are kept as they were"
    assert sum(keys(out).values()) == TRAININGS and set(keys(out).values()) == {1}, "nothing trained twice"
    doc = json.loads((out / "kd_ground_truth.json").read_text())
    assert doc["trained_now"] == TRAININGS - len(before)
    assert accuracies(out) == accuracies(built), "same students, same numbers as the run that was not killed"


def test_default_local_ray_gives_the_same_numbers(cli, teacher: Path, built: Path, tmp_path: Path) -> None:
    out = tmp_path / "local-ray"
    done = cli(*kd_args(teacher, out), isolated=True)  # no --workers: a local Ray, one task per training
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "kd_ground_truth.json").read_text())["parallel"] == {"ray_address": None, "workers": None}
    assert len({r["pid"] for r in journal(out)}) >= 2, "Ray workers trained, not the driver alone"
    assert sum(keys(out).values()) == TRAININGS and set(keys(out).values()) == {1}
    assert accuracies(out) == accuracies(built), "bit-identical to the in-process run"


@pytest.mark.slow
def test_on_a_two_node_loopback_cluster(cli, cluster, teacher: Path, built: Path, tmp_path: Path) -> None:
    address, env = cluster
    out = tmp_path / "cluster"
    done = cli(*kd_args(teacher, out, "--ray-address", address, "--workers", "2"), env=env)
    assert done.returncode == 0, done.stderr
    assert sum(keys(out).values()) == TRAININGS and set(keys(out).values()) == {1}
    assert len({r["pid"] for r in journal(out)}) >= 2, "trainings ran in more than one Ray worker"
    assert accuracies(out) == accuracies(built), "bit-identical to the in-process run"


def test_bench_proxies_ranks_against_the_kd_ground_truth(cli, built: Path, teacher: Path, tmp_path: Path) -> None:
    for name in ("kd_ground_truth.json", "kd_ground_truth.csv"):
        out = tmp_path / f"{name}.bench.json"
        done = cli("bench", "proxies", "--ground-truth", str(built / name), "--proxies", "snip,diswot",
                   "--teacher", "resnet18", "--teacher-checkpoint", str(teacher), "--batch-size", "8",
                   "--holdout-fraction", "1", "--json", str(out), "--quiet")
        assert done.returncode == 0, done.stderr
        result = json.loads(out.read_text())
        students = json.loads((built / "kd_ground_truth.json").read_text())["students"]
        truth = {s["id"]: s["kd_top1_mean"] for s in students}
        assert {r["arch"]: r["accuracy"] for r in result["per_arch"]} == truth
        assert set(result["summary"]) == {"snip", "diswot", "params", "macs"}
        assert result["config"]["space"]["name"] == "resnet" and result["config"]["input_size"] == [3, 16, 16]
        assert result["config"]["teacher"]["trained"] is True
        assert all(r["scores"]["diswot"] is not None for r in result["per_arch"])
        # the within-band figures, recomputed by hand from the rows: pairs with MACs within 20 %
        rows = result["per_arch"]
        pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]
                 if max(a["scores"]["macs"], b["scores"]["macs"]) <= 1.2 * min(a["scores"]["macs"], b["scores"]["macs"])
                 and a["accuracy"] != b["accuracy"]]
        right = [0.5 if a["scores"]["params"] == b["scores"]["params"] else
                 float((a["scores"]["params"] > b["scores"]["params"]) == (a["accuracy"] > b["accuracy"]))
                 for a, b in pairs]
        params = result["summary"]["params"]
        assert params["pairs_20"] == len(pairs)
        assert params["pairwise_20"] == (pytest.approx(sum(right) / len(right)) if pairs else None)  # JSON: nan -> null
        # the CE-only student: the same figures against its vanilla accuracy
        ce = {s["id"]: s["ce_top1_mean"] for s in students if s["ce_top1_mean"] is not None}
        assert {r["arch"]: r["ce_accuracy"] for r in rows if r["ce_accuracy"] is not None} == ce
        assert result["summary_ce"]["params"]["n"] == len(ce) == 1


def test_bad_ground_truth_file_names_the_line_and_gene(cli, built: Path, tmp_path: Path) -> None:
    lines = (built / "kd_ground_truth.csv").read_text().splitlines()
    lines[2] = lines[2].replace('""depth1"": ', '""depth1"": 9', 1)  # line 3: depth1 = 9N, not a choice
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "b.json"
    done = cli("bench", "proxies", "--ground-truth", str(bad), "--proxies", "snip", "--json", str(out))
    assert done.returncode == 2 and not out.exists()
    assert "line 3" in done.stderr and "gene 'depth1'" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--band", "0.1%:0.2%"], "no arch of space 'resnet' has MACs in"),
    (["--seeds", "0,one"], "seeds are comma-separated non-negative integers"),
    (["--band", "40%:10%"], "need 0 < LO < HI"),
    (["--student", '{"depth1": 99}'], "--student"),
])
def test_bad_input_writes_nothing(cli, teacher: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "never"
    done = cli(*kd_args(teacher, out, *extra))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


def test_unwritable_out_is_refused(cli, teacher: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    done = cli(*kd_args(teacher, blocker / "truth"))
    assert done.returncode == 2 and "--out" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_resume_with_another_teacher_is_refused(cli, teacher: Path, built: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(built, folder)
    other = tmp_path / "other.safetensors"
    weights = load_file(teacher)
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = weights[name] + 0.01
    save_file(weights, other)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    done = cli("bench", "kd", "--teacher", "resnet18", "--teacher-checkpoint", str(other), *RECIPE, "--out",
               str(folder), "--resume")
    assert done.returncode == 2 and "built from teacher resnet18" in done.stderr, done.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before, "nothing written"
    rerun = cli(*kd_args(teacher, folder))
    assert rerun.returncode == 2 and "pass --resume" in rerun.stderr


def test_help_teaches(cli) -> None:
    done = cli("bench", "kd", "--help")
    assert done.returncode == 0
    for words in ("kd_ground_truth.json", "--resume", "examples:", "How long", "bench proxies --ground-truth"):
        assert words in done.stdout


def test_teacher_checkpoint_of_another_family_is_refused(cli, tmp_path: Path) -> None:
    """The shipped cifar_resnet20 teacher given as a resnet18: one line naming the family, nothing written."""
    shipped = Path(__file__).parents[1] / "studentnas" / "assets" / "cifar_resnet20_fashion_mnist.safetensors"
    out = tmp_path / "never"
    done = cli("bench", "kd", "--teacher", "resnet18", "--teacher-checkpoint", str(shipped), *RECIPE, "--out",
               str(out))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "sidecar says it is a cifar_resnet20" in done.stderr and "is not a timm 'resnet18'" in done.stderr
    assert "conv1.weight: [16, 3, 3, 3] in the file, [64, 3, 7, 7] in resnet18" in done.stderr
    assert not out.exists()


def test_more_seeds_extend_a_ground_truth(cli, built: Path, tmp_path: Path, teacher: Path) -> None:
    """--resume with --seeds 0,1,2 trains seed 2 only (3 KD + 1 CE-only); seeds 0 and 1 stay as they were."""
    folder = tmp_path / "copy"
    shutil.copytree(built, folder)
    before = journal(folder)
    done = cli(*kd_args(teacher, folder, "--seeds", "0,1,2", "--resume", "--workers", "1"))
    assert done.returncode == 0, done.stderr
    after = journal(folder)
    assert after[:len(before)] == before
    assert Counter((r["seed"], r["mode"]) for r in after[len(before):]) == Counter({(2, "kd"): 3, (2, "ce"): 1})
    doc = json.loads((folder / "kd_ground_truth.json").read_text())
    assert doc["seeds"] == [0, 1, 2] and doc["trained_now"] == 4
    old = {s["id"]: s["kd_top1"] for s in json.loads((built / "kd_ground_truth.json").read_text())["students"]}
    assert all({k: v for k, v in s["kd_top1"].items() if k != "2"} == old[s["id"]] for s in doc["students"])
    fewer = cli(*kd_args(teacher, folder, "--seeds", "0", "--resume"))
    assert fewer.returncode == 2 and "seeds [0, 1, 2] (now [0])" in fewer.stderr, fewer.stderr
