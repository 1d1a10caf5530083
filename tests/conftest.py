# ruff: noqa: I001  (the environment and the torchvision shim must come before other imports)
"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE=1 is set for the whole session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

import studentnas._compat  # noqa: E402,F401  (before any test module imports torchvision or timm)
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"


#: Arguments whose runs start Ray: they always get their own process.
ISOLATED = ("distill", "--workers", "--ray-address")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600,
            isolated: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``studentnas`` CLI and return its exit status, stdout and stderr.

    A fresh ``python -m studentnas.cli`` process (no stdin) when ``isolated``, with ``cwd`` or ``env``, or
    when the run starts Ray (:data:`ISOLATED`); otherwise ``studentnas.cli.main.main`` in this process with
    stdout/stderr captured, which is the same code path minus ~5 s of interpreter and torch start-up.
    (``tests/test_puzzle_pipeline.py`` and the SIGKILL tests cover the real-process path.)
    """
    if isolated or cwd is not None or env is not None or any(a in ISOLATED for a in args):
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        return subprocess.run([sys.executable, "-m", "studentnas.cli", *args], cwd=cwd, env=full_env, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    import contextlib
    import io

    import torch

    from studentnas.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help exits 0, a usage error exits 2
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    torch.set_num_threads(threads)  # a command's --threads must not leak into the next test
    return subprocess.CompletedProcess(["studentnas", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        raise FileNotFoundError(f"reference data not found at {REFERENCE}; clone the project with ../shared beside it")
    return REFERENCE
