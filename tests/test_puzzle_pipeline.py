"""`studentnas puzzle` end to end on real timm ResNets / the project's GPT and real data (Fashion-MNIST, fortunes).

The runs are small (a few hundred samples, short BLD budgets) so the file stays fast; the quality
targets are checked by scripts/bench_puzzle.py, not here.
"""

# ruff: noqa: I001  (studentnas before timm: it installs the torchvision shim)
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_ray
import torch

import studentnas  # noqa: F401
from studentnas.cli.main import main
from studentnas.core.errors import BadInputError
from studentnas.puzzle.activations import ActivationStore
from studentnas.puzzle.bld import BLDConfig, BLDJob, heldout_loss, nmse, train_replacement
from studentnas.puzzle.decompose import family_for
from studentnas.puzzle.library import Library, Replacement
from studentnas.puzzle.realise import load_puzzle_student, realise, recalibrate_bn
from studentnas.puzzle.samples import TeacherSpec

cluster = test_ray.cluster  # the two-node loopback Ray fixture of the search tests
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
SMALL = ["--image-size", "32", "--data", "fashion-mnist", "--bld-samples", "96", "--score-samples", "48",
         "--test-samples", "64", "--bld-budget", "64", "--random-baselines", "2", "--threads", "1",
         "--library-options", '{"widths": [0.5], "merge_widths": [1.0]}', "--quiet"]


