"""`studentnas report`: fronts per cost computed by hand, the PNG and HTML files, bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import studentnas as sn
from studentnas.cli.main import main
from studentnas.cli.report import report_data, write_report
from studentnas.core.candidate import FAILED, INFEASIBLE, Candidate
from studentnas.engine.rundir import RunDir

# (score, GMACs, latency ms): by MACs the front is a (best score), c, e; by latency it is a, b, e.
POINTS = {"a": (9.0, 4.0, 40.0), "b": (8.0, 4.5, 10.0), "c": (7.0, 1.0, 30.0), "d": (6.0, 2.0, 35.0),
          "e": (5.0, 0.5, 5.0)}
CONFIG = {"teacher": "resnet50", "teacher_cost": {"macs": 4.1e9, "params": 25.6e6}, "budget": ["5GFLOPs", "50ms"],
          "space": {"name": "nb201", "C": 16, "N": 5}, "proxies": ["nwot"], "searcher": "random", "seed": 0}


def arch(i: int) -> sn.Arch:
    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    return sn.Arch("nb201", {f"e{k}": ops[(i + k) % 5] for k in range(6)})


def make_run(path: Path, latency: bool = True, extra: list[Candidate] | None = None) -> dict[str, str]:
    """A run directory written through RunDir, with the candidates of POINTS; returns name -> id."""
    run_dir = RunDir(path)
    run_dir.create(CONFIG)
    ids = {}
    for i, (name, (score, gmacs, ms)) in enumerate(POINTS.items()):
        cost = sn.Cost(macs=gmacs * 1e9, params=1e6 * (i + 1), latency_ms=ms if latency else None)
        cand = Candidate.now(arch=arch(i), cost=cost, scores={"nwot": score})
        run_dir.append(cand)
        ids[name] = cand.id
    for cand in extra or []:
        run_dir.append(cand)
    return ids


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_fronts_per_cost_and_reference_lines(tmp_path: Path) -> None:
    failed = Candidate.now(arch=arch(7), cost=sn.Cost(1e9, 1e6), status=FAILED, reason="nan")
    over = Candidate.now(arch=arch(8), cost=sn.Cost(1e9, 1e6, latency_ms=70.0), status=INFEASIBLE, reason="latency")
    ids = make_run(tmp_path / "r", extra=[failed, over])
    data = report_data(sn.load_run(tmp_path / "r"))
    by_metric = {p.axis.metric: p for p in data.panels}
    assert set(by_metric) == {"macs", "latency"}
    for metric, expected in (("macs", ["a", "c", "e"]), ("latency", ["a", "b", "e"])):
        panel = by_metric[metric]
        assert len(panel.rows) == 5  # failed and infeasible candidates have no score to plot
        assert [panel.rows["id"][i] for i in panel.front] == [ids[n] for n in expected]
    assert by_metric["macs"].teacher == pytest.approx(4.1) and by_metric["macs"].limit == pytest.approx(5.0)
    assert by_metric["latency"].teacher is None and by_metric["latency"].limit == 50.0
    assert "resnet50" in data.title and "5GFLOPs + 50ms" in data.title and "nwot" in data.title
    assert "7 candidates: 5 scored, 1 failed, 1 over a measured budget" in data.subtitle


def test_writes_png_and_html(tmp_path: Path) -> None:
    ids = make_run(tmp_path / "r")
    png, html = write_report(tmp_path / "r")
    assert (png, html) == (tmp_path / "r" / "report.png", tmp_path / "r" / "report.html")
    width, height = png_size(png)
    assert width > 1.5 * height > 600  # two panels side by side
    text = html.read_text()
    assert all(i in text for i in ids.values()) and sn.get_space("nb201").format_arch(arch(0)) in text
    assert "GMACs (papers' GFLOPs)" in text and "batch-1 CPU latency (ms)" in text
    assert sorted(p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")) == []  # no temp files


def test_one_panel_without_latency(tmp_path: Path) -> None:
    make_run(tmp_path / "r", latency=False)
    data = report_data(sn.load_run(tmp_path / "r"))
    assert [p.axis.metric for p in data.panels] == ["macs"]
    width, height = png_size(write_report(tmp_path / "r")[0])
    assert width < 1.5 * height


def test_cli_report(tmp_path: Path, cli) -> None:
    make_run(tmp_path / "r")
    done = cli("report", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {tmp_path / 'r' / 'report.png'} and {tmp_path / 'r' / 'report.html'}"


@pytest.mark.parametrize("setup,message", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "is not a run directory"),
    (lambda d: RunDir(d).create(CONFIG), "has no scored candidates yet"),
])
def test_cli_bad_run_dirs(tmp_path: Path, capsys: pytest.CaptureFixture, setup, message: str) -> None:
    # In-process main() (the subprocess path is covered above): same parsing and error handling, no start-up cost.
    setup(tmp_path / "r")
    assert main(["report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r" / "report.png").exists()
