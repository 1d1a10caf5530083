"""Tests of the NAS-Bench-201 space: exact costs against NASLib's published numbers, analytic costs
against counted ones, the NASLib tuple mapping against NATS-Bench accuracies, and the text forms."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from studentnas import get_space
from studentnas.core.errors import BadInputError
from studentnas.hardware.counting import count_params, counted_macs
from studentnas.search_spaces.nb201 import OPS, NB201Space, _analytic_cost

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "nb201"
ZC_FILE = REF / "naslib_zc_nasbench201.json"
NATS_FILE = REF / "nats_bench.csv"
DATASETS = {"cifar10": (10, 32), "cifar100": (100, 32), "ImageNet16-120": (120, 16)}
KNOWN = "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|"


def rec_tuple(key: str) -> tuple[int, ...]:
    """NASLib's key "(0, 2, 3, 2, 3, 1)" as a tuple of ints."""
    return tuple(int(v) for v in key.strip("()").split(","))


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space()


@pytest.fixture(scope="module")
def zc() -> dict:
    if not ZC_FILE.is_file():
        raise FileNotFoundError(f"reference file {ZC_FILE} is missing; clone with ../shared beside the repo")
    return json.loads(ZC_FILE.read_text())


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_costs_match_published_for_every_cell(space: NB201Space, zc: dict, dataset: str) -> None:
    num_classes, size = DATASETS[dataset]
    err_params = err_flops = 0.0
    for key, rec in zc[dataset].items():
        cost = space.cost(space.from_naslib_tuple(rec_tuple(key)), (3, size, size), num_classes)
        err_params = max(err_params, abs(cost.params / 1e6 - rec["params"]["score"]))
        err_flops = max(err_flops, abs(cost.extra["nb201_flops"] / 1e6 - rec["flops"]["score"]))
    print(f"{dataset}: {len(zc[dataset])} cells, max |err| params {err_params:.2e} M, flops {err_flops:.2e} M")
    assert len(zc[dataset]) >= 724
    assert err_params <= 1e-6 and err_flops <= 1e-6


def test_naslib_mapping_agrees_with_nats_accuracies(space: NB201Space, zc: dict) -> None:
    # Costs depend only on op counts, so they cannot check the edge order; accuracies can. With the
    # right mapping NASLib's validation accuracy tracks NATS-Bench's test accuracy closely (r ~ 0.99);
    # a wrong edge order drops r to about 0.6.
    if not NATS_FILE.is_file():
        raise FileNotFoundError(f"reference file {NATS_FILE} is missing; clone with ../shared beside the repo")
    with NATS_FILE.open() as fh:
        acc = {row["ArchitectureString"]: float(row["CIFAR100TestAccuracy200Epochs"]) for row in csv.DictReader(fh)}
    pairs = [
        (rec["val_accuracy"], acc[space.format_arch(space.from_naslib_tuple(rec_tuple(key)))])
        for key, rec in zc["cifar100"].items()
    ]
    assert np.corrcoef(np.array(pairs).T)[0, 1] > 0.98


def test_known_cell(space: NB201Space) -> None:
    arch = space.from_naslib_tuple((0, 2, 3, 2, 3, 1))
    assert space.format_arch(arch) == KNOWN
    assert space.to_naslib_tuple(arch) == (0, 2, 3, 2, 3, 1)
    # NASLib's ops: 0 skip, 1 none, 2 conv3x3, 3 conv1x1, 4 pool; (1,4) is e3 and (2,3) is e2.
    assert space.from_naslib_tuple((4, 1, 2, 3, 0, 0)).as_dict() == {
        "e0": "avg_pool_3x3",
        "e1": "none",
        "e2": "nor_conv_1x1",
        "e3": "nor_conv_3x3",
        "e4": "skip_connect",
        "e5": "skip_connect",
    }
    cost = space.cost(arch)  # published cifar10: 0.615386 M params, 88.307392 MFLOPs
    assert cost.params == 615386 and cost.extra["nb201_flops"] == 88307392


