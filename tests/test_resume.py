"""Resume after SIGKILL: no finished candidate lost or evaluated twice, same front as an
uninterrupted run with the same seed. Uses the real CLI in real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studentnas.engine.setup import DEFAULT_PROXY

ARGS = ["search", "--teacher", "resnet18", "--image-size", "64", "--batch-size", "16", "--budget", "150MMACs",
        "--candidates", "24", "--seed", "5", "--quiet"]


def journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "candidates.jsonl").read_text().splitlines() if line.strip()]


def front(path: Path) -> list[tuple[str, float]]:
    data = json.loads((path / "pareto.json").read_text())
    return [(e["id"], e["scores"][DEFAULT_PROXY]) for e in data["front"]]  # ARGS: the default objective


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(cli, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    done = cli(*ARGS, "--out", str(reference))
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "studentnas.cli", *ARGS, "--out", str(killed)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jl = killed / "candidates.jsonl"
        if jl.exists() and jl.read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = journal(killed)
    assert 6 <= len(before) < 24, "the run must be killed part-way"
    # a kill can also land in the middle of a line: simulate that torn write too
    with (killed / "candidates.jsonl").open("a") as fh:
        fh.write('{"id": "torn-li')

    resumed = cli(*ARGS, "--out", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    after = journal(killed)
    ids = [r["id"] for r in after]
    assert len(ids) == 24 and len(set(ids)) == 24, "no candidate lost or evaluated twice"
    assert after[: len(before)] == before, "finished candidates are kept exactly as they were"
    assert json.loads((killed / "run.json").read_text())["replayed"] == len(before)
    assert [r["id"] for r in journal(reference)] == ids, "the resumed run asks the same archs in the same order"
    got, want = front(killed), front(reference)
    assert got == want, "same ids and bit-identical scores as the uninterrupted run"

    # resuming a finished run evaluates nothing new and keeps the front
    again = cli(*ARGS, "--out", str(killed), "--resume")
    assert again.returncode == 0 and len(journal(killed)) == 24 and front(killed) == got
