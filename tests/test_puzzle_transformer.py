# ruff: noqa: I001  (studentnas, and its torchvision shim, before timm)
"""Puzzle transformer families (vit, gpt): exact decomposition, the replacement grid, pruning and assembly."""

from __future__ import annotations


import studentnas  # noqa: F401  (the torchvision shim, before timm)
import pytest
import timm
import torch
from torch import nn

from studentnas.core.errors import BadInputError
from studentnas.lm import create_lm
from studentnas.puzzle.decompose import FAMILIES, assemble, family_for
from studentnas.puzzle.families import gpt, vit
from studentnas.puzzle.families.transformer_modules import GroupedAttention, LinearResidual, Residual
from studentnas.puzzle.families.transformer_pruning import AttnWeights, top_units
from studentnas.puzzle.library import Replacement

T = 24  # tokens per GPT example


def _vit(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    args = {"img_size": 32, "patch_size": 4, "num_classes": 10, **kwargs}
    return timm.create_model("vit_tiny_patch16_224", **args).eval()


def _gpt(**overrides) -> nn.Module:
    torch.manual_seed(0)
    return create_lm("gpt_tiny", **overrides).eval()


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def vit_dec():
    model = _vit()
    return model, vit.VitFamily().decompose(model, (3, 32, 32))


@pytest.fixture(scope="module")
def gpt_dec():
    model = _gpt()
    return model, gpt.GptFamily().decompose(model, (T,))


# ------------------------------------------------------------------------------------------ decomposition
def test_families_registered_and_matched(vit_dec, gpt_dec) -> None:
    assert {"vit", "gpt"} <= set(FAMILIES.list())
    assert family_for(vit_dec[0]).name == "vit"
    assert family_for(gpt_dec[0]).name == "gpt"
    assert not gpt.GptFamily().matches(vit_dec[0]) and not vit.VitFamily().matches(gpt_dec[0])


def test_vit_decomposition_is_the_teacher(vit_dec) -> None:
    model, dec = vit_dec
    assert len(dec.layers) == 24 and [i.kind for i in dec.infos[:2]] == ["attn", "ffn"]
    # 32/4 = 8 -> 64 patches + 1 class token, width 192; vit_tiny: 3 heads of 64, MLP 4 x 192 = 768
    assert dec.infos[5].in_shape == dec.infos[5].out_shape == (65, 192)
    assert dict(dec.infos[5].extra) == {"heads": 3, "kv_heads": 3, "head_dim": 64, "dim": 192, "ffn_dim": 768,
                                        "block": 2}
    assert dec.layers[0].body is model.blocks[0].attn  # the teacher's own modules, no copy
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dec(x), model(x))


def test_vit_variants_decompose_exactly() -> None:
    """Register tokens, no class-embedding position, average pooling, LayerScale, qk_norm, no qkv bias."""
    model = _vit(depth=2, reg_tokens=2, no_embed_class=True, global_pool="avg", init_values=0.1, qk_norm=True,
                 qkv_bias=False)
    dec = vit.VitFamily().decompose(model, (3, 32, 32))
    assert dec.infos[0].in_shape == (67, 192)  # 64 patches + class + 2 register tokens
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dec(x), model(x))
        for cfg in ({"heads": 2}, {"kv_heads": 1}):  # pruned modules keep the parent's LayerScale and qk_norm
            out = vit.VitFamily().build(dec, Replacement(0, 1, "attn", cfg))(torch.randn(2, 67, 192))
            assert out.shape == (2, 67, 192) and torch.isfinite(out).all()


def test_gpt_decomposition_is_the_teacher(gpt_dec) -> None:
    model, dec = gpt_dec
    assert [i.name for i in dec.infos[:2]] == ["blocks.0.attn", "blocks.0.mlp"] and len(dec.layers) == 8
    assert dict(dec.infos[0].extra) == {"heads": 4, "kv_heads": 4, "head_dim": 32, "dim": 128, "ffn_dim": 512,
                                        "block": 0}
    assert dec.example_input(2).dtype == torch.long and dec.infos[0].in_shape == (T, 128)
    tokens = torch.randint(0, 256, (2, T))
    with torch.no_grad():
        assert torch.equal(dec(tokens), model(tokens))