def test_all_none_params_by_hand(space: NB201Space) -> None:
    # C=16, 10 classes, every edge "none" (the cells have no parameters):
    #   stem      3*16*9 + 2*16                         =    464
    #   reduce 1  16*32*9 + 2*32 + 32*32*9 + 2*32 + 16*32 = 14,464
    #   reduce 2  32*64*9 + 2*64 + 64*64*9 + 2*64 + 32*64 = 57,600
    #   final BN  2*64                                  =    128
    #   linear    64*10 + 10                            =    650
    #   total                                           = 73,306  (published: 0.073306 M)
    arch = space.smallest()
    assert space.cost(arch).params == 73306 == count_params(space.build(arch))
    # Each 3x3-conv edge adds 5 cells * (16^2*9+32 + 32^2*9+64 + 64^2*9+128) = 243,040 params.
    assert space.cost(arch.replace(e5="nor_conv_3x3")).params == 73306 + 243040


@pytest.mark.parametrize("size,num_classes", [(32, 10), (16, 120)])
def test_analytic_matches_counted(space: NB201Space, size: int, num_classes: int) -> None:
    rng = np.random.default_rng(size)
    archs = [space.sample(rng) for _ in range(5)] + [space.smallest(), space.decode([3] * 6)]
    for arch in archs:
        model = space.build(arch, num_classes=num_classes)
        cost = space.cost(arch, (3, size, size), num_classes)
        assert cost.macs == counted_macs(model, (3, size, size)), str(arch)
        assert cost.params == count_params(model), str(arch)


def test_cost_is_fast(space: NB201Space) -> None:
    archs = [space.decode(v) for v in np.random.default_rng(1).integers(0, 5, size=(2000, 6))]
    _analytic_cost.cache_clear()
    t0 = time.perf_counter()
    for arch in archs:
        space.cost(arch)
    assert len(archs) / (time.perf_counter() - t0) > 1000


def test_build_forward_and_timm_contract(space: NB201Space) -> None:
    model = space.build(space.from_string(KNOWN)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        feats = model.forward_features(x)
        assert feats.shape == (2, model.num_features, 8, 8) and model.num_features == 64
        assert model.forward_head(feats, pre_logits=True).shape == (2, 64)
    assert [f["num_chs"] for f in model.feature_info] == [16, 32, 64]
    assert [f["reduction"] for f in model.feature_info] == [1, 2, 4]
    assert all(isinstance(model.get_submodule(f["module"]), torch.nn.Module) for f in model.feature_info)
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7 and model.num_classes == 7
    assert space.build(space.smallest(), num_classes=3, in_chans=1)(torch.randn(1, 1, 16, 16)).shape == (1, 3)


def test_string_and_encoding_round_trips(space: NB201Space) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.from_string(space.format_arch(arch)) == arch
        assert space.decode(space.encode(arch)) == arch
        assert space.from_naslib_tuple(space.to_naslib_tuple(arch)) == arch
    assert space.size() == 5**6
    assert space.genes()[0].choices == OPS


def test_bad_inputs_say_the_rule(space: NB201Space) -> None:
    with pytest.raises(BadInputError, match="is not of the form"):
        space.from_string("|nor_conv_3x3~0|+|none~0|")
    with pytest.raises(BadInputError, match="is not one of"):
        space.from_string(KNOWN.replace("none", "conv_5x5"))
    with pytest.raises(BadInputError, match="six ints"):
        space.from_naslib_tuple((0, 1, 2))
    with pytest.raises(BadInputError, match="multiples of 4"):
        space.cost(space.smallest(), (3, 30, 30))
    with pytest.raises(BadInputError, match="positive integer"):
        NB201Space(C=0)


def test_registry_and_config() -> None:
    space = get_space("nb201", C=8, N=1)
    assert isinstance(space, NB201Space) and space.config() == {"name": "nb201", "C": 8, "N": 1}
    assert NB201Space.from_config(space.config()).config() == space.config()
    model = space.build(space.decode([3] * 6))
    assert space.cost(space.decode([3] * 6)).params == count_params(model)
    with pytest.raises(BadInputError, match="remove the other keys"):
        NB201Space.from_config({"name": "nb201", "depth": 3})
