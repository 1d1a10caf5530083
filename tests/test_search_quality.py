"""scripts/search_quality.py end to end: its --quick mode made tinier still (a real teacher trained on real
Fashion-MNIST, both real searches, real distillation in two worker processes), then the JSON layout, the
picks against the budget, every summary number against the journal's runs, Kendall tau recomputed with scipy
from the recorded scores and accuracies, the BENCHMARKS.md section, resume and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "search_quality.py"
TINY = ["--quick", "--teacher-epochs", "1", "--teacher-train-images", "300", "--candidates", "2",
        "--params-samples", "300", "--random-students", "2", "--seeds", "2", "--epochs", "2",
        "--train-images", "320", "--test-images", "200", "--batch-size", "16", "--jobs", "2"]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_quick_study_end_to_end_and_resume(tmp_path):
    out, bench = tmp_path / "study", tmp_path / "BENCH.md"
    bench.write_text("# Benchmarks\n\nearlier text\n")
    done = _run(*TINY, "--out", str(out), "--write-benchmarks", "--benchmarks", str(bench))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "search_quality.json").read_text())
    for key in ("format", "command", "config", "versions", "machine", "teacher", "budget", "space", "searches",
                "sampling", "picks", "summary", "timings", "markdown", "sessions"):
        assert key in report, key
    assert report["config"]["settings"]["seeds"] == 2 and report["config"]["settings"]["quick"] is True
    assert report["teacher"]["model"] == "resnet34" and report["teacher"]["test_images"] == 200
    assert 0 <= report["teacher"]["test_top1"] <= 100

    # four picks, every student under 25 % of the teacher's MACs
    picks, summary = report["picks"], report["summary"]
    assert sorted(picks) == ["classic", "diswot", "largest_params", "random"]
    assert [len(picks[k]) for k in ("diswot", "classic", "largest_params", "random")] == [1, 1, 1, 2]
    limit = report["budget"]["limits"]["macs"]
    assert math.isclose(limit, 0.25 * report["teacher"]["macs"])
    students = summary["students"]
    assert set(students) == {i for ids in picks.values() for i in ids}
    for info in students.values():
        assert info["macs"] <= limit
    assert report["searches"]["classic"]["proxy"] == "meco"
    # the picks' rescored values are the scores their searches recorded (same batch, seed and weights)
    for check in summary["search_score_check"].values():
        assert math.isclose(check["rescored"], check["search_score"], rel_tol=1e-6, abs_tol=1e-9)

    # every number of the summary follows from the journal
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert len(journal) == 2 * len(students) and all(r["status"] == "ok" for r in journal)
    for arch_id, info in students.items():
        accs = [r["test_top1"] for r in sorted(journal, key=lambda r: r["seed"]) if r["student"] == arch_id]
        assert [r["seed"] for r in info["runs"]] == [0, 1]
        assert [r["test_top1"] for r in info["runs"]] == accs
        assert all(0 <= a <= 100 for a in accs)
        assert math.isclose(info["kd_top1_mean"], float(np.mean(accs)))
        assert math.isclose(info["kd_top1_std"], float(np.std(accs, ddof=1)), abs_tol=1e-12)
    for key, pick in summary["picks"].items():
        values = [r["test_top1"] for i in picks[key] for r in students[i]["runs"]]
        assert pick["top1_values"] == values and pick["n_runs"] == 2 * len(picks[key])
        assert math.isclose(pick["top1_mean"], float(np.mean(values)))

    # Kendall tau-b of each proxy against the mean KD accuracy, over all students trained
    assert sorted(summary["kendall_tau"]) == ["diswot", "meco", "params"]
    means = [students[i]["kd_top1_mean"] for i in students]
    assert len(set(means)) > 1, f"the tiny students did not separate: {means}"
    for proxy, tau in summary["kendall_tau"].items():
        scores = [students[i]["scores"][proxy] for i in students]
        expected = stats.kendalltau(scores, means)
        assert tau["n"] == len(students)
        assert -1.0 <= tau["tau"] <= 1.0
        assert math.isclose(tau["tau"], expected.statistic, abs_tol=1e-12)
        assert math.isclose(tau["p_value"], expected.pvalue, abs_tol=1e-12)
    params_scores = [students[i]["scores"]["params"] for i in students]
    assert np.allclose(params_scores, [students[i]["params"] / 1e6 for i in students], rtol=1e-6)
    verdict = summary["verdict"]
    assert sorted(verdict["ranking"]) == sorted(picks) and 1 <= verdict["diswot_rank"] <= 4
    assert verdict["best_pick"] == max(picks, key=lambda k: summary["picks"][k]["top1_mean"])

    # the markdown: printed, written beside the JSON and appended to the benchmarks file with the command
    text = bench.read_text()
    assert text.startswith("# Benchmarks\n\nearlier text\n\n## Search quality")
    assert report["command"] in text and "--write-benchmarks" in report["command"]
    assert "| DisWOT search |" in text and "Kendall tau-b" in text and "**Verdict: DisWOT's pick ranks" in text
    assert report["markdown"] in done.stdout and (out / "search_quality.md").read_text().strip() == \
        report["markdown"].strip()

    # rerun: nothing is trained again, the numbers are the same
    again = _run(*TINY, "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(0 trainings this session" in again.stderr
    assert len((out / "journal.jsonl").read_text().splitlines()) == len(journal)
    second = json.loads((out / "search_quality.json").read_text())
    assert second["summary"]["kendall_tau"] == summary["kendall_tau"] and len(second["sessions"]) == 2

    # other settings in the same folder, and bad flags: one-line errors, exit status 2
    other = _run(*TINY, "--epochs", "3", "--out", str(out))
    assert other.returncode == 2 and "other settings (epochs: 2 -> 3)" in other.stderr
    assert "Traceback" not in other.stderr and len(other.stderr.strip().splitlines()) == 1


def test_bad_input_is_one_line(tmp_path):
    done = _run("--quick", "--seeds", "1", "--out", str(tmp_path / "s"))
    assert done.returncode == 2 and "--seeds 1" in done.stderr and "Traceback" not in done.stderr
    done = _run("--quick", "--budget", "25%bananas", "--out", str(tmp_path / "s"))
    assert done.returncode == 2 and "25%bananas" in done.stderr
    assert not (tmp_path / "s").exists()
