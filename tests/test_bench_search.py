"""``studentnas bench search``: proxy-driven searches on NB201 scored against the real NATS-Bench accuracies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studentnas.bench import ground_truth
from studentnas.bench.search_bench import bench_search, scores_path
from studentnas.cli.main import main

NATS_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "nb201" / "nats_bench.csv"


def test_chosen_cell_is_the_best_scored_one_and_its_accuracy_is_looked_up(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result = bench_search(out=out, ground_truth=NATS_CSV, proxy="synflow", searcher="evolution", evals=6, seeds=2,
                          batch_size=8, threads=1, quiet=True)
    truth = ground_truth.load_nats_csv(NATS_CSV, "cifar10")
    assert set(result["summary"]) == {"evolution", "random"}
    assert len(result["runs"]) == 4 and result["config"]["optimum_accuracy"] == pytest.approx(max(truth.values()))
    cache = {}
    for line in scores_path(out).read_text().splitlines()[1:]:
        record = json.loads(line)
        cache[record["arch"]] = record["candidate"]["scores"]["synflow"]
    for run in result["runs"]:
        assert run["evals"] == 6 and run["accuracy"] == truth[run["arch"]]
        assert run["score"] == cache[run["arch"]]
    assert max(r["score"] for r in result["runs"]) == max(cache.values())  # some search chose the best cell seen
    acc = [r["accuracy"] for r in result["runs"] if r["searcher"] == "random"]
    stats = result["summary"]["random"]["accuracy"]
    assert stats["mean"] == pytest.approx(sum(acc) / 2)
    assert stats["std"] == pytest.approx(abs(acc[0] - acc[1]) / 2**0.5)  # sample std of two values
    assert json.loads(out.read_text())["summary"] == result["summary"]
    again = bench_search(out=out, ground_truth=NATS_CSV, proxy="synflow", searcher="evolution", evals=6, seeds=3,
                         batch_size=8, threads=1, quiet=True)
    assert again["config"]["cells_reused"] == len(cache)
    assert again["runs"][:2] == result["runs"][:2]  # same seeds, same choices, from cached scores


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--proxy", "nwot,synflow"], "--proxy takes one proxy name"),
        (["--searcher", "evolutoin"], "unknown searcher 'evolutoin'"),
        (["--evals", "0"], "--evals must be a positive integer"),
        (["--proxy", "kd_snip"], "needs a teacher"),
        (["--space", "resnet"], "supports only nb201"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                                      needle: str) -> None:
    out = tmp_path / "x.json"
    assert main(["bench", "search", "--ground-truth", str(NATS_CSV), *args, "--quiet", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()
