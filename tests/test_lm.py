"""The byte-level GPT, the fortunes / text corpora, LM training, checkpoints and the `studentnas lm` CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from studentnas.cli.main import main
from studentnas.core.errors import BadInputError
from studentnas.lm import GPT, CausalSelfAttention, GPTConfig, create_lm, is_lm, load_lm
from studentnas.lm.corpus import FORTUNES_DIR, eval_windows, load_corpus, split_bytes, windows
from studentnas.lm.train import LMTrainConfig, evaluate_lm, lr_at, train_lm

SCIENCE = FORTUNES_DIR / "science"  # one real fortunes file (130 kB), for quick runs


@pytest.fixture
def small_text(tmp_path: Path) -> Path:
    """A real 130 kB text corpus: Debian's fortunes 'science' file as text:PATH."""
    path = tmp_path / "science.txt"
    path.write_bytes(SCIENCE.read_bytes())
    return path


# ----------------------------------------------------------------------------------------------- model


def test_shapes_and_presets() -> None:
    torch.manual_seed(0)
    model = create_lm("gpt_tiny")
    tokens = torch.randint(0, 256, (2, 16))
    assert model(tokens).shape == (2, 16, 256)
    assert model.forward_features(tokens).shape == (2, 16, 128)
    assert model.num_classes == 256 and model.config == GPTConfig()
    # hand count: embeddings 256*128 + 128*128; per block 2 LNs (2*256) + q,k,v,proj (4*(128*128+128))
    # + fc1 (128*512+512) + fc2 (512*128+128); final LN 256; head 256*128
    block = 2 * 256 + 4 * (128 * 128 + 128) + (128 * 512 + 512) + (512 * 128 + 128)
    assert sum(p.numel() for p in model.parameters()) == 256 * 128 + 128 * 128 + 4 * block + 256 + 256 * 128
    small = create_lm("gpt_small").config
    assert (small.dim, small.layers, small.heads, small.kv_heads, small.ffn_dim, small.context) == (
        256, 6, 8, 8, 1024, 256)
    assert is_lm("gpt_tiny") and not is_lm("resnet18")
    with pytest.raises(BadInputError, match="context of 128"):
        model(torch.zeros(1, 129, dtype=torch.long))


@pytest.mark.parametrize(("kwargs", "needle"), [({"dim": 130}, "divisible by heads"),
                                                ({"kv_heads": 3}, "multiple of kv_heads"),
                                                ({"layers": 0}, "positive integer")])
def test_config_validation(kwargs: dict, needle: str) -> None:
    with pytest.raises(BadInputError, match=needle):
        create_lm("gpt_tiny", **kwargs)
    with pytest.raises(BadInputError, match="Did you mean 'gpt_tiny'"):
        create_lm("gpt_tny")


def test_causal_masking() -> None:
    torch.manual_seed(0)
    model = create_lm("gpt_tiny", kv_heads=2).eval()
    tokens = torch.randint(0, 256, (3, 40))
    changed = tokens.clone()
    changed[:, 25] = (changed[:, 25] + 7) % 256
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    assert torch.equal(before[:, :25], after[:, :25])  # the past cannot see a future token
    assert (before[:, 25:] - after[:, 25:]).abs().amax(-1).min() > 1e-4  # every later position does


