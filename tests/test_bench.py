"""``studentnas bench proxies`` and its parts: correlation helpers (numbers derived by hand), ground-truth
and published-score loaders on the real reference files, the foolbox image reader, and the CLI end to end."""

from __future__ import annotations

import io
import json
import math
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import studentnas
from studentnas.bench import correlation as corr
from studentnas.bench import ensemble, foolbox_data, ground_truth
from studentnas.bench.journal import journal_path
from studentnas.bench.proxy_bench import bench_proxies
from studentnas.bench.published import load_published
from studentnas.bench.summary import cell_split
from studentnas.cli.main import main
from studentnas.core.errors import BadInputError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "nb201"
NATS_CSV = REFERENCE / "nats_bench.csv"
PUBLISHED = REFERENCE / "naslib_zc_nasbench201.json"
TINY = ["--samples", "6", "--batch-size", "8", "--proxies", "nwot,synflow", "--quiet"]
FIRST_CIFAR10_TEST_LABELS = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
FIRST_CIFAR100_TEST_LABELS = [49, 33, 72, 51, 71, 92, 15, 14, 23, 0, 71, 75, 81, 69, 40, 43, 92, 97, 70, 53]


@pytest.fixture(scope="module")
def nats_cifar10() -> dict[str, float]:
    return ground_truth.load_nats_csv(NATS_CSV, "cifar10")  # a missing reference file fails, never skips


# ------------------------------------------------------------------------------------------ correlation


def test_spearman_and_kendall_by_hand() -> None:
    x, y = np.array([1.0, 2, 3, 4, 5]), np.array([1.0, 3, 2, 5, 4])
    # rank differences 0,-1,1,-1,1: rho = 1 - 6*4 / (5*24) = 0.8; 8 concordant, 2 discordant pairs: tau = 0.6
    assert corr.spearman(x, y) == pytest.approx(0.8)
    assert corr.kendall(x, y) == pytest.approx(0.6)
    assert corr.spearman(-x, y) == pytest.approx(-0.8)


def test_failed_cells_are_excluded_and_counted() -> None:
    x, y = np.array([1.0, 2, np.nan, 3, 4, np.inf, 5]), np.array([1.0, 3, 99, 2, 5, -7, 4])
    s = corr.summarize(x, y)
    assert s["spearman"] == pytest.approx(0.8) and s["kendall"] == pytest.approx(0.6)
    assert (s["n"], s["n_failed"], s["k"]) == (5, 2, 1)
    assert math.isnan(corr.spearman(np.full(4, 2.0), np.arange(4.0)))  # a constant proxy has no rank correlation
    assert math.isnan(corr.summarize(np.full(3, np.nan), np.arange(3.0))["spearman"])


def test_top_k_hit_rate_by_hand() -> None:
    truth = np.arange(20.0)  # the true top 10% (k = 2) are cells 18 and 19
    scores = np.zeros(20)
    scores[19], scores[0] = 10.0, 9.0  # the proxy's top 2: cells 19 and 0 -> one of two hit
    assert corr.top_k(20) == 2
    assert corr.top_k_hit_rate(scores, truth) == pytest.approx(0.5)
    assert corr.top_k_hit_rate(truth, truth) == 1.0
    assert corr.top_k_hit_rate(-truth, truth) == 0.0
    # a constant proxy: every cell ties for the 2 slots, so each is in with probability 2/20 -> 0.1 = chance
    assert corr.top_k_hit_rate(np.ones(20), truth) == pytest.approx(0.1)


def test_regret_by_hand() -> None:
    truth = np.array([90.0, 80.0, 70.0, 60.0])
    assert corr.regret_at_k(np.array([1.0, 2, 3, 4]), truth, k=1) == 30.0  # picks the 60% cell
    assert corr.regret_at_k(np.array([1.0, 2, 3, 4]), truth, k=2) == 20.0  # best of {70, 60}
    assert corr.regret_at_k(np.array([4.0, 3, 2, 1]), truth, k=1) == 0.0
    # two cells tie for the one slot: E[best] = (90 + 80) / 2 -> regret 5
    assert corr.regret_at_k(np.array([1.0, 1, 0, 0]), truth, k=1) == pytest.approx(5.0)
    # three tied cells {90, 80, 70} for 2 slots: best is 90 w.p. 2/3, else 80 -> E = 86.67
    assert corr.regret_at_k(np.array([1.0, 1, 1, 0]), truth, k=2) == pytest.approx(90 - (2 / 3 * 90 + 1 / 3 * 80))


