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


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``studentnas`` CLI in a subprocess (no stdin), returning the completed process."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "studentnas.cli", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        raise FileNotFoundError(f"reference data not found at {REFERENCE}; clone the project with ../shared beside it")
    return REFERENCE