def test_unparsed_block_is_one_unknown_layer() -> None:
    model = _vit(depth=3)
    model.blocks[1] = timm.models.vision_transformer.ResPostBlock(192, 3, qkv_bias=True).eval()
    family = vit.VitFamily()
    dec = family.decompose(model, (3, 32, 32))
    assert [i.kind for i in dec.infos] == ["attn", "ffn", "unknown", "attn", "ffn"]
    assert dec.infos[2].name == "blocks.1" and dec.layers[2] is model.blocks[1]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dec(x), model(x))
    reps = family.replacements(dec, {})
    assert [r.kind for r in reps if r.start == 2] == ["teacher"]
    # merges only inside parsed blocks: (0, 1) and (3, 4), never across the unknown layer
    assert sorted({(r.start, r.end) for r in reps if r.width == 2}) == [(0, 2), (3, 5)]
    with pytest.raises(BadInputError, match="unknown layer takes"):
        family.build(dec, Replacement(2, 3, "noop"))


def test_bad_teacher_and_input_shape(gpt_dec) -> None:
    with pytest.raises(BadInputError, match="context"):
        gpt.GptFamily().decompose(gpt_dec[0], (129,))
    with pytest.raises(BadInputError, match="vit family"):
        vit.VitFamily().decompose(gpt_dec[0], (T,))


# ------------------------------------------------------------------------------------------ the grid
def test_replacement_counts(vit_dec, gpt_dec) -> None:
    """Counts derived by hand from the defaults head_fractions (0.5, 0.25), kv_heads (2, 1), ffn (0.75, 0.5, 0.25).

    vit_tiny, 3 heads (MHA): heads round_half_up(1.5) = 2 and round_half_up(0.75) = 1; kv 2 does not divide 3,
    kv 1 does -> attn: teacher, heads 2, heads 1, kv 1, linear, noop = 6. FFN 768 -> 576, 384, 192 ->
    teacher + 3 + linear + noop = 6. Merge: block_linear, block_noop = 2. 12 blocks x 14 = 168 (144 unmerged).
    gpt_tiny, 4 heads (MHA): heads 2, 1; kv 2, 1 -> 7; FFN 6; merge 2 -> 4 blocks x 15 = 60.
    gpt_tiny with 2 K/V heads: heads 2 (1 group of 2), heads 1; kv 1 only (2 is not < 2) -> 6 -> 4 x 14 = 56.
    """
    vit_family, gpt_family = vit.VitFamily(), gpt.GptFamily()
    reps = vit_family.replacements(vit_dec[1], {})
    assert len(reps) == 168 and len(vit_family.replacements(vit_dec[1], {"merge": False})) == 144
    assert [r.label for r in reps if r.start == 0 and r.width == 1] == [
        "teacher@0", "attn(heads=2)@0", "attn(heads=1)@0", "attn(kv_heads=1)@0", "linear@0", "noop@0"]
    assert [r.label for r in reps if r.start == 1 and r.width == 1] == [
        "teacher@1", "ffn(fraction=0.75)@1", "ffn(fraction=0.5)@1", "ffn(fraction=0.25)@1", "linear@1", "noop@1"]
    assert [r.label for r in reps if r.width == 2][:2] == ["block_linear@0-1", "block_noop@0-1"]
    assert len({r.id for r in reps}) == len(reps)

    assert len(gpt_family.replacements(gpt_dec[1], {})) == 60
    gqa = gpt_family.decompose(_gpt(kv_heads=2), (T,))
    reps = gpt_family.replacements(gqa, {})
    assert len(reps) == 56
    assert [r.label for r in reps if r.start == 0 and r.width == 1] == [
        "teacher@0", "attn(heads=2)@0", "attn(heads=1)@0", "attn(kv_heads=1)@0", "linear@0", "noop@0"]
    # full width and duplicates drop out: 1.0 -> 4 heads (the teacher), 0.3 and 0.25 both -> 1 head
    custom = gpt_family.replacements(gpt_dec[1], {"head_fractions": [1.0, 0.3, 0.25], "kv_heads": [4, 3, 1],
                                                  "ffn_fractions": [1.0, 0.5], "merge": False})
    assert [r.label for r in custom if r.start == 0] == ["teacher@0", "attn(heads=1)@0", "attn(kv_heads=1)@0",
                                                         "linear@0", "noop@0"]
    assert [r.label for r in custom if r.start == 1] == ["teacher@1", "ffn(fraction=0.5)@1", "linear@1", "noop@1"]


