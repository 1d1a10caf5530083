"""scripts/search_quality.py end to end: its --quick mode made tinier still (a real teacher trained on real
Fashion-MNIST, both real searches, real distillation in two worker processes), then the JSON layout, the
picks against the budget, every summary number against the journal's runs, Kendall tau recomputed with scipy
from the recorded scores and accuracies, the BENCHMARKS.md section, resume and bad input."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from studentnas.core.errors import BadInputError

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

    # every number of the summary follows from the journal: a KD line per (student, seed), then the
    # CE-only baseline (--ce-baseline best, the default) of the best KD student(s)
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    kd_rows = [r for r in journal if r["mode"] == "kd"]
    ce_rows = [r for r in journal if r["mode"] == "ce"]
    ce = summary["ce_baseline"]
    assert len(kd_rows) == 2 * len(students) and len(ce_rows) == 2 * len(ce["students"]) >= 2
    assert all(r["status"] == "ok" for r in journal)
    assert journal.index(ce_rows[0]) == len(kd_rows), "the CE baselines are trained once every KD training is done"
    for arch_id, info in students.items():
        accs = [r["test_top1"] for r in sorted(kd_rows, key=lambda r: r["seed"]) if r["student"] == arch_id]
        assert [r["seed"] for r in info["runs"]] == [0, 1]
        assert [r["test_top1"] for r in info["runs"]] == accs
        assert all(0 <= a <= 100 for a in accs)
        assert math.isclose(info["kd_top1_mean"], float(np.mean(accs)))
        assert math.isclose(info["kd_top1_std"], float(np.std(accs, ddof=1)), abs_tol=1e-12)
    for key, pick in summary["picks"].items():
        values = [r["test_top1"] for i in picks[key] for r in students[i]["runs"]]
        assert pick["top1_values"] == values and pick["n_runs"] == 2 * len(picks[key])
        assert math.isclose(pick["top1_mean"], float(np.mean(values)))

    # CE baseline: the best KD student(s), the same seeds, the KD gain paired by seed, the issue-5 target
    best = max(info["kd_top1_mean"] for info in students.values())
    assert ce["mode"] == "best" and all(students[i]["kd_top1_mean"] == best for i in ce["students"])
    assert report["config"]["ce_recipe"]["losses"] == [] and report["config"]["ce_recipe"]["ce_weight"] == 1.0
    assert {k: v for k, v in report["config"]["ce_recipe"].items() if k not in ("losses", "ce_weight")} == \
        {k: v for k, v in report["config"]["recipe"].items() if k not in ("losses", "ce_weight")}
    for arch_id in ce["students"]:
        row = ce["per_student"][arch_id]
        kd = {r["seed"]: r["test_top1"] for r in kd_rows if r["student"] == arch_id}
        ce_acc = {r["seed"]: r["test_top1"] for r in ce_rows if r["student"] == arch_id}
        assert sorted(ce_acc) == [0, 1] and [r["test_top1"] for r in row["ce_runs"]] == [ce_acc[0], ce_acc[1]]
        assert math.isclose(row["ce_top1_mean"], float(np.mean(list(ce_acc.values()))))
        gains = [kd[s] - ce_acc[s] for s in (0, 1)]
        assert row["gain_values"] == gains and math.isclose(row["gain_mean"], float(np.mean(gains)))
        assert math.isclose(row["gain_std"], float(np.std(gains, ddof=1)), abs_tol=1e-12)
        assert math.isclose(row["macs_share_of_teacher"], students[arch_id]["macs"] / report["teacher"]["macs"])
        checks = {"under_macs_share": row["macs_share_of_teacher"] <= 0.25,
                  "within_points_of_teacher": row["kd_top1_mean"] >= report["teacher"]["test_top1"] - 1.0,
                  "above_ce_only": row["kd_top1_mean"] > row["ce_top1_mean"]}
        assert row["checks"] == checks and row["target_met"] == all(checks.values())

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
    assert "KD against CE only (`--ce-baseline best`" in text and "Target (issue 5:" in text
    assert report["markdown"] in done.stdout and (out / "search_quality.md").read_text().strip() == \
        report["markdown"].strip()

    # rerun: nothing is trained again, the numbers are the same
    again = _run(*TINY, "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(0 trainings this session" in again.stderr
    assert "KD: all" in again.stderr and "CE-only baseline: all 2" in again.stderr
    assert len((out / "journal.jsonl").read_text().splitlines()) == len(journal)
    second = json.loads((out / "search_quality.json").read_text())
    assert second["summary"]["kendall_tau"] == summary["kendall_tau"] and len(second["sessions"]) == 2
    assert second["summary"]["ce_baseline"] == ce

    # --ce-baseline is not a setting: `all` on the finished study trains only the missing CE baselines
    more = _run(*TINY, "--out", str(out), "--ce-baseline", "all")
    assert more.returncode == 0, more.stderr[-3000:]
    n_more = 2 * (len(students) - len(ce["students"]))
    assert f"({n_more} trainings this session: 0 KD, {n_more} CE-only" in more.stderr
    third = json.loads((out / "search_quality.json").read_text())["summary"]["ce_baseline"]
    assert sorted(third["per_student"]) == sorted(students) and third["mode"] == "all"

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


def _script_help(path: Path, capsys) -> str:
    """``--help`` of a script wrapper, run in this process (the wrapper only imports its study's ``main``)."""
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _options(help_text: str) -> tuple[list[str], str]:
    """The option strings of a ``--help`` text and the text after its usage block (description and options)."""
    body = help_text.split("\n\n", 1)[1]
    return re.findall(r"^  (?:-\w, )?(--[\w-]+)", body, flags=re.M), body


def test_cli_study_and_script_take_the_same_flags(cli, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    done = cli("bench", "study", "search-quality", "--help")
    assert done.returncode == 0 and "Does the search pick better students?" in done.stdout
    assert "Kendall's tau-b" in done.stdout and "--ce-baseline {best,all,none}" in done.stdout
    flags, body = _options(done.stdout)
    script_flags, script_body = _options(_script_help(SCRIPT, capsys))
    assert flags == script_flags and body == script_body  # same flags, same help texts, same order
    assert {"--quick", "--out", "--jobs", "--ce-baseline", "--write-benchmarks", "--benchmarks"} <= set(flags)
    listed = cli("bench", "study", "--help")
    assert listed.returncode == 0 and "search-quality" in listed.stdout and "kd-vs-ce" in listed.stdout


def test_cli_bad_input_is_one_line_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "s"
    done = cli("bench", "study", "search-quality", "--quick", "--seeds", "1", "--out", str(out))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--seeds 1" in done.stderr
    # a latency budget cannot be checked analytically: refused before the teacher is trained (it was after)
    done = cli("bench", "study", "search-quality", "--quick", "--budget", "30ms", "--out", str(out))
    assert done.returncode == 2 and "needs a MACs or params budget" in done.stderr and done.stderr.count("\n") == 1
    # an --out that cannot be written is bad input (it was an OSError traceback, exit status 1)
    done = cli("bench", "study", "search-quality", "--quick", "--out", "/proc/sq")
    assert done.returncode == 2 and "--out '/proc/sq' cannot be" in done.stderr and done.stderr.count("\n") == 1
    assert not out.exists()


def test_journal_reads_old_lines_and_names_every_corrupt_one(tmp_path, capsys):
    from studentnas.studies.search_quality.driver import main
    from studentnas.studies.search_quality.folder import Study
    from studentnas.studies.search_quality.options import parse_settings
    from studentnas.studies.worker import mode_of

    flags = ["--quick", "--out", str(tmp_path / "s")]
    study = Study(tmp_path / "s", parse_settings(flags)[0])
    old = {"student": "a", "seed": 0, "status": "ok", "test_top1": 80.0}  # a line of the script before --ce-baseline
    lines = [json.dumps(old, sort_keys=True), "{not json", json.dumps(old, sort_keys=True), '"no record"']
    (study.path / "journal.jsonl").write_text("\n".join(lines) + "\n" + '{"student": "b", "se')  # + a torn line
    with pytest.raises(BadInputError, match=r"at 2 line\(s\): line 2 .*; line 4 "):
        study.journal()
    (study.path / "journal.jsonl").write_text(lines[0] + "\n" + '{"student": "b", "se')
    assert [mode_of(r) for r in study.journal()] == ["kd"]  # the old line is a KD training; the torn one is ignored
    (study.path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    assert main(flags) == 2  # corrupt lines: refused before any work (they used to be skipped and retrained)
    err = capsys.readouterr().err
    assert err.startswith("search_quality: error: ") and "line 2" in err and "line 4" in err
    assert err.count("\n") == 1 and sorted(p.name for p in study.path.iterdir()) == ["journal.jsonl", "study.json"]


def test_kendall_tau_is_scipys_tau_b():
    from studentnas.studies.common import kendall_tau

    xs, ys = [0.3, 0.1, 0.5, 0.5, 0.9, 0.2], [70.1, 71.0, 72.5, 72.5, 69.0, 70.1]  # ties on both sides
    expected = stats.kendalltau(xs, ys)
    tau = kendall_tau(xs, ys)
    assert tau["tau"] == expected.statistic and tau["p_value"] == expected.pvalue and tau["n"] == 6
    assert math.isnan(kendall_tau([1.0, 2.0], [3.0, 3.0])["tau"]) and kendall_tau([1.0], [2.0])["tau"] is None
