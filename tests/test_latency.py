"""Latency: the cached meter, the per-layer lookup table, the spaces' analytic layer lists; stage costs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import studentnas as sn
from studentnas.core.space import SearchSpace
from studentnas.hardware.latency import (
    LatencyCache,
    LatencyMeter,
    default_threads,
    device_signature,
    measure_latency_ms,
)
from studentnas.hardware.latency_table import LatencyEstimator, Layer, chain, trace_layers, traced_layers

RESNET, NB201 = sn.get_space("resnet"), sn.get_space("nb201")


def conv_macs(layer: Layer) -> int:
    cin, cout, k, _s, _p, groups = layer.args
    _, _, h, w = layer.output_shape()
    return cout * (cin // groups) * k * k * h * w


def test_layer_shapes_by_hand() -> None:
    layers = chain((1, 3, 224, 224), [("conv", (3, 64, 7, 2, 3, 1)), ("bn", (64,)), ("relu", (True,)),
                                      ("maxpool", (3, 2, 1)), ("gap", ()), ("linear", (64, 10))])
    assert [la.output_shape() for la in layers] == [(1, 64, 112, 112)] * 3 + [(1, 64, 56, 56), (1, 64), (1, 10)]
    assert layers[0].key == "conv(3,64,7,2,3,1)@1x3x224x224"
    assert Layer("avgpool", (2, 2, 0, True), (1, 16, 32, 32)).output_shape() == (1, 16, 16, 16)


def test_resnet18_layers_counted_by_hand() -> None:
    layers = RESNET.layers(RESNET.named("resnet18"), (3, 224, 224), 1000)
    kinds = Counter(la.kind for la in layers)
    # stem conv + 8 blocks x 2 convs + 3 downsample convs; one BN each; stem ReLU + 2 per block; 8 residual adds
    assert kinds == {"conv": 20, "bn": 20, "relu": 17, "add": 8, "maxpool": 1, "gap": 1, "linear": 1}
    macs = sum(conv_macs(la) for la in layers if la.kind == "conv") + 512 * 1000
    assert macs == RESNET.cost(RESNET.named("resnet18")).macs == 1_814_073_344


def test_nb201_layers_counted_by_hand() -> None:
    arch = NB201.make(**{f"e{i}": "nor_conv_3x3" for i in range(6)})
    kinds = Counter(la.kind for la in NB201.layers(arch, (3, 32, 32), 10))
    # 15 cells x 6 conv edges (ReLU-conv-BN) + stem conv/BN + 2 reductions (2 ReLU-conv-BN + pool-1x1 conv) + head
    assert kinds["conv"] == 15 * 6 + 1 + 2 * 3
    assert kinds["bn"] == 15 * 6 + 1 + 2 * 2 + 1
    assert kinds["relu"] == 15 * 6 + 2 * 2 + 1
    assert kinds["add"] == 15 * 3 + 2  # nodes 2 and 3 sum 2 and 3 inputs; one add per reduction
    assert kinds["avgpool"] == 2 and kinds["gap"] == 1 and kinds["linear"] == 1


@pytest.mark.parametrize("space,size,classes", [(RESNET, (3, 64, 64), 1000), (NB201, (3, 32, 32), 10)])
def test_analytic_layers_equal_a_trace_of_the_built_model(space: SearchSpace, size: tuple, classes: int) -> None:
    rng = np.random.default_rng(3)
    for _ in range(4):
        arch = space.sample(rng)
        traced = traced_layers(space, arch, size, classes)  # the generic default: a meta-device trace
        analytic = space.layers(arch, size, classes)
        assert Counter(la.key for la in analytic if la.kind != "add") == Counter(la.key for la in traced)


def test_trace_reports_unmodelled_modules() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.GELU(), torch.nn.Identity())
    layers, unmodelled = trace_layers(model, (3, 8, 8))
    assert [la.key for la in layers] == ["conv(3,4,3,1,1,1)@1x3x8x8"] and unmodelled == ["GELU"]


def test_cache_merges_writers_and_survives_corruption(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "latency.json"
    a, b = LatencyCache(path), LatencyCache(path)
    a.update("dev", "archs", {"x": 1.5})
    b.update("dev", "archs", {"y": 2.5})  # b never read x, but must not drop it
    assert LatencyCache(path).section("dev", "archs") == {"x": 1.5, "y": 2.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latency.json", "latency.json.lock"]  # no temp files
    path.write_text("{not json")
    assert LatencyCache(path).get("dev", "archs", "x") is None
    assert "unreadable" in capsys.readouterr().err


def test_meter_caches_per_arch_and_device(tmp_path: Path) -> None:
    cache = LatencyCache(tmp_path / "latency.json")
    meter = LatencyMeter(threads=1, repeats=3, warmup=1, cache=cache)
    arch = NB201.smallest()
    first = meter.measure(NB201, arch, (3, 32, 32), 10)
    assert first > 0

    class Exploding(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("a cached latency must not run the model")

    assert meter.measure(NB201, arch, (3, 32, 32), 10, model=Exploding()) == first
    data = json.loads((tmp_path / "latency.json").read_text())
    assert list(data["devices"]) == [device_signature(1)] and len(data["devices"][device_signature(1)]["archs"]) == 1
    two = LatencyMeter(threads=2, repeats=3, warmup=1, cache=LatencyCache(tmp_path / "latency.json"))
    assert two.cached(NB201, arch, (3, 32, 32), 10) is None  # another thread count is another device
    assert meter.cached(NB201, arch, (3, 64, 64), 10) is None  # and another input size another key


def test_measure_restores_threads_mode_and_global_rng() -> None:
    model = NB201.build(NB201.smallest()).train()
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    measure_latency_ms(model, (3, 32, 32), repeats=2, warmup=1, threads=1)
    assert model.training and torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), state)


def test_threads_env_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDENTNAS_LATENCY_THREADS", "0")
    with pytest.raises(sn.BadInputError, match="STUDENTNAS_LATENCY_THREADS"):
        default_threads()
    monkeypatch.setenv("STUDENTNAS_LATENCY_THREADS", "3")
    assert default_threads() == 3


def test_estimate_is_the_sum_of_table_entries(tmp_path: Path) -> None:
    cache = LatencyCache(tmp_path / "latency.json")
    est = LatencyEstimator(threads=1, cache=cache)
    arch = NB201.smallest()  # all-"none" cell: stem, two reductions and the head only
    layers = NB201.layers(arch, (3, 32, 32), 10)
    table = {la.key: 0.25 * (i + 1) for i, la in enumerate(dict.fromkeys(layers))}  # made-up, distinct values
    cache.update(est.device, "layers", table)
    expected = sum(table[la.key] for la in layers)
    assert est.estimate_ms(NB201, arch, (3, 32, 32), 10) == pytest.approx(expected) and est.layers_timed == 0
    # could_fit: no calibration -> estimate vs limit * 1.2; after observing measured = 2 x estimate, scaled by 2
    assert est.could_fit(NB201, arch, (3, 32, 32), 10, limit_ms=expected / 1.2)
    assert not est.could_fit(NB201, arch, (3, 32, 32), 10, limit_ms=expected / 1.3)
    est.observe(estimate_ms=10.0, measured_ms=20.0)
    assert not est.could_fit(NB201, arch, (3, 32, 32), 10, limit_ms=expected)
    assert est.could_fit(NB201, arch, (3, 32, 32), 10, limit_ms=2 * expected / 1.2)


def test_estimate_times_missing_layers_once_and_ranks_sizes(tmp_path: Path) -> None:
    est = LatencyEstimator(threads=1, cache=LatencyCache(tmp_path / "latency.json"), samples=3)
    small = est.estimate_ms(RESNET, RESNET.named("resnet18"), (3, 64, 64), 1000)
    timed = est.layers_timed
    assert timed == len({la.key for la in RESNET.layers(RESNET.named("resnet18"), (3, 64, 64), 1000)})
    assert est.estimate_ms(RESNET, RESNET.named("resnet18"), (3, 64, 64), 1000) == small
    assert est.layers_timed == timed  # second estimate: every layer already in the table
    big = est.estimate_ms(RESNET, RESNET.named("resnet101"), (3, 64, 64), 1000)
    assert big > 2 * small  # 4.3x the MACs; a loaded machine must not flip that


def test_stage_costs_by_hand() -> None:
    from studentnas.hardware.breakdown import stage_costs

    arch = RESNET.named("resnet50")
    rows = {r["stage"]: r for r in stage_costs(RESNET.build(arch), (3, 224, 224))}
    assert list(rows) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert rows["stem"]["macs"] == 64 * 3 * 7 * 7 * 112 * 112 and rows["stem"]["params"] == 64 * 3 * 49 + 2 * 64
    assert rows["head"]["macs"] == 2048 * 1000 and rows["head"]["params"] == 2048 * 1000 + 1000
    cost = RESNET.cost(arch)
    assert sum(r["macs"] for r in rows.values()) == cost.macs and sum(r["params"] for r in rows.values()) == cost.params


def test_latency_budget_and_objective_in_a_search(tmp_path: Path, cli) -> None:
    """A latency share of the teacher resolves against the teacher's measured latency; every scored
    candidate is measured (through the on-disk cache) and within the limit; the cache holds them."""
    out = tmp_path / "run"
    env = {"STUDENTNAS_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = cli("search", "--teacher", "resnet18", "--space", "nb201", "--image-size", "32", "--budget", "100MMACs",
               "--budget", "90%latency", "--objectives", "nwot,latency", "--searcher", "random", "--candidates", "6",
               "--batch-size", "8", "--out", str(out), "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "run.json").read_text())
    teacher_ms = config["teacher_cost"]["latency_ms"]
    assert teacher_ms > 0
    rows = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    measured = [r for r in rows if r["status"] in ("ok", "infeasible")]
    assert measured and all(r["cost"]["latency_ms"] > 0 for r in measured)
    assert all(r["cost"]["latency_ms"] <= 0.9 * teacher_ms for r in rows if r["status"] == "ok")
    assert all(r["cost"]["latency_ms"] > 0.9 * teacher_ms for r in rows if r["status"] == "infeasible")
    cache = json.loads((tmp_path / "cache" / "latency.json").read_text())
    assert sum(len(dev.get("archs", {})) for dev in cache["devices"].values()) >= len(measured)