def test_bad_options_and_configs(gpt_dec) -> None:
    family, dec = gpt.GptFamily(), gpt_dec[1]
    with pytest.raises(BadInputError, match="valid keys: ffn_fractions, head_fractions, kv_heads, merge"):
        family.replacements(dec, {"widths": [0.5]})
    with pytest.raises(BadInputError, match=r"ffn_fractions must be fractions in \(0, 1\]"):
        family.replacements(dec, {"ffn_fractions": [1.5]})
    with pytest.raises(BadInputError, match="kv_heads must be positive integers"):
        family.replacements(dec, {"kv_heads": [0]})
    with pytest.raises(BadInputError, match="exactly one of 'heads'"):
        family.build(dec, Replacement(0, 1, "attn", {"heads": 2, "kv_heads": 2}))
    with pytest.raises(BadInputError, match="attn layer takes"):
        family.build(dec, Replacement(0, 1, "ffn", {"fraction": 0.5}))
    with pytest.raises(BadInputError, match="one block"):
        family.build(dec, Replacement(1, 3, "block_noop"))
    with pytest.raises(BadInputError, match="cannot be split evenly"):  # 3 heads over 2 groups of 2
        gpt.GptFamily().build(gpt.GptFamily().decompose(_gpt(kv_heads=2), (T,)), Replacement(0, 1, "attn",
                                                                                             {"heads": 3}))


# ------------------------------------------------------------------------------------------ pruning
def _set_head_scales(attn_q: torch.Tensor, proj: torch.Tensor, scales: list[float], head_dim: int) -> None:
    """Query rows of head h = scales[h], its proj columns = 1: importance_h = scales[h] * (hd * D)."""
    with torch.no_grad():
        for h, s in enumerate(scales):
            attn_q[h * head_dim:(h + 1) * head_dim] = s
            proj[:, h * head_dim:(h + 1) * head_dim] = 1.0


def test_head_pruning_keeps_the_expected_heads_mha() -> None:
    model = _gpt(layers=1)
    attn = model.blocks[0].attn
    _set_head_scales(attn.q.weight, attn.proj.weight, [1.0, 4.0, 2.0, 3.0], 32)
    family = gpt.GptFamily()
    dec = family.decompose(model, (T,))
    pruned = family.build(dec, Replacement(0, 1, "attn", {"heads": 2}))
    rows = torch.cat([torch.arange(32, 64), torch.arange(96, 128)])  # heads 1 and 3, in order
    assert (pruned.body.heads, pruned.body.kv_heads) == (2, 2)
    for name in ("q", "k", "v"):
        assert torch.equal(pruned.body.get_submodule(name).weight, getattr(attn, name).weight[rows])
    assert torch.equal(pruned.body.proj.weight, attn.proj.weight[:, rows])
    # heads are independent in MHA: the pruned layer is the parent with heads 0 and 2 silenced in proj
    silenced = gpt.GptFamily().build(dec, Replacement(0, 1, "teacher"))
    with torch.no_grad():
        silenced.body.proj.weight[:, :32] = 0
        silenced.body.proj.weight[:, 64:96] = 0
        x = torch.randn(2, T, 128)
        assert torch.allclose(pruned(x), silenced(x), atol=1e-5)
    one = family.build(dec, Replacement(0, 1, "attn", {"heads": 1}))
    assert torch.equal(one.body.q.weight, attn.q.weight[32:64])


