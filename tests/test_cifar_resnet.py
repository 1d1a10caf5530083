"""The `cifar_resnet` space and its classic members registered as timm models (issue 13, item 1)."""

# ruff: noqa: I001  (studentnas before timm: it installs the torchvision shim)
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import studentnas  # noqa: F401
import timm
from studentnas import SPACES, get_space
from studentnas.core.errors import BadInputError
from studentnas.core.space import space_from_config
from studentnas.data.teachers import check_teacher_name, load_teacher
from studentnas.hardware.counting import count_params, counted_macs
from studentnas.hardware.latency_table import traced_layers
from studentnas.puzzle.decompose import family_for
from studentnas.testing import check_space

FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
NAMES = ["cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56", "cifar_resnet110",
         "cifar_resnet8x4", "cifar_resnet32x4"]
SPACES.load()  # the space plugin registers the timm names (the teacher loader and `list teachers` do this too)


def space():
    return get_space("cifar_resnet")


def test_resnet20_has_the_published_params_and_macs() -> None:
    # By hand, 10 classes, 32x32 input; a conv costs k*k*cin*cout weights + 2*cout BN parameters.
    #   stem 3->16:                 432 + 32                                        =     464
    #   stage 1, 6 convs 16->16:    6 * (2304 + 32)                                 =  14 016
    #   stage 2: 16->32, 32->32, 1x1 shortcut 16->32, then 4 convs 32->32:
    #                               (4608+64) + (9216+64) + (512+64) + 4*(9216+64)  =  51 648
    #   stage 3: 32->64, 64->64, 1x1 shortcut 32->64, then 4 convs 64->64:
    #                               (18432+128) + (36864+128) + (2048+128) + 4*(36864+128) = 205 696
    #   fc 64*10 + 10                                                               =     650
    #   total 272 474 = the published 0.27 M of He et al. (2016), Table 6.
    # MACs: weights x output pixels: stem 432*1024, stage 1 6*2304*1024, stage 2 (4608 + 5*9216 + 512)*256,
    #   stage 3 (18432 + 5*36864 + 2048)*64, fc 640: 442 368 + 14 155 776 + 13 107 200 + 13 107 200 + 640.
    model = timm.create_model("cifar_resnet20", num_classes=10)
    assert count_params(model) == 464 + 14_016 + 51_648 + 205_696 + 650 == 272_474
    assert counted_macs(model, (3, 32, 32)) == 442_368 + 14_155_776 + 2 * 13_107_200 + 640 == 40_813_184
    cost = space().cost(space().named("cifar_resnet20"), (3, 32, 32), num_classes=10)
    assert (cost.params, cost.macs) == (272_474, 40_813_184)


@pytest.mark.parametrize("name,classes,params", [
    ("cifar_resnet56", 10, 855_770),  # published 0.85 M (He et al. 2016, Table 6)
    ("cifar_resnet110", 10, 1_730_714),  # published 1.7 M
    ("cifar_resnet8x4", 100, 1_233_540),  # 1.23 M in the KD literature (CRD, Tian et al. 2020)
    ("cifar_resnet32x4", 100, 7_433_860),  # 7.43 M in the KD literature
])
def test_other_members_have_the_published_sizes(name: str, classes: int, params: int) -> None:
    # By hand from resnet20 (272 474): one more basic block in each stage adds two 3x3 convs + BNs of
    # 16, 32 and 64 channels: 2*(2304+32) + 2*(9216+64) + 2*(36864+128) = 97 216.
    #   resnet56 (9 per stage) = 272 474 + 6*97 216 = 855 770; resnet110 (18) = 855 770 + 9*97 216 = 1 730 714.
    # resnet8x4 (stem 32, one block of 64/128/256 per stage, each with a 1x1 shortcut, 100 classes):
    #   stem 864+64 = 928; stage 1 (18432+128) + (36864+128) + (2048+128) = 57 728;
    #   stage 2 (73728+256) + (147456+256) + (8192+256) = 230 144; stage 3 (294912+512) + (589824+512)
    #   + (32768+512) = 919 040; fc 256*100+100 = 25 700; total 1 233 540.
    assert 272_474 + 6 * 97_216 == 855_770 and 855_770 + 9 * 97_216 == 1_730_714
    assert 928 + 57_728 + 230_144 + 919_040 + 25_700 == 1_233_540
    model = timm.create_model(name, num_classes=classes)
    assert count_params(model) == params
    deep = get_space("cifar_resnet").for_teacher(model)  # resnet110 lies outside the default depths
    cost = deep.cost(deep.named(name), (3, 32, 32), classes)
    assert cost.params == params and cost.macs == counted_macs(model, (3, 32, 32))