def test_gqa_equals_mha_with_repeated_kv_heads() -> None:
    torch.manual_seed(0)
    dim, heads, kv_heads, head_dim = 32, 4, 2, 8
    gqa = CausalSelfAttention(dim, heads, kv_heads, head_dim)
    mha = CausalSelfAttention(dim, heads, heads, head_dim)
    with torch.no_grad():
        for name in ("q", "proj"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
        for name in ("k", "v"):  # K/V head j of the GQA layer serves query heads 2j and 2j+1
            src = getattr(gqa, name)
            weight = src.weight.view(kv_heads, head_dim, dim).repeat_interleave(heads // kv_heads, 0)
            getattr(mha, name).weight.copy_(weight.reshape(heads * head_dim, dim))
            getattr(mha, name).bias.copy_(src.bias.view(kv_heads, head_dim).repeat_interleave(2, 0).reshape(-1))
    x = torch.randn(2, 10, dim)
    torch.testing.assert_close(gqa(x), mha(x), rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in gqa.k.parameters()) == kv_heads * head_dim * (dim + 1)


# ----------------------------------------------------------------------------------------------- corpus


def test_fortunes_corpus_split_is_deterministic_and_complete() -> None:
    first, second = load_corpus("fortunes"), load_corpus("fortunes")
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(first, split), getattr(second, split))
    plain = sorted(p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.is_symlink() and p.suffix != ".dat")
    assert first.files == [str(p) for p in plain]
    assert first.total_bytes == sum(p.stat().st_size for p in plain) > 2_000_000
    assert 0.89 < len(first.train) / first.total_bytes < 0.91
    assert 0.04 < len(first.val) / first.total_bytes < 0.06 and 0.04 < len(first.test) / first.total_bytes < 0.06
    # every file's slices end at a fortune boundary: the splits start and end with whole quotations
    text = bytes(first.val.tolist())
    assert text.endswith(b"\n%\n") and not text.startswith(b"%")
    assert "BSD" in first.licence


def test_split_bytes_cuts_after_records_and_text_folder_order(tmp_path: Path) -> None:
    data = b"".join(b"%d\n" % i for i in range(10, 30))  # 20 records of 3 bytes: 90 % = 54 bytes = 18 records
    assert split_bytes(data, (b"\n",)) == (data[:54], b"28\n", b"29\n")
    (tmp_path / "b.txt").write_text("b\n" * 40)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("a\n" * 40)
    (tmp_path / "ignored.md").write_text("x" * 1000)
    corpus = load_corpus(f"text:{tmp_path}")
    assert [Path(f).name for f in corpus.files] == ["b.txt", "a.txt"]  # sorted paths: b.txt < sub/a.txt
    assert bytes(corpus.train.tolist()) == b"b\n" * 36 + b"a\n" * 36
    assert bytes(corpus.val.tolist()) == b"b\n" * 2 + b"a\n" * 2


def test_fortunes_dir_skips_indexes_and_symlinks(tmp_path: Path) -> None:
    (tmp_path / "quotes").write_bytes(b"one\n%\ntwo\n%\n" * 10)
    (tmp_path / "quotes.dat").write_bytes(b"\x00\x01binary index")
    (tmp_path / "quotes.u8").symlink_to(tmp_path / "quotes")
    corpus = load_corpus(f"fortunes:{tmp_path}")
    assert corpus.files == [str(tmp_path / "quotes")] and corpus.total_bytes == 120


@pytest.mark.parametrize(("spec", "needle"), [("fortunes:/nonexistent/fortunes", "apt-get install fortunes"),
                                              ("text:/nonexistent.txt", "does not exist"),
                                              ("fortune", "Did you mean 'fortunes'")])
def test_missing_corpus(spec: str, needle: str) -> None:
    with pytest.raises(BadInputError, match=needle):
        load_corpus(spec)


def test_windows_are_shifted_slices() -> None:
    tokens = torch.arange(1000) % 251
    x, y = windows(tokens, 16, 8, torch.Generator().manual_seed(3))
    x2, _ = windows(tokens, 16, 8, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2) and x.dtype == torch.long and x.shape == (8, 16)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:, -1], tokens[(x[:, 0] + 16)])
    ex, ey = eval_windows(tokens, 100, None)  # (1000 - 1) // 100 = 9 non-overlapping windows
    assert ex.shape == (9, 100) and torch.equal(ex.flatten(), tokens[:900]) and torch.equal(ey.flatten(),
                                                                                            tokens[1:901])
    with pytest.raises(BadInputError, match="too few"):
        windows(tokens[:10], 16, 1, torch.Generator())


# ----------------------------------------------------------------------------------------------- training


def test_lr_schedule_and_config_checks() -> None:
    cfg = LMTrainConfig(steps=100, lr=1.0, warmup=10)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1)  # cosine down to min_lr_ratio * lr at the last step
    with pytest.raises(BadInputError, match="--steps 0"):
        LMTrainConfig(steps=0)


def test_thirty_steps_on_fortunes_lower_the_loss(tmp_path: Path) -> None:
    corpus = load_corpus("fortunes")
    torch.manual_seed(0)
    untrained = evaluate_lm(GPT(GPTConfig()), corpus.val, max_windows=32)
    assert abs(untrained["loss"] - math.log(256)) < 0.1  # a random init predicts bytes almost uniformly
    out = tmp_path / "lm.safetensors"
    meta = train_lm(out, data="fortunes", steps=30, batch_size=16, lr=3e-3, eval_every=10, eval_windows=16,
                    final_eval_windows=32, quiet=True, corpus=corpus)
    assert meta["val"]["loss"] < untrained["loss"] - 1.5, meta["val"]  # 5.55 -> about 3.3 nats/byte
    assert meta["val"]["perplexity"] == pytest.approx(math.exp(meta["val"]["loss"]))
    assert meta["val"]["top1"] > 10  # at least the most frequent byte (space)
    assert [h["step"] for h in meta["history"]] == [10, 20, 30]
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["corpus"]["bytes"]["total"] == corpus.total_bytes and sidecar["config"]["dim"] == 128
    assert not out.with_name(out.name + ".ckpt").exists()
    # save/load round trip: the same logits from the file as from the sidecar's evaluation
    loaded = load_lm("gpt_tiny", out)
    assert evaluate_lm(loaded, corpus.val, max_windows=32)["loss"] == pytest.approx(meta["val"]["loss"], abs=1e-6)