def test_head_pruning_keeps_whole_groups_gqa() -> None:
    model = _gpt(layers=1, kv_heads=2)  # groups: heads {0, 1} share K/V head 0, heads {2, 3} K/V head 1
    attn = model.blocks[0].attn
    _set_head_scales(attn.q.weight, attn.proj.weight, [1.0, 4.0, 2.0, 5.0], 32)  # group sums 5 and 7
    family = gpt.GptFamily()
    dec = family.decompose(model, (T,))
    two = family.build(dec, Replacement(0, 1, "attn", {"heads": 2})).body
    assert (two.heads, two.kv_heads) == (2, 1)
    assert torch.equal(two.q.weight, attn.q.weight[64:128]) and torch.equal(two.k.weight, attn.k.weight[32:64])
    one = family.build(dec, Replacement(0, 1, "attn", {"heads": 1})).body
    assert torch.equal(one.q.weight, attn.q.weight[96:128]) and torch.equal(one.v.weight, attn.v.weight[32:64])


def test_vit_head_pruning_slices_the_fused_qkv() -> None:
    model = _vit(depth=1)
    attn = model.blocks[0].attn
    qkv = attn.qkv.weight
    _set_head_scales(qkv[:192], attn.proj.weight, [2.0, 1.0, 3.0], 64)
    family = vit.VitFamily()
    body = family.build(family.decompose(model, (3, 32, 32)), Replacement(0, 1, "attn", {"heads": 2})).body
    keep = torch.cat([torch.arange(0, 64), torch.arange(128, 192)])  # heads 0 and 2
    assert type(body) is type(attn) and body.num_heads == 2 and body.qkv.weight.shape == (384, 192)
    assert torch.equal(body.qkv.weight, torch.cat([qkv[keep], qkv[192 + keep], qkv[384 + keep]]))
    assert torch.equal(body.qkv.bias, torch.cat([attn.qkv.bias[keep], attn.qkv.bias[192 + keep],
                                                 attn.qkv.bias[384 + keep]]))


def test_ffn_pruning_keeps_the_largest_units() -> None:
    model = _gpt(layers=1)
    mlp = model.blocks[0].mlp
    with torch.no_grad():  # units 7 and 300 get a 10x larger fc1 row: importance 10x the rest
        mlp.fc1.weight.normal_(0, 0.02)
        mlp.fc2.weight.copy_(torch.ones_like(mlp.fc2.weight) * 0.01)
        mlp.fc1.weight[[7, 300]] *= 10
    family = gpt.GptFamily()
    dec = family.decompose(model, (T,))
    tiny = family.build(dec, Replacement(1, 2, "ffn", {"fraction": 2 / 512})).body
    assert tiny.fc1.out_features == 2 and torch.equal(tiny.fc1.weight, mlp.fc1.weight[[7, 300]])
    half = family.build(dec, Replacement(1, 2, "ffn", {"fraction": 0.5}))
    kept = top_units(family.ffn_weights(mlp).unit_importance(), 256)
    silenced = family.build(dec, Replacement(1, 2, "teacher"))
    with torch.no_grad():
        dropped = sorted(set(range(512)) - set(kept))
        silenced.body.fc2.weight[:, dropped] = 0
        x = torch.randn(2, T, 128)
        assert torch.allclose(half(x), silenced(x), atol=1e-6)


