"""Outputs that cannot be written, and bad input found late, through the real CLI: exit 2 with one line
naming the problem and the fix, before any work, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from test_cli_bad_input import TINY, assert_one_line_error

from studentnas.core.budget import Budget
from studentnas.core.errors import BadInputError
from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
from studentnas.puzzle.options import check_feasible
from studentnas.runfiles.paths import check_writable_dir, check_writable_file

#: A path no one can create (the kernel's /proc refuses new files, even for root).
PROC = "/proc/studentnas-out"
PUZZLE_SMALL = ["--image-size", "32", "--data", "fashion-mnist", "--bld-samples", "96", "--score-samples", "48",
                "--test-samples", "64", "--bld-budget", "64", "--random-baselines", "2", "--threads", "1", "--quiet"]
COMMANDS = ["search", "export", "teacher train", "lm train", "bench proxies", "bench search", "puzzle"]


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


@pytest.fixture(scope="module")
def search_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny search, for `export`."""
    out = tmp_path_factory.mktemp("bad-outputs") / "run"
    proc = run_cli("search", *TINY, "--budget", "30MMACs", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def _commands(out: str, run: Path, reference: Path) -> dict[str, list[str]]:
    """Each command that writes a file or a folder, with ``out`` as that output and otherwise valid input
    (before the checks, each ran until its first write and then failed with exit 1)."""
    nats = str(reference / "nb201" / "nats_bench.csv")
    return {
        "search": ["search", *TINY, "--budget", "30MMACs", "--out", out],
        "export": ["export", str(run), "--rank", "1", "--out", f"{out}/s.safetensors"],
        "teacher train": ["teacher", "train", "--model", "resnet18", "--data", "fashion-mnist", "--epochs", "1",
                          "--image-size", "32", "--train-images", "20", "--test-images", "10", "--quiet",
                          "--out", f"{out}/t.safetensors"],
        "lm train": ["lm", "train", "--steps", "2", "--eval-windows", "2", "--quiet", "--out", f"{out}/lm.safetensors"],
        "bench proxies": ["bench", "proxies", "--ground-truth", nats, "--samples", "2", "--batch-size", "8",
                          "--proxies", "nwot", "--quiet", "--json", f"{out}/b.json"],
        "bench search": ["bench", "search", "--ground-truth", nats, "--evals", "2", "--seeds", "1", "--batch-size", "8",
                         "--quiet", "--json", f"{out}/s.json"],
        "puzzle": ["puzzle", "--teacher", "resnet18", "--budget", "50%macs", *PUZZLE_SMALL, "--out", out],
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_output_in_an_unwritable_place_is_bad_input(cli, search_run: Path, reference_dir: Path, command: str) -> None:
    proc = cli(*_commands(PROC, search_run, reference_dir)[command])
    flag = "--json" if command.startswith("bench") else "--out"
    assert_one_line_error(proc, f"{flag} '{PROC}", "cannot be written", "creating a file in '/proc' fails",
                          f"e.g. {flag} ")


@pytest.mark.parametrize("command", COMMANDS)
def test_output_under_an_existing_file_is_bad_input(cli, tmp_path: Path, search_run: Path, reference_dir: Path,
                                                    command: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = cli(*_commands(str(blocker), search_run, reference_dir)[command])
    line = assert_one_line_error(proc, f"'{blocker}", "a file, not a directory", "e.g. ")
    assert "FileNotFoundError" not in line and "NotADirectoryError" not in line
    assert _files(tmp_path) == [blocker] and blocker.read_text() == "not a folder"


def test_lm_train_checks_its_output_before_training(cli) -> None:
    proc = cli("lm", "train", "--steps", "1000", "--out", f"{PROC}/lm.safetensors")  # not --quiet: no progress
    assert_one_line_error(proc, "cannot be written", "e.g. --out lm.safetensors")
    assert "lm train:" not in proc.stderr


def test_writable_checks_create_nothing(tmp_path: Path) -> None:
    assert check_writable_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert check_writable_file(tmp_path / "c" / "d.json", "--json") == tmp_path / "c" / "d.json"
    (tmp_path / "old.json").write_text("{}")
    assert check_writable_file(tmp_path / "old.json", "--json") == tmp_path / "old.json"  # replaced later
    assert check_writable_dir(tmp_path, "--out") == tmp_path
    assert _files(tmp_path) == [tmp_path / "old.json"]


# -------------------------------------------------------------------------------------------------- puzzle

def test_puzzle_infeasible_budget_is_refused_before_any_training(cli, tmp_path: Path) -> None:
    out = tmp_path / "p"
    proc = cli("puzzle", "--teacher", "resnet18", "--budget", "1%macs", "--out", str(out), *PUZZLE_SMALL)
    line = assert_one_line_error(proc, "budget '1%macs' cannot be met", "the cheapest student", "MMACs",
                                 "raise it to at least ", "%macs", "nothing was written")
    least = float(line.rsplit("at least ", 1)[1].removesuffix("%macs"))
    assert 1 < least < 50, line
    assert not out.exists(), _files(out)


def test_puzzle_absolute_budget_below_the_cheapest_student_names_it(cli, tmp_path: Path) -> None:
    out = tmp_path / "p"
    proc = cli("puzzle", "--teacher", "resnet18", "--budget", "60%params", "--budget", "1MMACs", "--out", str(out),
               *PUZZLE_SMALL)
    line = assert_one_line_error(proc, "budget '1MMACs' cannot be met", "raise it to at least ", "MMACs")
    assert 1 < float(line.rsplit("at least ", 1)[1].removesuffix("MMACs")) < 37, line
    assert not out.exists(), _files(out)


def test_budget_met_by_each_limit_alone_but_not_together() -> None:
    lib = Library("toy", [LayerInfo(0, "b0", "basic", (4,), (4,))],
                  [Entry(Replacement(0, 1, kind), {"macs": macs, "params": params})
                   for kind, macs, params in [("teacher", 8e6, 8e6), ("linear", 2e6, 8e6), ("basic", 8e6, 2e6)]])
    check_feasible(lib, Budget.parse(["4MMACs"]))
    check_feasible(lib, Budget.parse(["4Mparams"]))
    with pytest.raises(BadInputError, match=r"budget '4MMACs' \+ '4Mparams' cannot be met .* not all together"):
        check_feasible(lib, Budget.parse(["4MMACs", "4Mparams"]))


def test_puzzle_bad_library_options_write_nothing(cli, tmp_path: Path) -> None:
    out = tmp_path / "p"
    proc = cli("puzzle", "--teacher", "resnet18", "--budget", "50%macs", "--out", str(out), *PUZZLE_SMALL,
               "--library-options", '{"bogus": 1}')
    assert_one_line_error(proc, "unknown ResNet library option(s) 'bogus'", "valid options: widths")
    assert not out.exists(), "a refused run must not leave a config.json that blocks the corrected rerun"


def test_puzzle_fresh_with_bad_options_keeps_the_old_run(cli, tmp_path: Path) -> None:
    old = tmp_path / "p" / "puzzle"
    old.mkdir(parents=True)
    (old / "config.json").write_text('{"identity": {"seed": 0}}')
    proc = cli("puzzle", "--teacher", "resnet18", "--budget", "50%macs", "--out", str(tmp_path / "p"),
               *PUZZLE_SMALL, "--library-options", '{"bogus": 1}', "--fresh")
    assert_one_line_error(proc, "'bogus'")
    assert (old / "config.json").read_text() == '{"identity": {"seed": 0}}'


# ------------------------------------------------------------------------------------------------ messages

def test_cifar_hint_names_the_folder_once(cli, tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"\x80\x04 only one batch")
    for given in (folder, tmp_path):
        proc = cli("search", *TINY, "--budget", "30MMACs", "--data", f"cifar10:{given}", "--out", str(tmp_path / "r"))
        line = assert_one_line_error(proc, "data_batch_2", f"expected {tmp_path}/cifar-10-batches-py/{{data_batch_1")
        assert "cifar-10-batches-py/cifar-10-batches-py" not in line
    assert not (tmp_path / "r").exists()


def test_checkpoint_that_is_a_directory_says_so(cli, tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "teacher.safetensors").write_bytes(b"")
    proc = cli("search", *TINY, "--budget", "30MMACs", "--teacher-checkpoint", f"{folder}/", "--out",
               str(tmp_path / "r"))
    line = assert_one_line_error(proc, f"checkpoint '{folder}' is a directory", "pass the .pth or .safetensors file",
                                 str(folder / "teacher.safetensors"))
    assert "does not exist" not in line
    assert not (tmp_path / "r").exists()
