# ruff: noqa: I001  (studentnas must be imported before timm)
"""The Puzzle ResNet family on real timm teachers (resnet18: BasicBlock, resnet26: Bottleneck; 10 classes, 32x32).

Shapes at 32x32: the stem halves twice (conv1 stride 2, maxpool), so layer1 runs at 8x8, layer2 at 4x4,
layer3 at 2x2 and layer4 at 1x1. Both teachers have 2 blocks per stage (8 parent layers).

Replacement counts derived by hand, with the default options (widths 0.75/0.5/0.25, basic, linear, noop, merge
at widths 1.0/0.5):

- resnet18: every block gets teacher + 3 widths + linear = 5. A no-op needs stride 1 and C_in == C_out: layer1.0
  (64 -> 64, stride 1) and the second block of every stage qualify (5 blocks); layer2.0, layer3.0, layer4.0 double
  the channels with stride 2 and do not. Singles: 8 * 5 + 5 = 45. Merges: one pair per stage (layers 0-1, 2-3,
  4-5, 6-7; the pairs 1-2, 3-4, 5-6 cross a stage) at 2 widths = 8. Total 53.
- resnet26: every block gets teacher + 3 widths + basic + linear = 6; a no-op only on the 4 second blocks
  (layer1.0 maps 64 -> 256). Singles: 8 * 6 + 4 = 52. Merges as above: 8. Total 60.
"""

from __future__ import annotations

import copy
import io
from collections import Counter

import studentnas  # noqa: F401  (installs the torchvision shim before timm)
import pytest
import timm
import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.puzzle.decompose import assemble
from studentnas.puzzle.families import resnet_blocks
from studentnas.puzzle.families.resnet import ResNetFamily
from studentnas.puzzle.families.resnet_blocks import PRUNERS
from studentnas.puzzle.library import Replacement

SHAPE = (3, 32, 32)