def test_full_width_variants_reproduce_the_parent(vit_dec, gpt_dec) -> None:
    cases = [(vit.VitFamily(), vit_dec[1], torch.randn(2, 65, 192), {"heads": 3}, {"kv_heads": 3}),
             (gpt.GptFamily(), gpt_dec[1], torch.randn(2, T, 128), {"heads": 4}, {"kv_heads": 4})]
    gqa = gpt.GptFamily().decompose(_gpt(kv_heads=2), (T,))
    cases.append((gpt.GptFamily(), gqa, torch.randn(2, T, 128), {"heads": 4}, {"kv_heads": 2}))
    with torch.no_grad():
        for family, dec, x, heads, kv in cases:
            for layer, kind, cfg in ((0, "attn", heads), (0, "attn", kv), (1, "ffn", {"fraction": 1.0}),
                                     (2, "teacher", {}), (3, "teacher", {})):
                out = family.build(dec, Replacement(layer, layer + 1, kind, cfg))(x)
                assert (out - dec.layers[layer](x)).abs().max() < 1e-5, (family.name, kind, cfg)


def test_grouped_attention_reproduces_timm_attention(vit_dec) -> None:
    attn = vit_dec[1].layers[0].body
    grouped = GroupedAttention.from_weights(vit.VitFamily().attn_weights(attn))
    x = torch.randn(2, 65, 192)
    with torch.no_grad():
        assert (grouped(x) - attn(x)).abs().max() < 1e-5


def test_average_kv_by_hand() -> None:
    def weights(heads: int, kv: int) -> AttnWeights:  # head_dim 1, dim 1: K head j has weight j + 1, V 10(j + 1)
        k = torch.arange(1.0, kv + 1).reshape(kv, 1)
        return AttnWeights(heads, kv, 1, torch.ones(heads, 1), k, 10 * k, torch.ones(1, heads), bk=k.flatten())

    assert weights(4, 4).average_kv(2).wk.flatten().tolist() == [1.5, 3.5]  # (1+2)/2, (3+4)/2
    assert weights(4, 4).average_kv(1).wv.flatten().tolist() == [25.0]  # 10 (1+2+3+4)/4
    assert weights(4, 2).average_kv(1).wk.flatten().tolist() == [1.5]  # query heads use K 1, 1, 2, 2
    # 6 query heads over 3 K/V heads (pairs), to 2: heads 0-2 used K 1, 1, 2 -> 4/3; heads 3-5: 2, 3, 3 -> 8/3
    avg = weights(6, 3).average_kv(2)
    assert torch.allclose(avg.wk.flatten(), torch.tensor([4 / 3, 8 / 3])) and torch.equal(avg.bk, avg.wk.flatten())


def test_fewer_kv_heads_params_by_hand(vit_dec, gpt_dec) -> None:
    """gpt_tiny, dim 128, 4 heads of 32, 1 K/V head: q 128*128+128 = 16512, k = v = 128*32+32 = 4128,
    proj 16512, norm 2*128 -> 41536 (parent: 4 x 16512 + 256 = 66304). Two heads (and 2 K/V heads): q, k, v
    128*64+64 = 8256 each, proj 64*128+128 = 8320, norm 256 -> 33344.
    vit_tiny, dim 192, 3 heads of 64, 1 K/V head: q 192*192+192 = 37056, k = v = 192*64+64 = 12352,
    proj 37056, norm 384 -> 99200 (parent 4 x 37056 + 384 = 148608)."""
    g = gpt.GptFamily()
    assert _params(gpt_dec[1].layers[0]) == 66304
    assert _params(g.build(gpt_dec[1], Replacement(0, 1, "attn", {"kv_heads": 1}))) == 41536
    assert _params(g.build(gpt_dec[1], Replacement(0, 1, "attn", {"heads": 2}))) == 33344
    v = vit.VitFamily()
    assert _params(vit_dec[1].layers[0]) == 148608
    mqa = v.build(vit_dec[1], Replacement(0, 1, "attn", {"kv_heads": 1}))
    assert isinstance(mqa.body, GroupedAttention) and _params(mqa) == 99200
    # linear: 192*192+192 + norm 384; ffn 0.5 of 768: 192*384+384 + 384*192+192 + norm 384
    assert _params(v.build(vit_dec[1], Replacement(1, 2, "linear"))) == 37056 + 384
    assert _params(v.build(vit_dec[1], Replacement(1, 2, "ffn", {"fraction": 0.5}))) == 74112 + 73920 + 384