def _resnet_args(out: Path) -> list[str]:
    """The fixture's `studentnas puzzle` call: its teacher checkpoint lies beside ``out``."""
    return ["puzzle", "--teacher", "resnet18", "--teacher-checkpoint", str(out.parent / "t18.safetensors"),
            "--budget", "50%macs", "--out", str(out), *SMALL]


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 trained for one epoch on 256 Fashion-MNIST images (a real checkpoint, so the global KD
    runs: `studentnas distill` refuses a random teacher), compressed to 50 % of its MACs."""
    if not FMNIST.is_file():
        pytest.fail("Debian's dataset-fashion-mnist is required (make data installs it)")
    out = tmp_path_factory.mktemp("puzzle") / "r18"
    assert main(["teacher", "train", "--model", "resnet18", "--data", "fashion-mnist", "--epochs", "1",
                 "--image-size", "32", "--train-images", "256", "--test-images", "64", "--threads", "1", "--quiet",
                 "--out", str(out.parent / "t18.safetensors")]) == 0
    assert main(_resnet_args(out)) == 0
    return out


def _least_summed_kl(lib: Library, limits: dict[str, float]) -> tuple[float, float]:
    """(least summed block KL over every cover of the parent layers by scored entries within ``limits``,
    counting the library's fixed costs; the largest block KL), by enumeration: independent of the MIP."""
    usable = [e for e in lib.entries if e.ok and "kl" in e.quality and all(k in e.costs for k in limits)]
    room = {k: v - lib.fixed_costs.get(k, 0.0) for k, v in limits.items()}
    best = math.inf

    def walk(layer: int, kl: float, spent: dict[str, float]) -> None:
        nonlocal best
        if any(spent[k] > room[k] * (1 + 1e-9) for k in room):
            return
        if layer == lib.num_layers:
            best = min(best, kl)
            return
        for e in usable:
            if e.replacement.start == layer:
                walk(e.replacement.end, kl + e.quality["kl"], {k: spent[k] + e.costs[k] for k in room})

    walk(0, 0.0, dict.fromkeys(room, 0.0))
    return best, max(abs(e.quality["kl"]) for e in usable)


def test_run_directory_holds_every_stage(resnet_run: Path) -> None:
    root = resnet_run / "puzzle"
    lib = Library.from_dict(json.loads((root / "library.json").read_text()))
    # resnet18 with widths {0.5} and merge widths {1.0}: 8 blocks x (teacher, width 0.5, linear) = 24,
    # + 5 no-ops (layer1.0 and the second block of each stage keep their shape) + 4 same-stage merges = 33.
    assert len(lib.entries) == 33
    assert all(e.ok and "kl" in e.quality for e in lib.entries)
    for entry in lib.teacher_entries():  # the teacher's own block, re-run from cached float32 activations
        assert entry.quality["kl"] < 1e-6
    solution = json.loads((root / "solutions" / "50pctmacs.json").read_text())
    assert solution["measured"]["macs"] <= solution["limits"]["macs"]
    # The MIP optimum is the least summed block KL of any cover within the table limits of its last solve,
    # recomputed here by enumerating the covers. The block KLs of this one-epoch teacher are 1e-8 .. 4e-2
    # (its non-downsampling blocks are nearly their shortcut), so a fixed 1e-9 is no tolerance: HiGHS is
    # exact to mip_rel_gap (1e-4) relative or 1e-6 of the largest block KL absolute (mip_model.solve).
    limits = solution["mip_optimum"]["limits"]
    assert solution["greedy"]["limits"] == limits and all(r["limits"] == limits for r in solution["random"])
    best, largest = _least_summed_kl(lib, limits)
    tolerance = 1e-4 * best + 1e-6 * largest
    assert best * (1 - 1e-12) <= solution["mip_optimum"]["objective"] <= best + tolerance
    assert solution["mip_optimum"]["objective"] <= solution["greedy"]["objective"] + tolerance
    assert all(solution["mip_optimum"]["objective"] <= r["objective"] + tolerance for r in solution["random"])
    # the re-scored pick is the best measured of the diverse MIP solutions on the score set
    measured = [c["score_set"]["kl"] for c in solution["mip_candidates"] if c["fits"]]
    assert len(solution["mip_candidates"]) >= 2 and solution["mip"]["labels"] in [
        c["labels"] for c in solution["mip_candidates"] if c["fits"] and c["score_set"]["kl"] == min(measured)]
    assert {"teacher", "mip", "mip_after_gkd", "greedy", "random"} <= set(solution["evaluation"])
    assert (root / "pareto.png").stat().st_size > 10_000
    points = json.loads((root / "pareto_points.json").read_text())["points"]
    # MIP, MIP + global KD, greedy and the 2 random selections of the one budget
    assert sorted(p["kind"] for p in points) == ["Puzzle MIP", "Puzzle MIP + global KD", "greedy", "random", "random"]
    summary = json.loads((root / "puzzle.json").read_text())
    assert summary["solutions"]["50pctmacs"]["measured"]["macs"] <= 0.5 * summary["teacher_costs"]["macs"] + 1


def test_exported_student_reloads_with_the_same_outputs(resnet_run: Path) -> None:
    path = resnet_run / "puzzle" / "students" / "50pctmacs.safetensors"
    meta = json.loads(path.with_suffix(".json").read_text())
    student = load_puzzle_student(path)
    again = load_puzzle_student(path)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(student(x), again(x))
    assert meta["kind"] == "puzzle-student" and len(meta["replacements"]) >= 1
    assert sum(r["end"] - r["start"] for r in meta["replacements"]) == 8  # covers every parent layer once


def test_global_kd_is_one_trial_of_studentnas_distill_on_the_mip_student(resnet_run: Path) -> None:
    from studentnas.runfiles.models import load_model

    root = resnet_run / "puzzle"
    evaluation = json.loads((root / "solutions" / "50pctmacs.json").read_text())["evaluation"]
    gkd = evaluation["gkd"]
    assert gkd["engine"] == "studentnas distill" and gkd["run"] == str(root / "gkd" / "50pctmacs")
    results = json.loads((root / "gkd" / "50pctmacs" / "distill" / "results.json").read_text())
    (entry,) = results["students"]
    assert results["status"] == "done" and results["trials"] == 1 and entry["id"] == gkd["student"]
    recipe = entry["kd"]["train_config"]  # nothing is tuned: the fixed recipe, Hinton KD at T = 1 + 0.5 CE
    assert entry["kd"]["best_config"] == {} and recipe["losses"] == [{"name": "kd", "weight": 1.0, "T": 1.0}]
    assert (recipe["lr"], recipe["weight_decay"], recipe["momentum"], recipe["ce_weight"]) == (0.01, 5e-4, 0.9, 0.5)
    # the exported Puzzle student is the distilled one, and its after-GKD quality was measured on it
    distilled = load_model(entry["kd"]["file"])
    exported = load_puzzle_student(root / "students" / "50pctmacs.safetensors")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(distilled(x), exported(x), atol=1e-5)
    assert evaluation["mip_after_gkd"]["kl"] != evaluation["mip"]["kl"]


def test_every_selection_is_a_run_directory_that_distill_reads(resnet_run: Path) -> None:
    from studentnas.distill.prepare import choose_students
    from studentnas.core.space import space_from_config
    from studentnas.puzzle.realise import realise
    from studentnas.engine.rundir import Run

    root = resnet_run / "puzzle"
    solution = json.loads((root / "solutions" / "50pctmacs.json").read_text())
    run = Run(root / "candidates" / "50pctmacs")
    roles = run.config["roles"]
    assert sorted(r for rs in roles.values() for r in rs) == ["greedy", "mip", "random1", "random2"]
    mip = run.candidate(next(i for i, rs in roles.items() if "mip" in rs))
    assert mip.scores["puzzle_neg_kl"] == -solution["evaluation"]["mip"]["kl"]
    assert mip.cost.macs == pytest.approx(solution["measured"]["macs"], rel=1e-6)  # tables = the counted student
    assert choose_students(run, 1, None) == run.pareto[:1] and run.pareto
    # the space builds the MIP student with its BLD weights, as the pipeline realised it
    space = space_from_config(run.config["space"])
    lib = Library.from_dict(json.loads((root / "library.json").read_text()))
    teacher = TeacherSpec.from_dict(json.loads((root / "config.json").read_text())["identity"]["teacher"])
    dec = family_for(teacher.load()).decompose(teacher.load(), teacher.input_shape)
    realised = realise(dec, family_for(teacher.load()), [lib.by_id()[c["id"]].replacement
                                                         for c in solution["mip"]["chosen"]], root)
    built = space.build(mip.arch, num_classes=10, in_chans=3).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(built(x), realised(x), atol=1e-5)


def test_distill_points_a_puzzle_folder_at_its_run_directories(resnet_run: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    code = main(["distill", str(resnet_run / "puzzle"), "--top", "1", "--data", "fashion-mnist"])
    err = capsys.readouterr().err
    assert code == 2 and str(resnet_run / "puzzle" / "candidates" / "50pctmacs") in err


def test_random_teacher_gets_no_global_kd_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    narrow = '{"widths": [0.5], "merge": false, "linear": false, "noop": false}'  # 8 teacher + 8 pruned entries
    args = [a if a != SMALL[SMALL.index("--library-options") + 1] else narrow for a in SMALL]
    assert main(["puzzle", "--teacher", "resnet18", "--budget", "80%macs", "--out", str(tmp_path / "r"), *args]) == 0
    out = capsys.readouterr().out
    assert "MIP + global KD    skipped: the teacher is randomly initialised" in out
    row = json.loads((tmp_path / "r" / "puzzle" / "puzzle.json").read_text())["solutions"]["80pctmacs"]
    assert row["evaluation"]["mip_after_gkd"] is None and "--teacher-checkpoint" in row["evaluation"]["gkd_skipped"]
    assert not (tmp_path / "r" / "puzzle" / "gkd" / "80pctmacs" / "distill").exists()


def test_rerun_trains_nothing_and_mip_only_resolves(resnet_run: Path) -> None:
    bld = sorted((resnet_run / "puzzle" / "bld").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in bld}
    assert main(_resnet_args(resnet_run)) == 0
    assert {p: p.stat().st_mtime_ns for p in bld} == stamps
    assert main(["puzzle", "--out", str(resnet_run), "--mip-only", "--budget", "30%macs", "--quiet"]) == 0
    solution = json.loads((resnet_run / "puzzle" / "solutions" / "30pctmacs.json").read_text())
    assert solution["measured"]["macs"] <= solution["limits"]["macs"]
    assert "evaluation" not in solution  # --mip-only neither trains nor realises
    assert solution["solve_and_recheck_seconds"] < 5
    assert main(["puzzle", "--out", str(resnet_run), "--mip-only", "--budget", "40%macs", "--random-baselines", "0",
                 "--quiet"]) == 0  # no random baseline asked: none drawn (it used to fail 'no feasible cover')
    assert json.loads((resnet_run / "puzzle" / "solutions" / "40pctmacs.json").read_text())["random"] == []


def test_infeasible_budget_names_the_constraint_and_its_minimum(resnet_run: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    code = main(["puzzle", "--out", str(resnet_run), "--mip-only", "--budget", "1%macs", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "macs" in err and "at least" in err and len(err.strip().splitlines()) == 1


def _teacher_checkpoint(tmp_path: Path, images: torch.Tensor) -> Path:
    """A resnet18 checkpoint whose residual branches are live: timm zero-initialises each block's last BN
    gamma, which makes every block of a random teacher its shortcut and every replacement exact. Gammas
    are drawn in [0.5, 1.5] and the running statistics estimated on real images, as training would."""
    from safetensors.torch import save_file

    model = TeacherSpec("resnet18", None, "image", (3, 32, 32), num_classes=10).load()
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=gen)
    recalibrate_bn(model, images)
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _toy_store(tmp_path: Path) -> tuple[TeacherSpec, object, object]:
    from studentnas.data.images import load_images, to_tensor

    base = TeacherSpec("resnet18", None, "image", (3, 32, 32), num_classes=10)
    images = to_tensor(load_images("fashion-mnist", "train", limit=160).images, base.input_shape, base.mean, base.std)
    spec = TeacherSpec("resnet18", str(_teacher_checkpoint(tmp_path, images)), "image", (3, 32, 32), num_classes=10)
    teacher = spec.load()
    family = family_for(teacher)
    dec = family.decompose(teacher, spec.input_shape)
    ActivationStore(tmp_path, "bld").record(dec, images[:128], {"t": 1}, quiet=True)
    ActivationStore(tmp_path, "score").record(dec, images[128:], {"t": 1}, dtype="float32", quiet=True)
    return spec, dec, family


def test_bld_lowers_the_held_out_loss_of_a_pruned_block(tmp_path: Path) -> None:
    spec, dec, family = _toy_store(tmp_path)
    rep = Replacement(2, 3, "basic", {"width": 0.5})  # layer2.0: the downsampling block of stage 2
    before = heldout_loss(family.build(dec, rep), dec, rep, ActivationStore(tmp_path, "score"))
    job = BLDJob(str(tmp_path), spec.to_dict(), "resnet", rep.to_dict(),
                 {**BLDConfig(budget=1024, batch_size=32, lr=3e-3).__dict__})
    meta = train_replacement(job)
    assert meta["status"] == "ok" and meta["steps"] == 32 and meta["samples_seen"] == 1024
    assert meta["nmse"] < 0.8 * before, (before, meta["nmse"])
    again = train_replacement(job)  # finished: read back, not retrained
    assert again["seconds"] == meta["seconds"]


def test_all_teacher_choice_reproduces_the_teacher(tmp_path: Path) -> None:
    spec, dec, family = _toy_store(tmp_path)
    chosen = [Replacement(i, i + 1, "teacher") for i in range(len(dec.layers))]
    student = realise(dec, family, chosen, tmp_path)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(student(x), dec(x), atol=1e-5)
    for p in student.parameters():  # the student owns its prefix/suffix: training it never moves the teacher
        assert all(p is not q for q in dec.prefix.parameters())
    with pytest.raises(BadInputError, match="covered twice|missing"):
        realise(dec, family, chosen[:3] + chosen[2:], tmp_path)


def test_nmse_is_normalised_per_sample() -> None:
    target = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    out = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    # sample 1: 16 / 25; sample 2: 1 / 1 -> mean 0.82 (eps 1e-6 in the denominators)
    assert math.isclose(float(nmse(out, target)), (16 / (25 + 1e-6) + 1 / (1 + 1e-6)) / 2, rel_tol=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--teacher", "resnet1O1", "--budget", "50%macs"], "unknown"),
    (["--teacher", "resnet18", "--budget", "5 bananas"], "unknown unit"),
    (["--teacher", "resnet18", "--budget", "50%macs", "--bld-samples", "70000"], "training images"),
    (["--teacher", "resnet18", "--budget", "50%macs", "--library-options", '{"wdiths": [0.5]}'], "wdiths"),
    (["--teacher", "resnet18", "--budget", "50%macs", "--random-baselines", "-1"], "must be >= 0"),
])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, argv: list[str], message: str,
                                         capsys: pytest.CaptureFixture) -> None:
    code = main(["puzzle", "--out", str(tmp_path / "r"), "--data", "fashion-mnist", "--image-size", "32", "--quiet",
                 *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r" / "puzzle" / "library.json").exists()


def test_bad_input_from_the_shell_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "studentnas.cli", "puzzle", "--out", str(tmp_path / "r"),
                           "--mip-only", "--budget", "50%macs"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "library.json" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_corrupt_teacher_checkpoint_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "t.safetensors"
    bad.write_bytes(b"not a safetensors file")
    code = main(["puzzle", "--teacher", "resnet18", "--teacher-checkpoint", str(bad), "--budget", "50%macs",
                 "--out", str(tmp_path / "r"), *SMALL])
    assert code == 2 and "t.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "r" / "puzzle" / "library.json").exists()


def test_language_model_end_to_end(tmp_path: Path) -> None:
    if not Path("/usr/share/games/fortunes").is_dir():
        pytest.fail("Debian's fortunes package is required (make data installs it)")
    out = tmp_path / "lm"
    code = main(["puzzle", "--teacher", "gpt_tiny", "--data", "fortunes", "--budget", "60%params", "--out", str(out),
                 "--bld-samples", "24", "--score-samples", "8", "--test-samples", "8", "--bld-budget", "16",
                 "--gkd-steps", "2", "--random-baselines", "1", "--threads", "1", "--quiet",
                 "--library-options", '{"head_fractions": [0.5], "kv_heads": [1], "ffn_fractions": [0.5]}'])
    assert code == 0
    solution = json.loads((out / "puzzle" / "solutions" / "60pctparams.json").read_text())
    assert solution["measured"]["params"] <= solution["limits"]["params"]
    assert 0 <= solution["evaluation"]["mip"]["acc"] <= 100 and solution["evaluation"]["teacher"]["kl"] < 1e-6


@pytest.mark.slow
def test_bld_runs_as_ray_tasks_on_a_two_node_loopback_cluster(cli, cluster, tmp_path: Path) -> None:
    from studentnas.engine.parallel import worker_node

    address, env = cluster
    out = tmp_path / "cluster"
    narrow = '{"widths": [0.5], "merge": false, "linear": false, "noop": false}'  # 8 teacher + 8 pruned entries
    done = cli("puzzle", "--teacher", "resnet18", "--budget", "80%macs", "--out", str(out), "--ray-address", address,
               *[a if a != SMALL[SMALL.index("--library-options") + 1] else narrow for a in SMALL], env=env)
    assert done.returncode == 0, done.stderr
    records = [json.loads(p.read_text()) for p in (out / "puzzle" / "bld").glob("*.json")]
    assert len(records) == 16 and all(r["status"] == "ok" for r in records)
    nodes = {worker_node(r["worker"]) for r in records}
    assert len(nodes) == 2 and "" not in nodes, f"BLD ran on both nodes: {sorted(r['worker'] for r in records)}"