def _randomise_bns(model: nn.Module, seed: int) -> nn.Module:
    """Random BN affine parameters and running stats, so no branch is silenced by timm's zero-init of the last BN."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model


def _teacher(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _randomise_bns(timm.create_model(name, num_classes=10), seed).eval()


@pytest.fixture(scope="module")
def r18() -> nn.Module:
    return _teacher("resnet18")


@pytest.fixture(scope="module")
def r26() -> nn.Module:
    return _teacher("resnet26")


def _x(shape: tuple[int, ...], batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))


def test_matches_timm_resnets_only(r18: nn.Module, r26: nn.Module) -> None:
    family = ResNetFamily()
    assert family.matches(r18) and family.matches(r26)
    assert not family.matches(nn.Sequential(nn.Conv2d(3, 8, 3)))


@pytest.mark.parametrize("name", ["r18", "r26"])
def test_decomposition_equals_the_model(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    dec = ResNetFamily().decompose(model, SHAPE)
    x = _x(SHAPE)
    with torch.no_grad():
        assert torch.equal(dec(x), model(x))
    assert dec.prefix.conv1 is model.conv1 and dec.suffix.fc is model.fc  # views, not copies
    assert [layer for layer in dec.layers] == [*model.layer1, *model.layer2, *model.layer3, *model.layer4]
    assert [i.name for i in dec.infos] == [f"layer{s}.{j}" for s in range(1, 5) for j in range(2)]
    assert [i.stage for i in dec.infos] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_layer_infos_of_resnet26(r26: nn.Module) -> None:
    infos = ResNetFamily().decompose(r26, SHAPE).infos
    assert {i.kind for i in infos} == {"bottleneck"}
    # layer1.0: 64 -> 256 at 8x8, mid 64; layer2.0: 256 -> 512, 8x8 -> 4x4, mid 128
    assert (infos[0].in_shape, infos[0].out_shape) == ((64, 8, 8), (256, 8, 8))
    assert (infos[2].in_shape, infos[2].out_shape) == ((256, 8, 8), (512, 4, 4))
    assert (infos[7].in_shape, infos[7].out_shape) == ((2048, 1, 1), (2048, 1, 1))
    extra = {k: infos[2].extra[k] for k in ("stride", "in_channels", "out_channels", "mid_channels")}
    assert extra == {"stride": 2, "in_channels": 256, "out_channels": 512, "mid_channels": 128}
    assert [i.extra["stride"] for i in infos] == [1, 1, 2, 1, 2, 1, 2, 1]


def test_decompose_leaves_a_training_teacher_untouched() -> None:
    model = _teacher("resnet18").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ResNetFamily().decompose(model, SHAPE)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats not updated


def test_replacement_counts_by_hand(r18: nn.Module, r26: nn.Module) -> None:
    family = ResNetFamily()
    reps18 = family.replacements(family.decompose(r18, SHAPE), {})
    reps26 = family.replacements(family.decompose(r26, SHAPE), {})
    assert len(reps18) == 53 and len(reps26) == 60
    assert Counter(r.kind for r in reps18) == {"teacher": 8, "basic": 24, "linear": 8, "noop": 5, "merge": 8}
    assert Counter(r.kind for r in reps26) == {"teacher": 8, "bottleneck": 24, "basic": 8, "linear": 8, "noop": 4,
                                               "merge": 8}
    singles18 = Counter(r.start for r in reps18 if r.width == 1)
    assert [singles18[i] for i in range(8)] == [6, 6, 5, 6, 5, 6, 5, 6]
    singles26 = Counter(r.start for r in reps26 if r.width == 1)
    assert [singles26[i] for i in range(8)] == [6, 7, 6, 7, 6, 7, 6, 7]
    assert len({r.id for r in reps26}) == 60 and len({r.label for r in reps26}) == 60


def test_options_narrow_the_grid(r26: nn.Module) -> None:
    family = ResNetFamily()
    dec = family.decompose(r26, SHAPE)
    reps = family.replacements(dec, {"widths": [0.5], "basic": False, "linear": False, "noop": False, "merge": False})
    assert Counter(r.kind for r in reps) == {"teacher": 8, "bottleneck": 8}
    reps = family.replacements(dec, {"widths": [], "merge_widths": [0.25], "basic": False, "linear": False})
    assert Counter(r.kind for r in reps) == {"teacher": 8, "noop": 4, "merge": 4}


def test_noop_absent_on_downsampling_blocks(r18: nn.Module, r26: nn.Module) -> None:
    family = ResNetFamily()
    for model, expected in ((r18, [0, 1, 3, 5, 7]), (r26, [1, 3, 5, 7])):
        dec = family.decompose(model, SHAPE)
        noops = [r.start for r in family.replacements(dec, {}) if r.kind == "noop"]
        assert noops == expected
        assert all(dec.infos[i].extra["stride"] == 1 and dec.infos[i].in_shape == dec.infos[i].out_shape
                   for i in noops)
    with pytest.raises(BadInputError, match="no-op needs stride 1"):
        family.build(family.decompose(r18, SHAPE), Replacement(2, 3, "noop"))


def test_merge_spans_only_within_a_stage(r18: nn.Module, r26: nn.Module) -> None:
    family = ResNetFamily()
    for model in (r18, r26):
        dec = family.decompose(model, SHAPE)
        merges = [r for r in family.replacements(dec, {}) if r.width > 1]
        assert all(r.kind == "merge" and r.width == 2 for r in merges)
        assert sorted({(r.start, r.end) for r in merges}) == [(0, 2), (2, 4), (4, 6), (6, 8)]
        assert all(dec.infos[r.start].stage == dec.infos[r.end - 1].stage for r in merges)
    with pytest.raises(BadInputError, match="one stage"):
        family.build(dec, Replacement(1, 3, "merge", {"width": 1.0}))


@pytest.mark.parametrize("name", ["r18", "r26"])
def test_every_replacement_maps_parent_shapes_and_round_trips(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    family = ResNetFamily()
    dec = family.decompose(model, SHAPE)
    for rep in family.replacements(dec, {}):
        first, last = dec.infos[rep.start], dec.infos[rep.end - 1]
        a, b = family.build(dec, rep).eval(), family.build(dec, rep).eval()
        assert type(a) is type(b) and isinstance(a, nn.Module)
        x = _x(first.in_shape)
        with torch.no_grad():
            for p in a.parameters():  # make a differ from b, then carry a's state over by save/load
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
            out = a(x)
            assert tuple(out.shape[1:]) == last.out_shape, rep.label
            buffer = io.BytesIO()
            torch.save(a.state_dict(), buffer)
            buffer.seek(0)
            b.load_state_dict(torch.load(buffer, weights_only=True))
            assert torch.equal(b(x), out), rep.label
        parent_ptrs = {p.data_ptr() for p in dec.layers[rep.start].parameters()}
        assert not parent_ptrs & {p.data_ptr() for p in a.parameters()}, f"{rep.label} shares the teacher's weights"


@pytest.mark.parametrize("name", ["r18", "r26"])
def test_width_one_reproduces_the_parent(name: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(name)
    family = ResNetFamily()
    dec = family.decompose(model, SHAPE)
    for info, block in zip(dec.infos, dec.layers):
        x = _x(info.in_shape)
        with torch.no_grad():
            parent = block(x)
            assert parent.abs().max() > 0.1  # the residual branch is live (random BN), so the check bites
            pruned = PRUNERS[info.kind](block, 1.0).eval()(x)
            assert torch.allclose(pruned, parent, atol=1e-5, rtol=0), info.name
            half = family.build(dec, Replacement(info.index, info.index + 1, info.kind, {"width": 0.5})).eval()(x)
            assert not torch.allclose(half, parent, atol=1e-3)  # pruning does change the block
        if info.index % 2 == 0:  # merge at width 1.0 starts as the pair's first block
            merged = family.build(dec, Replacement(info.index, info.index + 2, "merge", {"width": 1.0})).eval()
            with torch.no_grad():
                assert torch.allclose(merged(x), parent, atol=1e-5, rtol=0)


def test_pruned_params_by_hand(r18: nn.Module, r26: nn.Module) -> None:
    family = ResNetFamily()
    dec = family.decompose(r26, SHAPE)

    def params(rep: Replacement) -> int:
        return sum(p.numel() for p in family.build(dec, rep).parameters())

    # layer2.0 at width 0.5: mid 128 -> 64. conv1 256*64 = 16384, bn1 2*64 = 128, conv2 64*64*9 = 36864,
    # bn2 128, conv3 64*512 = 32768, bn3 2*512 = 1024, downsample conv 256*512 = 131072 + BN 1024.
    assert params(Replacement(2, 3, "bottleneck", {"width": 0.5})) == 219392
    # layer2.1 at width 0.5 (identity shortcut): 512*64 + 128 + 36864 + 128 + 64*512 + 1024
    assert params(Replacement(3, 4, "bottleneck", {"width": 0.5})) == 103680
    # basic in place of layer2.0: conv 3x3 256->128 = 294912, bn 256, conv 3x3 128->512 = 589824, bn 1024,
    # downsample 131072 + 1024
    assert params(Replacement(2, 3, "basic")) == 1018112
    # linear for layer2.0: 1x1 256->512 = 131072 + BN 1024
    assert params(Replacement(2, 3, "linear")) == 132096
    # resnet18 layer1.0 at width 0.5: mid 64 -> 32. conv1 64*32*9 = 18432, bn1 64, conv2 32*64*9 = 18432, bn2 128
    dec18 = family.decompose(r18, SHAPE)
    assert sum(p.numel() for p in family.build(dec18, Replacement(0, 1, "basic", {"width": 0.5})).parameters()) \
        == 37056


def test_pruning_keeps_the_most_important_channels(r26: nn.Module) -> None:
    block = copy.deepcopy(r26.layer1[1])
    with torch.no_grad():  # channels 0..31 of the reduce BN are silenced: importance |gamma| * ||W|| is 0
        block.bn1.weight[:32] = 0.0
        block.bn1.weight[32:] = 1.0
    pruned = PRUNERS["bottleneck"](block, 0.5)
    assert torch.equal(pruned.conv1.weight, block.conv1.weight[32:])
    assert torch.equal(pruned.bn1.running_mean, block.bn1.running_mean[32:])
    keep2 = resnet_blocks._keep(resnet_blocks.channel_importance(block.bn2, block.conv3), 32)
    assert torch.equal(pruned.conv2.weight, block.conv2.weight[keep2][:, 32:])
    assert torch.equal(pruned.conv3.weight, block.conv3.weight[:, keep2])


def test_linear_and_basic_start_as_the_shortcut(r18: nn.Module, r26: nn.Module) -> None:
    family = ResNetFamily()
    dec18, dec26 = family.decompose(r18, SHAPE), family.decompose(r26, SHAPE)
    with torch.no_grad():
        x = _x(dec18.infos[1].in_shape)  # identity shortcut: linear is an exact identity
        assert torch.equal(family.build(dec18, Replacement(1, 2, "linear")).eval()(x), x)
        x = _x(dec26.infos[2].in_shape)  # downsampling block: linear is its downsample conv + BN
        shortcut = r26.layer2[0].downsample(x)
        assert torch.allclose(family.build(dec26, Replacement(2, 3, "linear")).eval()(x), shortcut, atol=1e-6)
        # basic in place of a bottleneck: zero-init last BN, so relu(shortcut) until BLD trains it
        assert torch.allclose(family.build(dec26, Replacement(2, 3, "basic")).eval()(x), shortcut.relu(), atol=1e-6)


def test_builds_are_deterministic(r26: nn.Module) -> None:
    family = ResNetFamily()
    dec = family.decompose(r26, SHAPE)
    a, b = (family.build(dec, Replacement(2, 3, "basic")).state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_assemble_a_mixed_choice(r26: nn.Module) -> None:
    family = ResNetFamily()
    dec = family.decompose(r26, SHAPE)
    chosen = [Replacement(0, 1, "teacher"), Replacement(1, 2, "bottleneck", {"width": 0.5}),
              Replacement(2, 4, "merge", {"width": 0.5}), Replacement(4, 5, "basic"), Replacement(5, 6, "noop"),
              Replacement(6, 7, "linear"), Replacement(7, 8, "bottleneck", {"width": 0.25})]
    offered = set(family.replacements(dec, {}))
    assert set(chosen) <= offered
    student = assemble(dec, family, chosen).eval()
    with torch.no_grad():
        assert student(_x(SHAPE)).shape == (2, 10)
    assert student.spans == [(0, 1), (1, 2), (2, 4), (4, 5), (5, 6), (6, 7), (7, 8)]
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in r26.parameters())


def test_unknown_blocks_are_kept_with_only_the_teacher(r18: nn.Module) -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(256, 256, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x) + x)

    model = copy.deepcopy(r18)
    model.layer3[1] = Custom()
    family = ResNetFamily()
    dec = family.decompose(model.eval(), SHAPE)
    with torch.no_grad():
        assert torch.equal(dec(_x(SHAPE)), model(_x(SHAPE)))
    info = dec.infos[5]
    assert (info.name, info.kind, info.extra["type"]) == ("layer3.1", "unknown", "Custom")
    reps = family.replacements(dec, {})
    assert [r.label for r in reps if 5 in r.span] == ["teacher@5"]  # no width, linear, noop, nor merge 4-5
    assert len(reps) == 53 - 5 - 2  # resnet18's 53 minus layer3.1's 5 extras and the merge pair's 2
    with pytest.raises(BadInputError, match="layer3.1"):
        family.build(dec, Replacement(5, 6, "linear"))


def test_grouped_bottlenecks_are_unknown() -> None:
    model = ResNet(block=Bottleneck, layers=(1, 1, 1, 1), cardinality=4, base_width=16, num_classes=10).eval()
    dec = ResNetFamily().decompose(model, SHAPE)
    assert [i.kind for i in dec.infos] == ["unknown"] * 4
    assert [r.kind for r in ResNetFamily().replacements(dec, {})] == ["teacher"] * 4


def test_bad_options_and_shapes(r18: nn.Module) -> None:
    family = ResNetFamily()
    dec = family.decompose(r18, SHAPE)
    with pytest.raises(BadInputError, match=r"'widht'.*valid options: widths, basic, linear, noop, merge"):
        family.replacements(dec, {"widht": (0.5,)})
    with pytest.raises(BadInputError, match=r"widths has 1\.5; every width must be a fraction in \(0, 1\]"):
        family.replacements(dec, {"widths": (0.5, 1.5)})
    with pytest.raises(BadInputError, match="noop='yes' must be true or false"):
        family.replacements(dec, {"noop": "yes"})
    with pytest.raises(BadInputError, match=r"does not fit this ResNet.*\(3, H, W\)"):
        family.decompose(r18, (1, 32, 32))
    with pytest.raises(BadInputError, match="channels, height, width"):
        family.decompose(r18, (32, 32))
    with pytest.raises(BadInputError, match="unknown ResNet replacement kind 'attn'"):
        family.build(dec, Replacement(0, 1, "attn"))