def test_linear_starts_as_noop_and_fits(gpt_dec) -> None:
    family, dec = gpt.GptFamily(), gpt_dec[1]
    x = torch.randn(4, T, 128)
    with torch.no_grad():
        for rep in (Replacement(1, 2, "linear"), Replacement(0, 2, "block_linear")):
            module = family.build(dec, rep)
            assert isinstance(module, LinearResidual) and torch.equal(module(x), x)
        target = dec.layers[1](x)
        module = family.build(dec, Replacement(1, 2, "linear"))
        zero = float((x - target).pow(2).sum() / target.pow(2).sum())
        assert module.fit_(x, target) < zero  # least squares beats the no-op start


def test_every_gpt_replacement_is_causal() -> None:
    family = gpt.GptFamily()
    for kv in (4, 2):
        dec = family.decompose(_gpt(layers=2, kv_heads=kv), (T,))
        torch.manual_seed(1)
        x = torch.randn(2, T, 128)
        future = x.clone()
        future[:, 10:] = torch.randn(2, T - 10, 128)
        for rep in family.replacements(dec, {}):
            module = family.build(dec, rep)
            with torch.no_grad():
                for p in module.parameters():  # zero-initialised linears too: test real weights
                    p.add_(0.05 * torch.randn_like(p))
                a, b = module(x), module(future)
            assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6), rep.label
            if not isinstance(module, nn.Identity):
                assert not torch.allclose(a[:, 10:], b[:, 10:]), rep.label


# ------------------------------------------------------------------------------------------ assembly
def test_assemble_mixed_choice_vit(vit_dec) -> None:
    model, dec = vit_dec
    family = vit.VitFamily()
    chosen = [Replacement(0, 1, "attn", {"heads": 1}), Replacement(1, 2, "ffn", {"fraction": 0.5}),
              Replacement(2, 4, "block_noop"), Replacement(4, 6, "block_linear"),
              Replacement(6, 7, "attn", {"kv_heads": 1}), Replacement(7, 8, "linear"),
              Replacement(8, 9, "noop"), Replacement(9, 10, "ffn", {"fraction": 0.25})]
    chosen += [Replacement(i, i + 1, "teacher") for i in range(10, 24)]
    student = assemble(dec, family, chosen)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = student(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        assert not torch.allclose(out, model(x))
        teacher_copy = assemble(dec, family, [Replacement(i, i + 1, "teacher") for i in range(24)])
        assert torch.equal(teacher_copy(x), model(x))
    assert _params(student) < _params(model)
    assert isinstance(student.blocks[0], Residual) and len(student.blocks) == 8 + 14


def test_assemble_mixed_choice_gpt(gpt_dec) -> None:
    model, dec = gpt_dec
    family = gpt.GptFamily()
    chosen = [Replacement(0, 1, "attn", {"kv_heads": 1}), Replacement(1, 2, "ffn", {"fraction": 0.25}),
              Replacement(2, 4, "block_linear"), Replacement(4, 5, "attn", {"heads": 2}), Replacement(5, 6, "noop"),
              Replacement(6, 8, "block_noop")]
    student = assemble(dec, family, chosen)
    tokens = torch.randint(0, 256, (2, T))
    with torch.no_grad():
        out = student(tokens)
        assert out.shape == (2, T, 256) and torch.isfinite(out).all()
        changed = tokens.clone()
        changed[:, -1] = (changed[:, -1] + 1) % 256
        assert torch.allclose(student(changed)[:, :-1], out[:, :-1], atol=1e-6)
    with pytest.raises(BadInputError, match="layer 6 is missing"):
        assemble(dec, family, chosen[:-1] + [Replacement(7, 8, "noop")])