@pytest.mark.parametrize("size", [(3, 32, 32), (3, 28, 28), (1, 28, 28), (1, 32, 32)])
def test_analytic_cost_equals_the_flop_counter_on_random_archs(size: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(size))
    wide = space().for_teacher(timm.create_model("cifar_resnet8x4"))  # base 64/128/256, stem 32, depths 1..4
    for sp in (space(), wide):
        for arch in [sp.sample(rng) for _ in range(3)]:
            model = sp.build(arch, num_classes=10, in_chans=size[0])
            cost = sp.cost(arch, size, num_classes=10)
            assert cost.params == count_params(model), sp.format_arch(arch)
            assert cost.macs == counted_macs(model, size), sp.format_arch(arch)


def test_both_block_types_cost_exactly() -> None:
    sp = space()
    for block in ("basic", "bottleneck"):
        arch = sp.make(block=block, stem=0.75, depth1=2, depth2=1, depth3=3, width1=1.5, width2=0.5, width3=3.0)
        model = sp.build(arch, num_classes=7, in_chans=1)
        cost = sp.cost(arch, (1, 28, 28), 7)
        assert (cost.params, cost.macs) == (count_params(model), counted_macs(model, (1, 28, 28)))


def test_space_contract_default_and_teacher_centred() -> None:
    check_space(space(), n=4)
    check_space(space().for_teacher(timm.create_model("cifar_resnet32x4")), input_size=(1, 28, 28), n=3)


def test_named_members_are_the_registered_timm_models() -> None:
    sp = space()
    for name in NAMES:
        teacher = timm.create_model(name, num_classes=10)
        try:
            arch = sp.named(name)
        except BadInputError as err:
            assert name == "cifar_resnet110" and "outside this space" in str(err)
            arch = sp.for_teacher(teacher).named(name)
            built = sp.for_teacher(teacher).build(arch, num_classes=10)
        else:
            built = sp.build(arch, num_classes=10)
        shapes = {k: tuple(v.shape) for k, v in built.state_dict().items()}
        assert shapes == {k: tuple(v.shape) for k, v in teacher.state_dict().items()}, name
    assert sp.format_arch(sp.named("cifar_resnet8x4")) == "basic d1-1-1 w64-128-256 stem32"
    with pytest.raises(BadInputError, match="no named cifar_resnet 'resnet20'"):
        sp.named("resnet20")


@pytest.mark.parametrize("space", [get_space("cifar_resnet"),
                                   SPACES.get("cifar_resnet")((64, 128, 256), 32, (4, 4, 4))])
