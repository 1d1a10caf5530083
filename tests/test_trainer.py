"""The distillation trainer (one plain loop, in and out of Ray) and `studentnas teacher train`, on real
Fashion-MNIST images at 16 px with real timm/NB201 networks: determinism, resume, the cosine schedule,
the weighted objective, the teacher cache, and a teacher that loads through --teacher-checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from studentnas import get_space
from studentnas.core.errors import BadInputError
from studentnas.data.images import load_images
from studentnas.data.teachers import load_teacher
from studentnas.distill.batches import Batches, holdout_split
from studentnas.distill.evaluation import evaluate
from studentnas.distill.hparams import HyperParamSpace
from studentnas.distill.teacher_cache import cached_teacher_logits
from studentnas.distill.train_config import TrainConfig, loss_specs
from studentnas.distill.trainer import train

SIZE = (3, 16, 16)
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
KD = ({"name": "kd", "weight": 0.25, "T": 2.0},)


@pytest.fixture(scope="module")
def images():
    return load_images("fashion-mnist", "train", limit=120, seed=0)


def student(seed: int = 0) -> torch.nn.Module:
    space = get_space("nb201")
    arch = space.sample(np.random.default_rng(1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return space.build(arch, num_classes=10)


def teacher() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return timm.create_model("resnet18", num_classes=10).eval()


def batches(data, augment: bool = False, shuffle: bool = True) -> Batches:
    return Batches(data, SIZE, MEAN, STD, 32, shuffle=shuffle, augment=augment, seed=3, drop_last=shuffle)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_weights_and_history(images) -> None:
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=5, augment=True)
    runs = [train(student(), batches(images, augment=True), batches(images, shuffle=False), config)
            for _ in range(2)]
    assert same_weights(runs[0].model, runs[1].model)
    strip = [{k: v for k, v in h.items() if "seconds" not in k and "per_s" not in k} for h in runs[0].history]
    assert strip == [{k: v for k, v in h.items() if "seconds" not in k and "per_s" not in k}
                     for h in runs[1].history]
    assert [h["epoch"] for h in runs[0].history] == [1, 2]
    assert {"train_loss", "train_ce", "train_top1", "val_loss", "val_top1", "val_top5", "lr"} <= set(strip[0])


def test_killed_after_an_epoch_and_resumed_equals_uninterrupted(images, tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, batch_size=32, lr=0.05, seed=1, losses=KD, ce_weight=0.5)
    whole = train(student(), batches(images), None, config, teacher=teacher())

    class Killed(Exception):
        pass

    def die_after_first(stats: dict, folder: Path | None) -> None:
        assert folder == tmp_path and (folder / "trainer.pt").is_file()
        if stats["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train(student(), batches(images), None, config, teacher=teacher(), checkpoint_dir=tmp_path,
              on_epoch=die_after_first)
    resumed = train(student(), batches(images), None, config, teacher=teacher(), checkpoint_dir=tmp_path)
    assert resumed.resumed_from_epoch == 1
    assert same_weights(resumed.model, whole.model), "resuming gives the uninterrupted run's weights"
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    other = TrainConfig(epochs=3, batch_size=32, lr=0.1, seed=1, losses=KD, ce_weight=0.5)
    with pytest.raises(BadInputError, match="written by another training config"):
        train(student(), batches(images), None, other, teacher=teacher(), checkpoint_dir=tmp_path)


def test_cosine_schedule_per_step(images) -> None:
    # 108 training images, batch 32, drop_last: 3 steps per epoch, 9 in all. The lr at the start of
    # epoch e (0-based) is 0.1 * (1 + cos(pi * 3e / 9)) / 2.
    data, _ = holdout_split(images, 0.1, seed=0)
    assert len(data) == 108
    result = train(student(), batches(data), None, TrainConfig(epochs=3, batch_size=32, lr=0.1))
    expected = [0.1 * (1 + math.cos(math.pi * 3 * e / 9)) / 2 for e in range(3)]
    assert [h["lr"] for h in result.history] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx([0.1, 0.075, 0.025])


def test_objective_is_the_weighted_sum_of_its_parts(images) -> None:
    config = TrainConfig(epochs=1, batch_size=32, lr=0.02, ce_weight=0.5, label_smoothing=0.1, losses=KD)
    assert loss_specs(config) == [{"name": "ce", "weight": 0.5, "label_smoothing": 0.1},
                                  {"name": "kd", "weight": 0.25, "T": 2.0}]
    stats = train(student(), batches(images), None, config, teacher=teacher()).last
    # per-batch totals averaged with the batch sizes as weights: linear, so the same weights hold for the means
    assert stats["train_loss"] == pytest.approx(0.5 * stats["train_ce"] + 0.25 * stats["train_kd"], rel=1e-6)
    assert stats["train_kd"] > 0 and stats["teacher_cached"] is False


def test_teacher_stays_frozen_in_eval_mode(images) -> None:
    t = teacher()
    before = {k: v.clone() for k, v in t.state_dict().items()}
    train(student(), batches(images), None, TrainConfig(epochs=1, batch_size=32, losses=KD), teacher=t)
    assert not t.training
    assert all(torch.equal(before[k], v) for k, v in t.state_dict().items()), "BN statistics and weights unchanged"
    assert all(p.grad is None and not p.requires_grad for p in t.parameters())


def test_teacher_logit_cache(images, tmp_path: Path) -> None:
    t = teacher()
    plain = batches(images, shuffle=False)
    logits, hit = cached_teacher_logits(t, plain, tmp_path, data_spec="fashion-mnist")
    assert not hit and logits.shape == (120, 10)
    with torch.no_grad():
        x = torch.cat([x for _, x, _ in plain.epoch(0)])
        assert torch.allclose(logits, t(x), atol=1e-4)
    again, hit = cached_teacher_logits(t, plain, tmp_path, data_spec="fashion-mnist")
    assert hit and torch.equal(again, logits)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    other_size = Batches(images, (3, 20, 20), MEAN, STD, 32)
    _, hit = cached_teacher_logits(t, other_size, tmp_path, data_spec="fashion-mnist")
    assert not hit and len(list(tmp_path.glob("*.safetensors"))) == 2, "the transforms are part of the key"
    _, hit = cached_teacher_logits(teacher().train(), plain, tmp_path, teacher_id="another teacher")
    assert not hit, "the teacher is part of the key"
    with pytest.raises(BadInputError, match="fixed inputs"):
        cached_teacher_logits(t, batches(images, augment=True), tmp_path)

    # training from the cache equals training with the teacher (the logits agree to float rounding)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, losses=KD, ce_weight=0.5)
    with_teacher = train(student(), batches(images), None, config, teacher=teacher())
    cached = train(student(), batches(images), None, config, teacher_logits=logits)
    assert cached.last["teacher_cached"] is True
    assert cached.last["train_kd"] == pytest.approx(with_teacher.last["train_kd"], rel=1e-4)
    for k, v in with_teacher.model.state_dict().items():
        assert torch.allclose(v.float(), cached.model.state_dict()[k].float(), atol=1e-4), k
    with pytest.raises(BadInputError, match="augmented"):
        train(student(), batches(images, augment=True), None, config, teacher_logits=logits)


def test_feature_loss_trains_its_connector(images) -> None:
    runs = []
    for lr in (0.05, 1e-12):  # the connector's init draws from the global RNG: seed it the same for both
        torch.manual_seed(0)
        config = TrainConfig(epochs=1, batch_size=32, lr=lr, losses=({"name": "fitnet", "weight": 1.0},))
        runs.append(train(student(), batches(images), None, config, teacher=teacher()))
    trained, still = (list(r.objective.parameters()) for r in runs)
    assert trained, "fitnet has a learned connector, sized from one example batch"
    assert runs[0].last["train_fitnet"] > 0
    assert any(not torch.allclose(a, b) for a, b in zip(trained, still)), "the connector is optimised"


def test_holdout_split_is_stratified_and_disjoint(images) -> None:
    train_part, val_part = holdout_split(images, 0.25, seed=4)
    assert len(train_part) == 90 and len(val_part) == 30
    assert np.bincount(val_part.labels).tolist() == [3] * 10
    pairs = {(img.tobytes(), int(lab)) for img, lab in zip(images.images, images.labels)}
    assert {(img.tobytes(), int(lab)) for img, lab in zip(val_part.images, val_part.labels)} <= pairs
    assert len(train_part) + len(val_part) == len(images)
    with pytest.raises(BadInputError, match=r"must be in \[0, 1\)"):
        holdout_split(images, 1.0, seed=0)


def test_evaluate_counts_top1_and_top5_by_hand(images) -> None:
    class Fixed(torch.nn.Module):  # class order 0 > 1 > ... > 9 for every image
        def forward(self, x):
            return torch.arange(10.0, 0.0, -1.0).expand(len(x), 10)

    labels = images.labels
    stats = evaluate(Fixed(), batches(images, shuffle=False))
    assert stats["top1"] == pytest.approx(100 * np.mean(labels == 0))
    assert stats["top5"] == pytest.approx(100 * np.mean(labels < 5))


def test_train_config_validation() -> None:
    with pytest.raises(BadInputError, match="lr 0"):
        TrainConfig(lr=0)
    with pytest.raises(BadInputError, match="nothing to train"):
        TrainConfig(ce_weight=0)
    with pytest.raises(BadInputError, match="loss 'kd' has no parameter 'temperature'"):
        train(student(), batches(load_images(None, limit=20)), None,
              TrainConfig(epochs=1, losses=({"name": "kd", "temperature": 3},)), teacher=teacher())


def test_search_space_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "space.yaml"
    bad.write_text("lr: [0.01, 0.1]\nwarmup: 3\n")
    with pytest.raises(BadInputError) as err:
        HyperParamSpace.load(bad)
    assert "unknown key 'warmup'" in str(err.value)
    assert "valid keys: ce_weight, label_smoothing, loss, loss_weights, lr, momentum, temperature, weight_decay" \
        in str(err.value)
    (tmp_path / "s.json").write_text(json.dumps({"loss": ["kd", "dkdd"]}))
    with pytest.raises(BadInputError, match="unknown loss 'dkdd' \\(did you mean 'dkd'\\?\\)"):
        HyperParamSpace.load(tmp_path / "s.json")
    with pytest.raises(BadInputError, match="low > high"):
        HyperParamSpace.parse({"lr": [0.2, 0.01]})
    with pytest.raises(BadInputError, match="does not exist"):
        HyperParamSpace.load(tmp_path / "missing.yaml")
    space = HyperParamSpace.parse({"loss": ["kd", "dkd+at"], "loss_weights": {"at": [100, 1000]}, "temperature": 3})
    assert set(space.distributions("kd")) == {"lr", "weight_decay", "ce_weight", "loss", "weight_at"}
    assert set(space.distributions("ce")) == {"lr", "weight_decay"}
    cfg = space.train_config({"lr": 0.1, "weight_decay": 1e-4, "ce_weight": 0.3, "loss": "dkd+at",
                              "weight_at": 500.0}, "kd", epochs=2, batch_size=16, seed=0)
    assert cfg.losses == ({"name": "dkd", "weight": 1.0, "T": 3.0}, {"name": "at", "weight": 500.0})
    base = space.train_config({"lr": 0.1, "weight_decay": 1e-4}, "ce", epochs=2, batch_size=16, seed=0)
    assert base.losses == () and base.ce_weight == 1.0


# ------------------------------------------------------------------------------------- teacher train


def test_teacher_train_cli_writes_a_teacher_that_loads_everywhere(cli, tmp_path: Path) -> None:
    out = tmp_path / "teacher.safetensors"
    done = cli("teacher", "train", "--model", "resnet18", "--data", "fashion-mnist", "--epochs", "1",
               "--image-size", "16", "--train-images", "300", "--test-images", "200", "--batch-size", "32",
               "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "test top-1" in done.stdout and f"--teacher-checkpoint {out}" in done.stdout
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["num_classes"] == 10 and meta["classes"][0] == "T-shirt/top" and meta["image_size"] == [16, 16]
    assert meta["train_images"] == 270 and meta["val_images"] == 30 and meta["test_images"] == 200
    assert meta["epochs"] == 1 and len(meta["history"]) == 1 and meta["data"] == "fashion-mnist"
    assert not out.with_name(out.name + ".ckpt").exists(), "the training checkpoint is removed when done"
    t = load_teacher("resnet18", out)
    assert t.num_classes == 10 and t.trained
    test = load_images("fashion-mnist", "test", limit=200, seed=0)
    again = evaluate(t.model, Batches(test, (3, 16, 16), t.mean, t.std, 32))
    assert again["top1"] == pytest.approx(meta["test_top1"]) and again["top5"] == pytest.approx(meta["test_top5"])
    assert 10.0 < meta["test_top1"] <= 100.0


@pytest.mark.parametrize(("args", "needle"), [
    (["--model", "resnt18", "--out", "t.safetensors"], "unknown teacher 'resnt18'"),
    (["--model", "resnet18", "--out", "t.pth"], "--out must end in .safetensors"),
    (["--model", "resnet18", "--out", "t.safetensors", "--epochs", "0"], "epochs 0"),
])
def test_teacher_train_bad_input(cli, tmp_path: Path, args: list[str], needle: str) -> None:
    done = cli("teacher", "train", "--data", "fashion-mnist", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir()), "nothing written"


def test_train_teacher_checks_its_output_before_any_work(tmp_path: Path) -> None:
    from studentnas.distill.teacher_train import train_teacher

    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the output's folder should be: nothing can be created under it
    with pytest.raises(BadInputError, match=r"--out '.*file/t.safetensors' cannot be created"):
        train_teacher("resnet18", "fashion-mnist", epochs=1, out=blocker / "t.safetensors", quiet=True)


def test_teacher_checkpoint_is_recorded_as_an_absolute_path(tmp_path: Path, monkeypatch) -> None:
    # run.json and Puzzle's hand-off record it, and Ray trials (distill, global KD) run in another folder:
    # a relative path given on the command line failed there with "checkpoint does not exist"
    net = timm.create_model("resnet18", num_classes=10)
    torch.save(net.state_dict(), tmp_path / "t.pth")
    monkeypatch.chdir(tmp_path)
    teacher = load_teacher("resnet18", "t.pth")
    assert teacher.checkpoint == str(tmp_path.resolve() / "t.pth")

