"""Parallel evaluation on Ray, end to end through the real CLI: a real two-node Ray cluster on
loopback, a real worker process killed mid-candidate, and unreachable cluster addresses.

The reference is a serial run with one torch thread (OMP_NUM_THREADS=1), as each Ray worker uses:
students are seeded by (run seed, arch id), so every candidate must score bit-identically. Random
search asks the same archs whatever the number of workers, so the two runs hold the same ids.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from studentnas.core.errors import BadInputError
from studentnas.engine.parallel import CRASH_ENV, check_parallel, worker_node
from studentnas.engine.setup import DEFAULT_PROXY

ARGS = ["search", "--teacher", "resnet18", "--space", "nb201", "--image-size", "32", "--budget", "100MMACs",
        "--searcher", "random", "--candidates", "6", "--batch-size", "8", "--seed", "3", "--quiet"]
RAY = str(Path(sys.executable).with_name("ray"))


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "candidates.jsonl").read_text().splitlines() if line.strip()]


def scores(run: Path) -> dict[str, float]:
    return {r["id"]: r["scores"][DEFAULT_PROXY] for r in rows(run)}  # ARGS search with the default objective


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import run_cli  # the `cli` fixture is per test; this reference is made once per module

    out = tmp_path_factory.mktemp("serial") / "run"
    done = run_cli(*ARGS, "--out", str(out), env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert len(rows(out)) == 6 and "ray" not in json.loads((out / "run.json").read_text())
    return out


@pytest.fixture
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A head node and a second node, one CPU each, on this machine; yields (address, env for drivers).

    Each ``ray start --block`` stays in the foreground, so terminating it (SIGTERM) stops that node's
    processes and nothing else on the machine (``ray stop`` would stop every Ray on it). Token
    authentication with a fresh token, in a private temp dir: no other Ray here can join or be joined.
    """
    port, temp_dir = free_port(), tempfile.mkdtemp(prefix="snray")  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    node = ["--num-cpus", "1", "--object-store-memory", str(200 * 2**20), "--block", "--disable-usage-stats"]
    procs: list[subprocess.Popen] = []

    def start(*args: str, log: str) -> None:
        with open(Path(temp_dir) / log, "w") as fh:
            procs.append(subprocess.Popen([RAY, "start", *args, *node], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL))

    try:
        start("--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp_dir, log="head.log")
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and procs[0].poll() is None, \
                    (Path(temp_dir) / "head.log").read_text()
                time.sleep(0.2)
        start("--address", f"127.0.0.1:{port}", log="node2.log")
        yield f"127.0.0.1:{port}", env
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_two_node_cluster_scores_like_a_serial_run(cli, cluster, serial: Path, tmp_path: Path) -> None:
    address, env = cluster
    out = tmp_path / "cluster"
    done = cli(*ARGS, "--out", str(out), "--ray-address", address, "--workers", "2", env=env)
    assert done.returncode == 0, done.stderr
    got = rows(out)
    assert sorted(r["id"] for r in got) == sorted(scores(serial)), "same archs, none twice"
    assert scores(out) == scores(serial), "bit-identical scores on the cluster"
    nodes = {worker_node(r["worker"]) for r in got}
    assert len(nodes) == 2 and "" not in nodes, f"both nodes scored candidates: {[r['worker'] for r in got]}"
    ray_info = json.loads((out / "run.json").read_text())["ray"]
    assert ray_info["workers"] == 2 and ray_info["address"] == address and ray_info["evaluated"] == 6


EVOLUTION = [*ARGS[: ARGS.index("random")], "evolution", *ARGS[ARGS.index("random") + 1 :]]
EVOLUTION[EVOLUTION.index("--candidates") + 1] = "12"


@pytest.mark.slow
def test_worker_crash_and_driver_sigkill_on_local_ray(cli, tmp_path: Path) -> None:
    """Evolution on 2 local workers, 4 candidates asked ahead of the feedback. (1) A worker dies
    mid-candidate: the candidate is rerun on another worker and the run completes. (2) A second run
    is SIGKILLed part-way and resumed: it loses and repeats nothing and ends exactly like (1), since
    tells follow ask order whatever finished first."""
    marker = tmp_path / "crashed"
    crashed = tmp_path / "crashed-run"
    done = cli(*EVOLUTION, "--out", str(crashed), "--workers", "2", env={CRASH_ENV: str(marker)})
    assert done.returncode == 0, done.stderr
    victim = marker.read_text()
    reference = rows(crashed)
    assert len(reference) == 12 and len({r["id"] for r in reference}) == 12, "nothing lost or scored twice"
    assert victim in {r["id"] for r in reference} and all(r["status"] == "ok" for r in reference)
    config = json.loads((crashed / "run.json").read_text())
    assert config["ask_windows"] == [[0, 4]] and config["ray"]["evaluated"] == 12

    killed = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "studentnas.cli", *EVOLUTION, "--out", str(killed),
                             "--workers", "2"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        journal = killed / "candidates.jsonl"
        if journal.exists() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = rows(killed)
    assert 3 <= len(before) < 12, "the run must be killed part-way"

    resumed = cli(*EVOLUTION, "--out", str(killed), "--workers", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    after = rows(killed)
    assert after[: len(before)] == before, "finished candidates are kept exactly as they were"
    assert json.loads((killed / "run.json").read_text())["replayed"] == len(before)
    assert sorted(r["id"] for r in after) == sorted(r["id"] for r in reference), "same archs, none twice"
    assert scores(killed) == scores(crashed), "same scores, the crashed worker's candidate included"
    assert (killed / "pareto.json").read_text() == (crashed / "pareto.json").read_text()


def test_unreachable_ray_address_is_a_one_line_error_within_seconds(cli, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    done = cli(*ARGS, "--out", str(tmp_path / "r"), "--ray-address", address)
    assert time.monotonic() - start < 30  # python + torch imports; the probe itself fails at once
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--ray-address '{address}'" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists(), "no run directory for a failed start"


@pytest.mark.parametrize("address", ["127.0.0.1:notaport", "ray//host:10001", "host:70000", "10.0.0.5"])
def test_malformed_ray_address_names_the_accepted_forms(address: str) -> None:
    with pytest.raises(BadInputError, match=rf"--ray-address '{address}' is not auto, HOST:PORT or ray://HOST:PORT"):
        check_parallel(None, address)


def test_workers_below_one_is_bad_input() -> None:
    with pytest.raises(BadInputError, match=r"--workers must be >= 1, got 0"):
        check_parallel(0, None)


def test_one_local_worker_needs_no_ray() -> None:
    code = ("import sys, studentnas.engine.search; from studentnas.engine.parallel import check_parallel; "
            "check_parallel(1, None); check_parallel(None, None); print('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", "the default serial path never imports Ray"