def test_combine_ranks_by_hand() -> None:
    a, b = np.array([1.0, 2, 3]), np.array([30.0, 10, 20])  # ranks/3: [1/3, 2/3, 1] and [1, 1/3, 2/3]
    assert corr.combine_ranks({"a": a, "b": b}) == pytest.approx([2 / 3, 1 / 2, 5 / 6])
    assert corr.combine_ranks({"a": a, "b": b}, {"a": 2.0, "b": 1.0}) == pytest.approx([5 / 9, 5 / 9, 8 / 9])
    with_nan = corr.combine_ranks({"a": np.array([1.0, np.nan, 3]), "b": b})
    assert math.isnan(with_nan[1]) and with_nan[0] == pytest.approx((1 / 2 + 1) / 2)
    assert corr.parse_combination("nwot:2+synflow") == {"nwot": 2.0, "synflow": 1.0}
    for bad in ("nwot", "nwot+nwot", "nwot:-1+synflow", "nwot:x+synflow"):
        with pytest.raises(BadInputError, match="nwot"):
            corr.parse_combination(bad)


def test_split_is_stable_and_of_the_requested_share(nats_cifar10: dict[str, float]) -> None:
    cells = sorted(nats_cifar10)
    splits = [cell_split(a, 0, 0.5) for a in cells]
    assert 0.48 < splits.count("report") / len(cells) < 0.52
    assert splits == [cell_split(a, 0, 0.5) for a in cells]
    assert splits != [cell_split(a, 1, 0.5) for a in cells]
    assert {cell_split(a, 0, 1.0) for a in cells[:200]} == {"report"}


# ------------------------------------------------------------------------------------------ ground truth


def test_nats_csv_loader_on_the_reference_file(nats_cifar10: dict[str, float]) -> None:
    assert len(nats_cifar10) == 15625
    assert round(max(nats_cifar10.values()), 2) == 94.37
    assert round(max(ground_truth.load_nats_csv(NATS_CSV, "cifar100").values()), 2) == 73.51
    assert round(max(ground_truth.load_nats_csv(NATS_CSV, "ImageNet16-120").values()), 2) == 47.31
    empty = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert nats_cifar10[empty] == pytest.approx(10.0)  # no path from input to output: chance level


def test_nats_csv_errors_name_the_file_and_the_columns(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="nope.csv.*ArchitectureString"):
        ground_truth.load_nats_csv(tmp_path / "nope.csv", "cifar10")
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,acc\n|x|,1\n")
    with pytest.raises(BadInputError, match="bad.csv.*CIFAR10TestAccuracy200Epochs"):
        ground_truth.load_nats_csv(bad, "cifar10")
    with pytest.raises(BadInputError, match="ImageNet16-120"):
        ground_truth.load_nats_csv(NATS_CSV, "imagenet")


def test_analog_nasbench_loader_agrees_with_nats(nats_cifar10: dict[str, float]) -> None:
    sentinel = object()
    sys.modules["pkg_resources"] = sentinel  # type: ignore[assignment]
    try:
        analog = ground_truth.load_analog_nasbench()
        assert sys.modules["pkg_resources"] is sentinel, "the loader must restore sys.modules"
    finally:
        del sys.modules["pkg_resources"]
    assert set(analog) == set(nats_cifar10)
    cells = sorted(analog)
    rho = corr.spearman(np.array([analog[a] for a in cells]), np.array([nats_cifar10[a] for a in cells]))
    assert rho > 0.98  # the reference README: Spearman 0.99 with the NATS CSV; a wrong op/edge map gives ~0.75
    ground_truth.load_analog_nasbench()
    assert "pkg_resources" not in sys.modules


def test_missing_analog_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(ground_truth.metadata, "version", missing)
    with pytest.raises(BadInputError, match=r"pip install 'studentnas\[nasbench\]'"):
        ground_truth.load_ground_truth("analog-nasbench", "cifar10")


def test_published_loader_matches_our_nb201_costs() -> None:
    space = studentnas.get_space("nb201")
    sizes = {"cifar10": 724, "cifar100": 725, "ImageNet16-120": 724}
    for dataset, count in sizes.items():
        cells = load_published(PUBLISHED, dataset)
        assert len(cells) == count
        size, classes = ground_truth.INPUT_SIZE[dataset], ground_truth.NUM_CLASSES[dataset]
        for cell in cells:
            cost = space.cost(space.from_string(cell.arch), size, classes)
            assert cost.params / 1e6 == pytest.approx(cell.scores["params"], abs=1e-6), cell.arch
            assert cost.extra["nb201_flops"] / 1e6 == pytest.approx(cell.scores["macs"], rel=1e-6), cell.arch
    first = load_published(PUBLISHED, "cifar10")[0]
    assert first.naslib_tuple == (0, 2, 3, 2, 3, 1) and first.val_accuracy == 86.06
    assert {"nwot", "synflow", "jacov", "macs", "params"} <= set(first.scores)


