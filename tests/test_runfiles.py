"""Run files: the one journal every resumable stage writes, atomic writes that clean up after a kill,
and the thread count a resumed search replays with. Old on-disk formats (lines as the code before
``studentnas.runfiles.journal`` wrote them) must still read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import studentnas as sn
from studentnas.bench.journal import JOURNAL_KIND
from studentnas.bench.journal import Journal as BenchJournal
from studentnas.core.errors import BadInputError
from studentnas.distill.journal import TrialJournal
from studentnas.puzzle.scoring import journalled_scores, scores_journal
from studentnas.runfiles.atomic import this_host, write_atomic
from studentnas.runfiles.journal import Journal

TINY = dict(teacher="resnet18", budget="30MMACs", image_size=32, batch_size=8, quiet=True)
TINY_CLI = ["--teacher", "resnet18", "--budget", "30MMACs", "--image-size", "32", "--batch-size", "8", "--quiet"]
DEAD_PID = 2**22 + 1  # above Linux's PID_MAX_LIMIT: never a live process


# ----------------------------------------------------------------------------------------------- journal


def test_every_corrupt_line_is_named_in_one_error(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    for i in range(3):
        journal.append({"i": i})
    with journal.path.open("a") as fh:
        fh.write("not json\n[1, 2\n")
    journal.append({"i": 3})
    with pytest.raises(BadInputError) as err:
        journal.read()
    message = str(err.value)
    assert "corrupt at 2 line(s)" in message and "line 4 (" in message and "line 5 (" in message
    assert "\n" not in message
    records, bad = journal.scan()
    assert [r["i"] for r in records] == [0, 1, 2, 3] and len(bad) == 2


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append({"i": 0})
    with journal.path.open("a") as fh:
        fh.write('{"i": 1, "x": "ha')
    assert journal.read() == [{"i": 0}] and journal.torn_line() == 2
    journal.append({"i": 2})
    assert journal.path.read_text() == '{"i": 0}\n{"i": 2}\n' and journal.torn_line() is None


# ----------------------------------------------------------------------------------------------- search


def test_a_refused_resume_of_a_corrupt_journal_leaves_the_run_untouched(cli, tmp_path: Path) -> None:
    out = tmp_path / "r"
    sn.search(**TINY, candidates=3, out=out)
    journal = out / "candidates.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("garbage\n" + lines[1] + '{"arch": 1}\n')
    run_json = (out / "run.json").read_bytes()
    assert json.loads(run_json)["status"] == "finished"
    proc = cli("search", *TINY_CLI, "--candidates", "5", "--out", str(out), "--resume")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "line 1 (" in errors[0] and "line 3 (" in errors[0], proc.stderr
    assert (out / "run.json").read_bytes() == run_json, "a refused resume must not flip run.json to running"
    assert journal.read_text() == "garbage\n" + lines[1] + '{"arch": 1}\n'


def test_resume_replays_with_the_recorded_threads_and_reads_an_old_run(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    out, previous = tmp_path / "r", torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run = sn.search(**TINY, candidates=3, out=out)
        assert run.config["threads"] == 1 and run.config["versions"]["torch"] and isinstance(run.config["argv"], list)

        torch.set_num_threads(2)  # resumed on a machine (or with OMP_NUM_THREADS) that gives two threads
        seen: list[int] = []
        run = sn.search(**TINY, candidates=5, out=out, resume=True, log=lambda _: seen.append(torch.get_num_threads()))
        assert seen and set(seen) == {1}, "the resumed candidates are scored with the run's thread count"
        assert torch.get_num_threads() == 2, "the caller's thread count is restored afterwards"
        assert run.config["threads"] == 1 and run.config["replayed"] == 3 and len(run.candidates) == 5
        assert "warning" not in capsys.readouterr().err

        # a run directory as the code before run.json's `threads` wrote it, killed in the middle of a line
        config = json.loads((out / "run.json").read_text())
        for key in ("threads", "argv"):
            del config[key]
        (out / "run.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        journal = out / "candidates.jsonl"
        old_lines = [sn.Candidate.from_dict(json.loads(line)).to_json() + "\n"  # the old RunDir.append
                     for line in journal.read_text().splitlines()]
        journal.write_text("".join(old_lines) + '{"arch": {"genes": ')
        run = sn.search(**TINY, candidates=6, out=out, resume=True)
        assert "records no thread count" in capsys.readouterr().err
        assert run.config["replayed"] == 5 and len({c.id for c in run.candidates}) == 6
        assert journal.read_text().startswith("".join(old_lines))
    finally:
        torch.set_num_threads(previous)


def test_resume_says_when_the_recorded_threads_cannot_be_honoured(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from studentnas.engine.search import _resume_threads

    assert _resume_threads(4, tmp_path, 2, in_process=True) == 4  # in process: the run's count, whatever ours is
    assert _resume_threads(1, tmp_path, 1, in_process=False) == 1  # Ray actors score with one thread: the same
    assert capsys.readouterr().err == ""
    assert _resume_threads(4, tmp_path, 1, in_process=False) == 1
    err = capsys.readouterr().err
    assert "scored with 4 torch thread(s)" in err and "exact replay is not possible" in err and "--workers" in err
    assert _resume_threads(None, tmp_path, 2, in_process=True) == 2
    assert "records no thread count" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- distill


def test_distill_journal_reads_old_lines_and_names_every_corrupt_one(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    rows = [{"student": "a", "mode": "kd", "status": "ok", "val_top1": 50.0 + i, "checkpoint": f"c{i}"}
            for i in range(3)]
    old = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in rows)  # the old TrialJournal.append
    path.write_text(old + '{"student": "a", "mo')
    journal = TrialJournal(path)
    assert [r["val_top1"] for r in journal.rows("a", "kd")] == [50.0, 51.0, 52.0]
    journal.append({"student": "a", "mode": "ce", "status": "failed"})
    assert path.read_text() == old + '{"mode": "ce", "status": "failed", "student": "a"}\n'
    path.write_text(old.replace(json.dumps(rows[0], sort_keys=True), "{oops") + "42\n")
    with pytest.raises(BadInputError, match=r"corrupt at 2 line\(s\): line 1 .*; line 4 .*trials are run again"):
        journal.rows("a", "kd")


# ----------------------------------------------------------------------------------------------- bench


def test_bench_journal_reads_the_old_format_and_names_every_unreadable_line(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    path, identity = tmp_path / "b.json.partial.jsonl", {"seed": 0, "space": ["x"]}
    cells = [{"arch": f"c{i}", "scores": {"nwot": float(i)}, "seconds": {}, "errors": {}} for i in range(3)]
    # as the old code wrote it: unsorted keys, and a line cut short by a kill that the next run ended with "\n"
    path.write_text(json.dumps({"journal": JOURNAL_KIND, "identity": identity}) + "\n"
                    + json.dumps(cells[0]) + "\n" + '{"arch": "c1", "sco\n' + json.dumps(cells[1]) + "\n"
                    + "[]\n" + json.dumps(cells[2]) + "\n" + '{"arch": "c3"')
    journal = BenchJournal(path, identity)
    done = journal.open(fresh=False)
    assert sorted(done) == ["c0", "c1", "c2"] and done["c2"] == cells[2]
    err = capsys.readouterr().err
    assert "ignored 3 unreadable line(s)" in err and all(f"line {n} (" in err for n in (3, 5, 7))
    journal.append({"arch": "c3", "scores": {"nwot": float("nan")}})
    journal.close()
    assert BenchJournal(path, identity).open(fresh=False)["c3"]["scores"] == {"nwot": None}
    with pytest.raises(BadInputError, match="seed was 0, now 1"):
        BenchJournal(path, {**identity, "seed": 1}).open(fresh=False)


# ----------------------------------------------------------------------------------------------- puzzle


def test_puzzle_scores_read_the_old_format(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [{"id": f"r{i}", "label": "x", "status": "ok", "quality": {"kl": 0.1 * i}} for i in range(3)]
    torn = '{"id": "r3", "lab'
    # the old pipeline appended after a torn line, gluing it to the next row: that row is scored again
    (tmp_path / "scores.jsonl").write_text(json.dumps(rows[0]) + "\n" + torn + json.dumps(rows[1]) + "\n"
                                           + json.dumps(rows[2]) + "\n" + torn)
    journal = scores_journal(tmp_path)
    done = journalled_scores(journal)
    assert sorted(done) == ["r0", "r2"] and done["r2"] == rows[2]
    assert "ignored 1 unreadable line(s)" in capsys.readouterr().err
    journal.append(rows[1])
    assert sorted(journalled_scores(journal)) == ["r0", "r1", "r2"]


# ----------------------------------------------------------------------------------------------- atomic


def test_write_removes_the_temporary_files_of_dead_writers_only(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = this_host()
        dead = tmp_path / f".run.json.{host}.{DEAD_PID}.k3x_9ab2.tmp"
        keep = [tmp_path / f".run.json.{host}.{os.getpid()}.aaaaaaaa.tmp",  # this process: alive
                tmp_path / f".run.json.{host}.{sleeper.pid}.bbbbbbbb.tmp",  # another live process
                tmp_path / f".run.json.{host}x.{DEAD_PID}.cccccccc.tmp",  # another host: its pids mean nothing here
                tmp_path / f".other.json.{host}.{DEAD_PID}.dddddddd.tmp",  # another target
                tmp_path / ".run.json.eeeeeeee.tmp"]  # no writer named
        for path in [dead, *keep]:
            path.write_text("half")
        write_atomic(target, lambda tmp: Path(tmp).write_text("{}"))
        assert not dead.exists() and all(p.exists() for p in keep)
        assert target.read_text() == "{}"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_writer_killed_mid_write_is_cleaned_up_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "s.safetensors"
    code = ("import sys, time; from pathlib import Path; from studentnas.runfiles.atomic import write_atomic; "
            "write_atomic(sys.argv[1], lambda tmp: (Path(tmp).write_text('half'), time.sleep(120)))")
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)])
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".s.safetensors.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    [left] = list(tmp_path.glob(".s.safetensors.*.tmp"))
    assert f".{writer.pid}." in left.name
    write_atomic(target, lambda tmp: Path(tmp).write_text("whole"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]
