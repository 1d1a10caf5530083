"""The resnet space reproduces timm's ResNets exactly and its analytic cost is hand-checkable."""

from __future__ import annotations

import numpy as np
import pytest
import timm

from studentnas import get_space
from studentnas.hardware.counting import count_params, counted_macs
from studentnas.search_spaces.resnet import ResNetSpace

# Published parameter counts (torchvision/timm) and GMACs at 224x224 (the papers' "GFLOPs": 1.8/3.6/4.1/7.8).
NAMED = {"resnet18": (11_689_512, 1.814), "resnet34": (21_797_672, 3.664), "resnet50": (25_557_032, 4.089),
         "resnet101": (44_549_160, 7.801)}


@pytest.mark.parametrize("name", list(NAMED))
def test_named_resnets_are_in_the_space_exactly(name: str) -> None:
    space = get_space("resnet")
    arch = space.named(name)
    params, gmacs = NAMED[name]
    cost = space.cost(arch)
    assert cost.params == params
    assert round(cost.gmacs, 3) == gmacs
    built = space.build(arch)
    assert count_params(built) == count_params(timm.create_model(name)) == params
    assert isinstance(built, timm.models.resnet.ResNet) and built.num_features == timm.create_model(name).num_features


def test_hand_derived_cost_of_a_tiny_resnet() -> None:
    # basic block, depth 1 per stage, widths 0.5 (planes 32/64/128/256), 7x7 stem (64 ch), 32x32 input, 10 classes.
    # stem 7x7 3->64 at 16x16: 9,408 w + 128 BN, 2,408,448 MACs; max pool -> 8x8
    # stage1 (8x8):  ds 64->32 1x1 2,048+64, conv 64->32 3x3 18,432+64, conv 32->32 9,216+64 = 29,888; MACs 1,900,544
    # stage2 (4x4):  ds 2,048+128, conv 18,432+128, conv 36,864+128 = 57,728;       MACs 917,504
    # stage3 (2x2):  ds 8,192+256, conv 73,728+256, conv 147,456+256 = 230,144;     MACs 917,504
    # stage4 (1x1):  ds 32,768+512, conv 294,912+512, conv 589,824+512 = 919,040;   MACs 917,504
    # fc 256->10: 2,570 params, 2,560 MACs.  Total 1,248,906 params, 7,064,064 MACs.
    space = get_space("resnet")
    arch = space.make(block="basic", stem_type="", stem_width=64, ratio=1.0,
                      **{f"depth{i}": 1 for i in range(1, 5)}, **{f"width{i}": 0.5 for i in range(1, 5)})
    cost = space.cost(arch, (3, 32, 32), num_classes=10)
    assert cost.params == 1_248_906 and cost.macs == 7_064_064
    model = space.build(arch, num_classes=10)
    assert count_params(model) == 1_248_906 and counted_macs(model, (3, 32, 32)) == 7_064_064


def test_analytic_cost_equals_flop_counter_on_random_archs() -> None:
    space = get_space("resnet")
    rng = np.random.default_rng(11)
    for _ in range(6):
        arch = space.sample(rng)
        model = space.build(arch, num_classes=100)
        cost = space.cost(arch, (3, 64, 48), num_classes=100)
        assert cost.params == count_params(model)
        assert cost.macs == counted_macs(model, (3, 64, 48))


def test_canonical_genes_make_equal_networks_equal_archs() -> None:
    space = get_space("resnet")
    base = dict(block="basic", stem_type="", **{f"depth{i}": 2 for i in range(1, 5)},
                **{f"width{i}": 1.0 for i in range(1, 5)})
    a = space.make(**base, stem_width=32, ratio=0.5)
    b = space.make(**base, stem_width=64, ratio=2.0)
    assert a == b and a.id == b.id  # 7x7 stem is 64 wide in timm; basic blocks have no ratio


def test_for_teacher_centres_on_resnet101() -> None:
    space = ResNetSpace.for_teacher(timm.create_model("resnet101"))
    assert space.max_depths == (5, 6, 35, 5) and space.base_channels == (64, 128, 256, 512)
    for name in NAMED:
        assert space.cost(space.named(name)).params == NAMED[name][0]
    wide = ResNetSpace.for_teacher(timm.create_model("wide_resnet50_2"))
    assert wide.max_depths == (5, 6, 9, 5)
    assert wide.cost(wide.make(**wide.named("resnet50").as_dict() | {"ratio": 2.0})).params == count_params(
        timm.create_model("wide_resnet50_2"))


def test_min_cost_is_the_smallest_over_the_space() -> None:
    space = get_space("resnet")
    low = space.min_cost()
    rng = np.random.default_rng(0)
    costs = [space.cost(space.sample(rng)) for _ in range(2000)]
    assert low.macs <= min(c.macs for c in costs) and low.params <= min(c.params for c in costs)
    assert space.cost(space.smallest()).macs == low.macs