def test_training_is_deterministic_per_seed(small_text: Path, tmp_path: Path) -> None:
    common = dict(data=f"text:{small_text}", steps=3, batch_size=4, context=32, quiet=True, final_eval_windows=4)
    a = train_lm(tmp_path / "a.safetensors", seed=1, **common)
    b = train_lm(tmp_path / "b.safetensors", seed=1, **common)
    c = train_lm(tmp_path / "c.safetensors", seed=2, **common)
    assert a["val"] == b["val"] and a["val"] != c["val"]
    wa, wb = (load_lm("gpt_tiny", tmp_path / f"{n}.safetensors").state_dict() for n in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert load_lm("gpt_tiny", tmp_path / "a.safetensors").config.context == 32  # the stored config is used
    with pytest.raises(BadInputError, match="trained as 'gpt_tiny', not 'gpt_small'; pass --model gpt_tiny"):
        load_lm("gpt_small", tmp_path / "a.safetensors")


@pytest.fixture
def one_thread():
    """Torch on one thread (as the CLI subprocesses run), so in-process and CLI runs use the same kernels."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_resume_after_sigkill_matches_uninterrupted_run(small_text: Path, tmp_path: Path, one_thread, capsys) -> None:
    settings = dict(data=f"text:{small_text}", steps=40, batch_size=4, context=32, checkpoint_every=10, eval_every=0)
    train_lm(tmp_path / "full.safetensors", quiet=True, **settings)
    out = tmp_path / "cut.safetensors"
    args = ["lm", "train", "--data", settings["data"], "--steps", "40", "--batch-size", "4", "--context", "32",
            "--checkpoint-every", "10", "--eval-every", "0", "--quiet", "--out", str(out)]
    ckpt = tmp_path / "cut.safetensors.ckpt" / "lm.pt"
    proc = subprocess.Popen([sys.executable, "-m", "studentnas.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # at step 10 or a little later, never mid-write (atomic rename)
    proc.wait()
    assert ckpt.exists() and not out.exists(), "the run finished before it could be killed"
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # never overwrites an unfinished run
    meta = train_lm(out, quiet=True, resume=True, **settings)
    assert meta["resumed_from_step"] in (10, 20, 30)
    w_full, w_cut = (load_lm("gpt_tiny", tmp_path / f"{n}.safetensors").state_dict() for n in ("full", "cut"))
    assert all(torch.equal(w_full[k], w_cut[k]) for k in w_full)
    assert not ckpt.parent.exists()


def test_checkpoint_formats_and_bad_checkpoints(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_lm("gpt_tiny").eval()
    torch.save(model.state_dict(), tmp_path / "lm.pth")
    tokens = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        assert torch.equal(load_lm("gpt_tiny", tmp_path / "lm.pth")(tokens), model(tokens))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BadInputError, match="bad.safetensors.*corrupt"):
        load_lm("gpt_tiny", tmp_path / "bad.safetensors")
    with pytest.raises(BadInputError, match="does not fit 'gpt_small'.*--model it was trained as"):
        load_lm("gpt_small", tmp_path / "lm.pth")


# ----------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(("args", "needles"), [
    (["lm", "train", "--model", "gpt_tny", "--out", "x.safetensors"], ["unknown language model", "'gpt_tiny'"]),
    (["lm", "train", "--steps", "0", "--out", "x.safetensors"], ["--steps 0"]),
    (["lm", "train", "--data", "fortunes:/nonexistent", "--out", "x.safetensors"], ["apt-get install fortunes"]),
    (["lm", "train", "--out", "x.pth"], [".safetensors"]),
    (["lm", "eval", "--checkpoint", "BAD"], ["corrupt"]),
    (["lm", "eval", "--checkpoint", "missing.safetensors"], ["does not exist"]),
])
def test_cli_bad_input(args: list[str], needles: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    args = [str(bad) if a == "BAD" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert not list(tmp_path.glob("x*"))


def test_cli_help_and_eval(small_text: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["lm", "train", "--help"])
    assert "examples:" in capsys.readouterr().out
    torch.manual_seed(0)
    model = create_lm("gpt_tiny", context=32)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    assert main(["lm", "eval", "--checkpoint", str(tmp_path / "m.pth"), "--data", f"text:{small_text}",
                 "--max-windows", "4", "--json"]) == 2  # a .pth carries no config: context 32 != gpt_tiny's 128
    assert "pos_emb" in capsys.readouterr().err
    out = tmp_path / "t.safetensors"
    train_lm(out, data=f"text:{small_text}", steps=2, batch_size=2, context=32, quiet=True)
    assert main(["lm", "eval", "--checkpoint", str(out), "--data", f"text:{small_text}", "--max-windows", "4",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["val"]["tokens"] == 4 * 32 and result["test"]["loss"] > 0