def test_labels_read_back_as_the_same_arch(space) -> None:
    """`bench kd --student LABEL` and the ground-truth CSV's labels: format_arch and from_string are inverses."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.from_string(space.format_arch(arch)) == arch
    assert space.from_string("cifar_resnet8x4" if space.stem_base == 32 else "cifar_resnet20") == space.named(
        "cifar_resnet8x4" if space.stem_base == 32 else "cifar_resnet20")
    with pytest.raises(BadInputError, match="not a cifar_resnet label; write BLOCK dD1-D2-D3"):
        space.from_string("basic d3-3 w16-32-64 stem16")
    with pytest.raises(BadInputError, match="depth1"):
        space.from_string("basic d99-3-3 " + space.format_arch(space.smallest()).split(" ", 2)[2])


def test_for_teacher_centres_on_a_teacher_of_this_family() -> None:
    cls = SPACES.get("cifar_resnet")
    r56 = timm.create_model("cifar_resnet56")
    centred = cls.for_teacher(r56)
    assert (centred.base_channels, centred.stem_base, centred.max_depths) == ((16, 32, 64), 16, (14, 14, 14))
    arch = centred.named("cifar_resnet56")
    assert [arch[f"width{i}"] for i in (1, 2, 3)] == [1.0, 1.0, 1.0] and arch["stem"] == 1.0
    wide = cls.for_teacher(timm.create_model("cifar_resnet8x4"))
    assert (wide.base_channels, wide.stem_base, wide.max_depths) == ((64, 128, 256), 32, (4, 4, 4))
    assert wide.named("cifar_resnet8x4")["width3"] == 1.0
    bottleneck = cls().build(cls().make(block="bottleneck", stem=1.0, depth1=2, depth2=2, depth3=2, width1=1.0,
                                        width2=2.0, width3=0.5))
    assert cls.for_teacher(bottleneck).base_channels == (16, 64, 32)
    imagenet = timm.create_model("resnet18")
    assert not cls.matches_teacher(imagenet) and cls.matches_teacher(r56)
    assert not SPACES.get("resnet").matches_teacher(r56)  # 3 stages: the ImageNet space does not claim it
    with pytest.raises(BadInputError, match="CIFAR-style timm ResNet teacher"):
        cls.for_teacher(imagenet)
    assert space_from_config(wide.config()).config() == wide.config()


def test_models_follow_timm_and_puzzle_cuts_them() -> None:
    model = timm.create_model("cifar_resnet20", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 64, 8, 8) and model.num_features == 64
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(16, 1), (16, 1), (32, 2), (64, 4)]
    dec = family_for(model).decompose(model, (3, 32, 32))
    assert len(dec.infos) == 9 and {i.kind for i in dec.infos} == {"basic"}
    with torch.no_grad():
        assert torch.equal(dec(x), model(x))


def test_analytic_layers_equal_a_trace_of_the_built_model() -> None:
    sp, rng = space(), np.random.default_rng(5)
    for _ in range(3):
        arch = sp.sample(rng)
        traced = traced_layers(sp, arch, (1, 28, 28), 10)
        analytic = sp.layers(arch, (1, 28, 28), 10)
        assert Counter(la.key for la in analytic if la.kind != "add") == Counter(la.key for la in traced)


def test_teacher_names_resolve_through_the_loader_and_the_cli(cli) -> None:
    check_teacher_name("cifar_resnet56")
    teacher = load_teacher("cifar_resnet56", num_classes=10)
    assert teacher.input_size == (3, 32, 32) and teacher.num_classes == 10 and not teacher.trained
    # fresh processes, where nothing has loaded the space plugins yet
    code = ("import studentnas; from studentnas.data.teachers import load_teacher; "
            "t = load_teacher('cifar_resnet8x4'); print(t.num_classes, t.model.conv1.out_channels)")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0 and fresh.stdout.split() == ["100", "32"], fresh.stderr
    listed = cli("list", "teachers", "cifar*", isolated=True)
    assert listed.returncode == 0 and sorted(listed.stdout.split()) == sorted(NAMES), listed.stderr
    bad = cli("search", "--teacher", "cifar_resnet56", "--pretrained", "--budget", "50%macs")
    assert bad.returncode == 2 and "no pretrained weights are published for 'cifar_resnet56'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_search_puzzle_and_distill_end_to_end(cli, tmp_path: Path) -> None:
    if not FMNIST.is_file():
        pytest.fail("Debian's dataset-fashion-mnist is required (make data installs it)")
    ckpt = tmp_path / "t20.safetensors"
    trained = cli("teacher", "train", "--model", "cifar_resnet20", "--data", "fashion-mnist", "--epochs", "1",
                  "--image-size", "32", "--train-images", "256", "--test-images", "64", "--threads", "1", "--quiet",
                  "--out", str(ckpt))
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "search"
    found = cli("search", "--teacher", "cifar_resnet20", "--teacher-checkpoint", str(ckpt), "--budget", "50%macs",
                "--image-size", "32", "--candidates", "4", "--data", "fashion-mnist", "--out", str(run), "--quiet")
    assert found.returncode == 0, found.stderr
    config = json.loads((run / "run.json").read_text())  # the space centred on the teacher: depths 1..5
    assert config["space"] == {"name": "cifar_resnet", "base_channels": [16, 32, 64], "stem_base": 16,
                               "max_depths": [5, 5, 5]}
    rows = [json.loads(line) for line in (run / "candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["status"] == "ok" and r["cost"]["macs"] <= 0.5 * 40_813_184 for r in rows)
    distilled = cli("distill", str(run), "--top", "1", "--data", "fashion-mnist", "--epochs", "1", "--trials", "1",
                    "--train-images", "128", "--test-images", "64", "--cpus", "1", "--quiet")
    assert distilled.returncode == 0, distilled.stderr
    assert len(list((run / "students").glob("*.safetensors"))) == 1
    narrow = '{"widths": [0.5], "merge": false, "linear": false, "noop": false}'
    puzzled = cli("puzzle", "--teacher", "cifar_resnet20", "--budget", "70%macs", "--out", str(tmp_path / "p"),
                  "--image-size", "32", "--data", "fashion-mnist", "--bld-samples", "96", "--score-samples", "48",
                  "--test-samples", "64", "--bld-budget", "64", "--random-baselines", "2", "--threads", "1",
                  "--library-options", narrow)
    assert puzzled.returncode == 0, puzzled.stderr
    assert "skipped: the teacher is randomly initialised" in puzzled.stdout
    assert (tmp_path / "p" / "puzzle" / "students" / "70pctmacs.safetensors").is_file()
