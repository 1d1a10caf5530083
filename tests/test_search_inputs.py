"""search() with every data form, measured budgets, and the progress lines of a non-TTY run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data import write_cifar10, write_cifar100, write_png

import studentnas as sn
from studentnas.engine.evaluate import build_student
from studentnas.hardware.memory import estimate_peak_memory_mb

TINY = dict(teacher="resnet18", budget="30MMACs", candidates=2, image_size=32, quiet=True)


def make_folder(root: Path) -> Path:
    for label, colour in (("cats", (200, 10, 10)), ("dogs", (10, 10, 200))):
        for i in range(4):
            write_png(root / label / f"{i}.png", tuple(min(255, c + 10 * i) for c in colour), size=(20, 16))
    return root


@pytest.mark.parametrize("form", ["fashion-mnist", "cifar10", "cifar100", "folder", "shipped"])
def test_search_reads_every_data_form(tmp_path: Path, form: str) -> None:
    spec, batch = {
        "fashion-mnist": ("fashion-mnist", 8),
        "cifar10": (f"cifar10:{write_cifar10(tmp_path / 'c10').parent}", 8),
        "cifar100": (f"cifar100:{write_cifar100(tmp_path / 'c100')}", 3),
        "folder": (str(make_folder(tmp_path / "imgs")), 8),
        "shipped": (None, 8),
    }[form]
    run = sn.search(**TINY, data=spec, batch_size=batch, out=tmp_path / "run")
    assert len(run.candidates) == 2 and all(c.ok for c in run.candidates)
    cfg = json.loads((run.path / "run.json").read_text())
    assert cfg["data"] == spec and cfg["data_source"]


def test_memory_budget_is_measured_and_over_budget_students_are_never_scored(tmp_path: Path) -> None:
    space = sn.get_space("resnet")
    small = estimate_peak_memory_mb(build_student(space, space.smallest(), 0, 1000, 3), (3, 32, 32))
    limit = round(small * 3, 1)  # some random students fit, others do not
    run = sn.search(teacher="resnet18", budget=["60MMACs", f"{limit}MB"], candidates=8, image_size=32, batch_size=8,
                    searcher="random", quiet=True, out=tmp_path / "run")
    statuses = {c.status for c in run.candidates}
    assert statuses == {"ok", "infeasible"}, statuses
    for c in run.candidates:
        assert (c.cost.peak_memory_mb <= limit) == (c.status == "ok")
        assert (c.scores == {}) == (c.status == "infeasible"), "infeasible students are not scored"
    assert {c.id for c in run.pareto} <= {c.id for c in run.candidates if c.ok}


@pytest.mark.parametrize("searcher", ["random", "evolution"])
def test_a_tight_budget_is_repaired_not_exhausted(tmp_path: Path, searcher: str) -> None:
    """resnet18 at 32 px with 25 % of its MACs: about 0.02 % of the space fits, so resampling gave up with
    no candidate; repair shrinks each proposal into the budget."""
    run = sn.search(teacher="resnet18", budget="25%macs", image_size=32, batch_size=8, candidates=4,
                    searcher=searcher, quiet=True, out=tmp_path / "run")
    cfg = json.loads((run.path / "run.json").read_text())
    assert cfg["stop_reason"] == "candidates" and cfg["teacher_cost"]["macs"] == 37_523_456
    assert len({c.id for c in run.candidates}) == 4 and all(c.ok for c in run.candidates)
    assert all(c.cost.macs <= 0.25 * 37_523_456 for c in run.candidates)


def test_a_budget_even_the_cheapest_arch_misses_stops_the_search_naming_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A latency limit no student can meet (the MACs limit alone is fine, so it is not refused up front):
    repair walks every proposal to the cheapest arch, which is over it too, and the search stops with one
    line that names that arch, its cost and the budget."""
    monkeypatch.setenv("STUDENTNAS_CACHE_DIR", str(tmp_path / "cache"))
    lines: list[str] = []
    run = sn.search(teacher="resnet18", space="nb201", budget=["100MMACs", "0.001ms"], image_size=32, batch_size=8,
                    candidates=2, searcher="random", out=tmp_path / "run", log=lines.append)
    assert run.candidates == [] and json.loads((run.path / "run.json").read_text())["stop_reason"] == "exhausted"
    [stop] = [line for line in lines if line.startswith("stopping early")]
    assert ("even the cheapest arch of space 'nb201', |none~0|+|none~0|none~1|+|none~0|none~1|none~2|, does not "
            "fit; raise the budget: that arch has 0.007846 GMACs, 0.1377 M params at 3x32x32, the budget is macs <= "
            "0.1 GMACs and latency <= 0.001 ms") in stop


def test_progress_lines_without_a_terminal(cli, tmp_path: Path) -> None:
    proc = cli("search", "--teacher", "resnet18", "--budget", "30MMACs", "--candidates", "3", "--image-size", "32",
               "--batch-size", "8", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "search: 3/3 elapsed" in proc.stderr and "eta" in proc.stderr
    assert "GMACs" in proc.stdout and "rank" in proc.stdout
    quiet = cli("search", "--teacher", "resnet18", "--budget", "30MMACs", "--candidates", "3", "--image-size", "32",
                "--batch-size", "8", "--out", str(tmp_path / "q"), "--quiet")
    assert quiet.stderr == ""
