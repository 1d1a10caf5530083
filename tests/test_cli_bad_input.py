"""Bad input through the real CLI: one line naming the problem and the fix, exit 2, no traceback,
and no run directory left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY = ["--teacher", "resnet18", "--image-size", "32", "--batch-size", "8", "--candidates", "3", "--quiet"]


def assert_one_line_error(proc, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--teacher", "resnt101", "--budget", "5GFLOPs"], ["unknown teacher 'resnt101'", "resnet101"]),
        (["--teacher", "resnet18", "--budget", "5 bananas"], ["'5 bananas'", "unknown unit 'bananas'", "5GFLOPs"]),
        (["--teacher", "resnet18", "--budget=-3GFLOPs"], ["positive"]),
        ([*TINY, "--budget", "1MFLOPs"], ["below the smallest student", "0.005"]),
        ([*TINY, "--budget", "15%macs"], ["budget '15%macs' is below the smallest student", "0.005893 GFLOPs"]),
        ([*TINY, "--budget", "30MMACs", "--space", "nb2001"], ["unknown search space 'nb2001'", "'nb201'"]),
        ([*TINY, "--budget", "30MMACs", "--proxy", "nwto"], ["unknown proxy 'nwto'", "'nwot'"]),
        ([*TINY, "--budget", "30MMACs", "--searcher", "evolutoin"], ["unknown searcher", "'evolution'"]),
        ([*TINY, "--budget", "30MMACs", "--data", "/nonexistent/images"], ["/nonexistent/images"]),
        ([*TINY, "--budget", "30MMACs", "--candidates", "0"], ["--candidates must be >= 1"]),
        (["--teacher", "resnet18"], ["--budget"]),
    ],
)
def test_bad_search_input(cli, tmp_path: Path, args: list[str], needles: list[str]) -> None:
    out = tmp_path / "run"
    proc = cli("search", *args, "--out", str(out))
    assert_one_line_error(proc, *needles)
    assert not out.exists(), "bad input must not leave a run directory"


def test_empty_data_folder(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = cli("search", *TINY, "--budget", "30MMACs", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "no images")
    assert not (tmp_path / "r").exists()


def test_corrupt_checkpoint(cli, tmp_path: Path) -> None:
    bad = tmp_path / "teacher.pth"
    bad.write_bytes(b"\x80\x02 this is not a checkpoint")
    proc = cli("search", *TINY, "--budget", "30MMACs", "--teacher-checkpoint", str(bad), "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "corrupt", "teacher.pth")
    assert not (tmp_path / "r").exists()


def test_checkpoint_of_another_model(cli, tmp_path: Path) -> None:
    import timm

    import studentnas  # noqa: F401

    path = tmp_path / "r34.pth"
    torch.save(timm.create_model("resnet34", num_classes=10).state_dict(), path)
    proc = cli("search", *TINY, "--budget", "30MMACs", "--teacher-checkpoint", str(path), "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "is not a timm 'resnet18'", "missing keys")


def test_pretrained_fails_cleanly_offline(cli, tmp_path: Path) -> None:
    proc = cli("search", *TINY, "--budget", "30MMACs", "--pretrained", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "pretrained", "--teacher-checkpoint")
    assert not (tmp_path / "r").exists()


def test_existing_run_without_resume_and_resume_with_other_config(cli, tmp_path: Path) -> None:
    out = tmp_path / "r"
    first = cli("search", *TINY, "--budget", "30MMACs", "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = (out / "candidates.jsonl").read_text()
    again = cli("search", *TINY, "--budget", "30MMACs", "--out", str(out))
    assert_one_line_error(again, "already holds a run", "--resume")
    other = cli("search", *TINY, "--budget", "30MMACs", "--seed", "7", "--out", str(out), "--resume")
    assert_one_line_error(other, "seed", "the run has 0, you asked 7")
    assert (out / "candidates.jsonl").read_text() == before, "a refused resume must not touch the run"


def test_budget_above_teacher_warns_and_runs(cli, tmp_path: Path) -> None:
    proc = cli("search", *TINY, "--budget", "5GFLOPs", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "warning: budget '5GFLOPs' is above the teacher's own macs" in proc.stderr


NAN_PLUGIN = '''
"""A user proxy: log of the mean logit. It is NaN whenever that mean is negative."""
import torch
from studentnas.core.proxy import Proxy
from studentnas.core.registry import PROXIES

@PROXIES.register("log_mean_logit")
class LogMeanLogit(Proxy):
    name = "log_mean_logit"
    needs = frozenset({"data"})
    sign = "none"

    def _score(self, student, ctx):
        student.eval()
        with torch.no_grad():
            return float(torch.log(student(ctx.images).mean()))
'''


def test_nan_scores_are_recorded_as_failures_and_the_search_goes_on(cli, tmp_path: Path) -> None:
    plugin = tmp_path / "nan_plugin.py"
    plugin.write_text(NAN_PLUGIN)
    out = tmp_path / "r"
    proc = cli("search", *TINY[:-3], "--candidates", "10", "--quiet", "--budget", "30MMACs",
               "--proxy", "log_mean_logit", "--searcher", "random", "--out", str(out),
               env={"STUDENTNAS_PLUGINS": str(plugin)})
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    failed = [r for r in rows if r["status"] == "failed"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert failed and ok, "this proxy is NaN for some random students and finite for others"
    assert all(r["reason"] == "proxy log_mean_logit returned nan" for r in failed)
    front_ids = {e["id"] for e in json.loads((out / "pareto.json").read_text())["front"]}
    assert front_ids <= {r["id"] for r in ok}


def test_export_bad_rank_and_missing_run(cli, tmp_path: Path) -> None:
    proc = cli("export", str(tmp_path / "nope"), "--rank", "1", "--out", str(tmp_path / "s.safetensors"))
    assert_one_line_error(proc, "not a run directory")
    proc = cli("search")
    assert proc.returncode == 2 and "--teacher" in proc.stderr