# -------------------------------------------------------------------------------------------- foolbox


def _png(color: tuple[int, int, int], size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_foolbox_reader_on_a_handmade_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "foolbox-3.3.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("foolbox/data/cifar10_01_8.png", _png((0, 128, 255)))
        z.writestr("foolbox/data/cifar10_00_3.png", _png((10, 20, 30)))
        z.writestr("foolbox/data/cifar100_00_49.png", _png((1, 2, 3)))
        z.writestr("foolbox/data/mnist_00_7.png", _png((9, 9, 9)))
        z.writestr("foolbox/__init__.py", "raise RuntimeError('foolbox code must never run')")
    c10 = foolbox_data.load_foolbox(f"foolbox-cifar10:{wheel}")
    assert c10.images.shape == (2, 32, 32, 3) and c10.labels.tolist() == [3, 8]
    assert c10.images[0, 5, 7].tolist() == [10, 20, 30] and c10.images[1, 0, 0].tolist() == [0, 128, 255]
    assert c10.classes[8] == "ship" and "foolbox 3.3.4" in c10.source
    c100 = foolbox_data.read_foolbox_images("cifar100", wheel)
    assert c100.labels.tolist() == [49] and c100.classes[49] == "mountain" and len(c100.classes) == 100
    small = tmp_path / "small.whl"
    with zipfile.ZipFile(small, "w") as z:
        z.writestr("foolbox/data/cifar10_00_3.png", _png((0, 0, 0), size=28))
    with pytest.raises(BadInputError, match="28x28, not a 32x32"):
        foolbox_data.read_foolbox_images("cifar10", small)
    (tmp_path / "junk.whl").write_text("not a zip")
    with pytest.raises(BadInputError, match="junk.whl"):
        foolbox_data.read_foolbox_images("cifar10", tmp_path / "junk.whl")
    with pytest.raises(BadInputError, match="no foolbox/data/cifar100"):
        foolbox_data.read_foolbox_images("cifar100", small)
    with pytest.raises(BadInputError, match="does not exist"):
        foolbox_data.load_foolbox(f"foolbox-cifar10:{tmp_path / 'missing.whl'}")


def test_foolbox_real_wheel_holds_the_first_cifar_test_images() -> None:
    wheel = foolbox_data.fetch_wheel()  # from the cache, or downloaded there with pip (~2 MB)
    c10 = foolbox_data.read_foolbox_images("cifar10", wheel)
    c100 = foolbox_data.read_foolbox_images("cifar100", wheel)
    assert c10.images.shape == c100.images.shape == (20, 32, 32, 3)
    assert c10.labels.tolist() == FIRST_CIFAR10_TEST_LABELS
    assert c100.labels.tolist() == FIRST_CIFAR100_TEST_LABELS
    assert 40 < c10.images.mean() < 200  # real photos, not blank images


# ------------------------------------------------------------------------------------------ end to end


def test_cli_bench_proxies_json_layout(cli, tmp_path: Path, nats_cifar10: dict[str, float]) -> None:
    out = tmp_path / "bench.json"
    proc = cli("bench", "proxies", "--space", "nb201", "--ground-truth", str(NATS_CSV), "--dataset", "cifar10", *TINY,
               "--combine", "nwot+synflow", "--holdout-fraction", "0.5", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "spearman" in proc.stdout and "nwot+synflow" in proc.stdout
    result = json.loads(out.read_text())
    assert {"config", "per_arch", "summary", "summary_tune", "summary_all", "timing"} <= set(result)
    rows = result["per_arch"]
    assert len(rows) == 6 and len({r["arch"] for r in rows}) == 6
    for row in rows:
        assert row["accuracy"] == nats_cifar10[row["arch"]]
        assert set(row["scores"]) == {"params", "macs", "nwot", "synflow"}
        assert all(isinstance(v, float) for v in row["scores"].values())
        assert {"params", "macs", "nwot", "synflow", "build", "total"} <= set(row["seconds"])
        assert row["seconds"]["total"] >= row["seconds"]["nwot"] + row["seconds"]["synflow"]
        assert row["split"] in ("report", "tune") and "nwot+synflow" in row["combined"]
    for key in ("summary_all", "summary", "summary_tune"):
        assert set(result[key]) == {"params", "macs", "nwot", "synflow", "nwot+synflow"}
    entry = result["summary_all"]["nwot"]
    assert {"spearman", "kendall", "top_hit", "regret_top", "n", "n_failed", "seconds_per_arch", "data"} <= set(entry)
    assert entry["n"] == 6 and "Fashion-MNIST" in entry["data"]
    assert result["summary_all"]["synflow"]["data"] == "none (data-free)"
    assert result["summary"]["nwot"]["n"] == result["config"]["n_report"]
    assert result["config"]["n_report"] + result["config"]["n_tune"] == 6
    cfg = result["config"]
    assert cfg["threads"] == 2 and cfg["batch_size"] == 8 and cfg["versions"]["torch"]
    assert cfg["data"]["batch_size"] == 8 and "Fashion-MNIST" in cfg["data"]["source"]


def test_resume_scores_only_new_cells(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "b.json"
    common = dict(out=out, ground_truth=NATS_CSV, batch_size=8, proxies="synflow", quiet=True)
    first = bench_proxies(samples=4, **common)
    assert (first["config"]["scored_cells"], first["config"]["resumed_cells"]) == (4, 0)
    second = bench_proxies(samples=6, **common)
    assert (second["config"]["scored_cells"], second["config"]["resumed_cells"]) == (2, 4)
    assert [r["arch"] for r in second["per_arch"][:4]] == [r["arch"] for r in first["per_arch"]]
    assert second["per_arch"][:4] == first["per_arch"]
    assert len(journal_path(out).read_text().splitlines()) == 1 + 6
    lines = journal_path(out).read_text().splitlines()
    record = json.loads(lines[2])
    record["fingerprints"]["synflow"] = "0ld5ource000"  # as if synflow's code changed since that cell was scored
    journal_path(out).write_text("\n".join([*lines, json.dumps(record)]) + "\n")
    third = bench_proxies(samples=6, **common)
    assert (third["config"]["scored_cells"], third["config"]["resumed_cells"]) == (1, 5)
    with journal_path(out).open("a") as handle:
        handle.write('{"arch": "|nor_conv')  # a kill in the middle of a write
    capsys.readouterr()
    fourth = bench_proxies(samples=6, **common)
    assert fourth["config"]["scored_cells"] == 0 and "ignored 1 unreadable line" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="cannot resume.*seed was 0, now 1.*--fresh"):
        bench_proxies(samples=6, seed=1, **common)
    again = bench_proxies(samples=6, fresh=True, **common)
    assert again["config"]["scored_cells"] == 6
    assert [r["scores"] for r in again["per_arch"]] == [r["scores"] for r in second["per_arch"]]  # seeded students


def test_fit_rank_weights_by_hand() -> None:
    # "good" is the truth with neighbours swapped pairwise (rank error d = +-1 on every cell), so alone
    # Spearman = 1 - 6 * 30 / (30 * (30^2 - 1)). "reversed" is the truth backwards. Mixing w of reversed
    # into good's ranks gives (1 - w) r + (+-1) + const: for w < 1 the same order (no strict gain, so the
    # weight stays 0), for w = 1 only the +-1 noise, for w > 1 a reversed order. The fit keeps good alone.
    truth = np.arange(30.0)
    good = truth + np.where(np.arange(30) % 2 == 0, 0.6, -0.6)
    fit = ensemble.fit_rank_weights({"good": good, "reversed": -truth}, truth)
    assert fit.single_spearman["good"] == pytest.approx(1 - 6 * 30 / (30 * (30**2 - 1)))
    assert fit.single_spearman["reversed"] == pytest.approx(-1.0)
    assert fit.weights == {"good": 1.0} and fit.tune_spearman == pytest.approx(fit.single_spearman["good"])
    assert fit.name == "fit[good:1]" and fit.n_tune == 30
    with pytest.raises(BadInputError, match="at least 20 tune cells"):
        ensemble.fit_rank_weights({"good": good[:10]}, truth[:10])


def test_fit_is_tuned_on_tune_cells_and_reported_on_report_cells(tmp_path: Path) -> None:
    result = bench_proxies(out=tmp_path / "f.json", ground_truth=NATS_CSV, samples=60, batch_size=8,
                           proxies="nwot,synflow", fit="nwot,synflow", quiet=True)
    fit = result["config"]["fit"]
    tune = [r for r in result["per_arch"] if r["split"] == "tune"]
    assert fit["n_tune"] == len(tune) >= 20
    name = fit["name"]
    assert name in result["summary"] and name in result["summary_tune"]
    # the fitted weights reproduce the stored tune Spearman from the per-cell rows alone
    scores = {p: np.array([r["scores"][p] for r in tune]) for p in fit["weights"]}
    value = corr.spearman(corr.combine_ranks(scores, fit["weights"]), np.array([r["accuracy"] for r in tune]))
    assert value == pytest.approx(fit["tune_spearman"])
    assert fit["tune_spearman"] >= max(fit["single_spearman"][p] for p in fit["weights"]) - 1e-12


def test_teacher_proxies_with_a_random_timm_teacher(tmp_path: Path) -> None:
    result = bench_proxies(out=tmp_path / "t.json", ground_truth=NATS_CSV, samples=4, batch_size=8,
                           proxies="diswot,kd_snip", teacher="resnet18", quiet=True)
    cfg = result["config"]
    assert cfg["teacher"] == {"name": "resnet18", "trained": False, "checkpoint": None, "num_classes": 10}
    assert all(math.isfinite(r["scores"]["diswot"]) and math.isfinite(r["scores"]["kd_snip"])
               for r in result["per_arch"])
    again = bench_proxies(out=tmp_path / "t2.json", ground_truth=NATS_CSV, samples=4, batch_size=8,
                          proxies="diswot,kd_snip", teacher="resnet18", quiet=True)
    assert [r["scores"] for r in again["per_arch"]] == [r["scores"] for r in result["per_arch"]]  # seeded teacher


def test_context_refuses_proxies_it_cannot_serve_before_any_work() -> None:
    import torch

    from studentnas.core.proxy import ProxyContext

    ctx = ProxyContext(torch.zeros(2, 3, 8, 8), None, 10)
    ctx.require([studentnas.get_proxy("synflow"), studentnas.get_proxy("nwot")])
    with pytest.raises(BadInputError, match="proxy 'snip' needs labels.*pass --data with labelled images"):
        ctx.require([studentnas.get_proxy("nwot"), studentnas.get_proxy("snip")])
    labelled = ProxyContext(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), 10)
    with pytest.raises(BadInputError, match="proxy 'diswot' needs a teacher, but none was given"):
        studentnas.get_proxy("diswot").score(torch.nn.Linear(8, 2), labelled)


def test_compare_published_on_a_few_cells(tmp_path: Path) -> None:
    result = bench_proxies(out=tmp_path / "c.json", compare_published=PUBLISHED, dataset="cifar10", samples=4,
                           batch_size=8, proxies="synflow", quiet=True)
    assert result["config"]["mode"] == "compare-published" and len(result["per_arch"]) == 4
    summary = result["summary"]
    assert summary["params"]["spearman_vs_published"] == pytest.approx(1.0)
    assert summary["macs"]["published_name"] == "flops"
    assert {"spearman_vs_published", "spearman_vs_val_accuracy", "published_spearman_vs_val_accuracy",
            "published_seconds_per_arch", "n"} <= set(summary["synflow"])
    assert summary["synflow"]["n"] == 4 and summary["synflow"]["published_seconds_per_arch"] > 0
    assert all(r["published"]["synflow"] is not None and r["val_accuracy"] > 0 for r in result["per_arch"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--space", "resnet", "--ground-truth", str(NATS_CSV)], "supports only nb201"),
        ([], "--ground-truth PATH"),
        (["--ground-truth", "/nonexistent/nats.csv"], "'/nonexistent/nats.csv' does not exist"),
        (["--ground-truth", "analog-nasbench", "--dataset", "cifar100"], "CIFAR-10 accuracies only"),
        (["--ground-truth", str(NATS_CSV), "--proxies", "nwto"], "unknown proxy 'nwto'"),
        (["--ground-truth", str(NATS_CSV), "--combine", "nwot+jacov", "--proxies", "nwot"], "--combine"),
        (["--ground-truth", str(NATS_CSV), "--samples", "20000"], "--samples 20000 exceeds the 15625 cells"),
        (["--ground-truth", str(NATS_CSV), "--holdout-fraction", "0"], "--holdout-fraction must be in (0, 1]"),
        (["--ground-truth", str(NATS_CSV), "--proxies", "nwot,kd_snip"],
         "proxy 'kd_snip' needs a teacher, but none was given; pass --teacher NAME"),
        (["--ground-truth", str(NATS_CSV), "--teacher", "resnet1O1"], "unknown teacher 'resnet1O1'"),
        (["--ground-truth", str(NATS_CSV), "--proxies", "nwot", "--fit", "nwot,jacov"], "--fit nwot,jacov"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                                      needle: str) -> None:
    assert main(["bench", "proxies", *args, "--quiet", "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "x.json").exists()
