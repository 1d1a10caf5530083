"""scripts/kd_vs_ce.py end to end in a tiny mode: a real resnet34 teacher trained on 300 real Fashion-MNIST
images at 16 px, one student trained with KD and with CE only (1 epoch, 1 seed), the report's fields and
numbers, resume (a rerun trains nothing), a second KD recipe reusing the CE-only run, and bad input.

The first run is a subprocess (the script as users run it); the reruns call its ``main`` in this process,
since importing torch, timm and scipy again costs 5-15 s a process on a loaded 2-core machine."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "kd_vs_ce.py"
# the study's best student (search_quality, BENCHMARKS.md "KD against CE only"): 22.9 % of resnet34's MACs at 32 px
ARCH = {"space": "resnet", "genes": {"block": "basic", "depth1": 1, "depth2": 1, "depth3": 1, "depth4": 1,
                                     "ratio": 1.0, "stem_type": "deep", "stem_width": 24, "width1": 0.5,
                                     "width2": 0.75, "width3": 1.5, "width4": 0.75}}
TINY = ["--teacher-epochs", "1", "--teacher-train-images", "300", "--image-size", "16", "--epochs", "1",
        "--train-images", "200", "--test-images", "200", "--batch-size", "32", "--seeds", "0", "--jobs", "1",
        "--threads", "1", "--student-arch", json.dumps(ARCH)]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("kd_vs_ce_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)  # --threads 1 in this process


def _main(script, capsys, *args: str) -> tuple[int, str, str]:
    code = script.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


def test_kd_vs_ce_end_to_end_resume_and_second_recipe(tmp_path, script, capsys):
    out = tmp_path / "kdce"
    done = _run(*TINY, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "kd_vs_ce.json").read_text())
    assert report["markdown"] in done.stdout
    assert report["recipe"] == "T4-kd0.9-ce0.1" and report["seeds"] == [0] and report["trained_this_session"] == 2
    teacher, student = report["teacher"], report["student"]
    assert teacher["model"] == "resnet34" and teacher["origin"].startswith("trained here: 1 epochs on 270 images")
    assert teacher["test_images"] == 200 and 0 <= report["teacher_top1"] <= 100
    assert student["arch"] == ARCH and math.isclose(report["macs_share"], student["macs"] / teacher["macs"])
    assert 0.15 < report["macs_share"] < 0.25  # 22.9 % at 32 px; the share barely moves at 16 px

    # one KD and one CE-only training of seed 0: same data, same seed, different loss
    rows = _journal(out)
    assert sorted((r["mode"], r["recipe"], r["seed"], r["status"]) for r in rows) == \
        [("ce", None, 0, "ok"), ("kd", "T4-kd0.9-ce0.1", 0, "ok")]
    assert {r["train_images"] for r in rows} == {192} and {r["test_images"] for r in rows} == {200}  # 6 x 32
    kd = next(r["test_top1"] for r in rows if r["mode"] == "kd")
    ce = next(r["test_top1"] for r in rows if r["mode"] == "ce")
    assert report["kd_top1_mean"] == kd and report["ce_top1_mean"] == ce
    assert math.isclose(report["gain_mean"], kd - ce, abs_tol=1e-9)
    assert report["kd_top1_std"] is None and report["gain_std"] is None  # one seed: no std
    met = report["macs_share"] <= 0.25 and kd >= report["teacher_top1"] - 1.0 and kd > ce
    assert report["target_met"] is met and report["complete"] is True
    assert ("**met**" if met else "**not met**") in report["markdown"]

    # rerun: nothing is trained again, the teacher is reused, the numbers are the same
    teacher_file = out / "teacher.safetensors"
    mtime = teacher_file.stat().st_mtime_ns
    code, _, err = _main(script, capsys, *TINY, "--out", str(out))
    assert code == 0, err[-3000:]
    second = json.loads((out / "kd_vs_ce.json").read_text())
    assert second["trained_this_session"] == 0 and len(_journal(out)) == 2
    assert teacher_file.stat().st_mtime_ns == mtime
    assert (second["kd_top1_mean"], second["ce_top1_mean"], second["teacher_top1"]) == (kd, ce, report["teacher_top1"])

    # a second KD recipe in the same folder: only its KD run is trained, the CE-only run is shared
    code, stdout, err = _main(script, capsys, *TINY, "--out", str(out), "--temperature", "1", "--kd-weight", "0.5",
                              "--ce-weight", "0.5", "--json", str(tmp_path / "t1.json"))
    assert code == 0, err[-3000:]
    third = json.loads((tmp_path / "t1.json").read_text())
    assert third["trained_this_session"] == 1 and third["recipe"] == "T1-kd0.5-ce0.5"
    assert sorted(third["summary"]["recipes"]) == ["T1-kd0.5-ce0.5", "T4-kd0.9-ce0.1"]
    assert third["summary"]["recipes"]["T4-kd0.9-ce0.1"]["kd_top1"] == [kd] and third["ce_top1_mean"] == ce
    assert "tuning on the test set" in third["markdown"] and third["markdown"] in stdout

    # other shared settings in the same folder are refused, with exit status 2 and one line
    code, _, err = _main(script, capsys, *TINY, "--out", str(out), "--lr", "0.1")
    assert code == 2 and err.count("\n") == 1 and "lr: 0.05 -> 0.1" in err


def test_bad_input_is_one_line_and_exit_2(tmp_path, script, capsys):
    code, _, err = _main(script, capsys, "--seeds", "0,0", "--student-arch", json.dumps(ARCH), "--out",
                         str(tmp_path / "x"))
    assert code == 2 and err.startswith("kd_vs_ce: error: --seeds '0,0'") and err.count("\n") == 1
    code, _, err = _main(script, capsys, "--out", str(tmp_path / "y"))
    assert code == 2 and "--student-arch JSON or --from-study DIR --student ID" in err
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"students": {"233ab1fc666c": {"arch": ARCH}}}))
    code, _, err = _main(script, capsys, "--from-study", str(study), "--student", "nope", "--out", str(tmp_path / "z"))
    assert code == 2 and "--student 'nope' is not in" in err and "known: 233ab1fc666c" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()  # refused before any work


def test_cli_study_and_script_take_the_same_flags(cli, script, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    done = cli("bench", "study", "kd-vs-ce", "--help")
    assert done.returncode == 0 and "KD against CE only for one student" in done.stdout
    assert "tuning on the test set" in done.stdout and "--student-arch STUDENT_ARCH" in done.stdout
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0
    ours, theirs = done.stdout.split("\n\n", 1)[1], capsys.readouterr().out.split("\n\n", 1)[1]
    flags = re.findall(r"^  (?:-\w, )?(--[\w-]+)", ours, flags=re.M)
    assert flags == re.findall(r"^  (?:-\w, )?(--[\w-]+)", theirs, flags=re.M) and ours == theirs
    assert {"--out", "--json", "--teacher-checkpoint", "--from-study", "--seeds", "--jobs"} <= set(flags)


def test_unwritable_outputs_are_bad_input(cli, tmp_path):
    # an unwritable --json used to fail after every training (OSError, exit status 1); now before any work
    done = cli("bench", "study", "kd-vs-ce", "--student-arch", json.dumps(ARCH), "--out", str(tmp_path / "k"),
               "--json", "/proc/kd/report.json")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--json '/proc/kd/report.json'" in done.stderr
    done = cli("bench", "study", "kd-vs-ce", "--student-arch", json.dumps(ARCH), "--out", "/proc/kd")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--out '/proc/kd' cannot be" in done.stderr
    assert not (tmp_path / "k").exists()
