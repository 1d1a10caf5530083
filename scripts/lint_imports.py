"""Check the import-linter contracts of ``pyproject.toml`` against the package as it is installed.

The plugin folders ``search_spaces/`` and ``proxies/`` are installed as ``studentnas.search_spaces`` and
``studentnas.proxies`` (setuptools ``package-dir``), but import-linter reads a package from one folder.
This script copies the ``.py`` files into that installed layout in a temporary folder and runs
``lint-imports`` there, so the contracts about plugins see the plugins. Exit status: lint-imports'.

    python scripts/lint_imports.py          # what `make lint` runs
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = {"studentnas": "studentnas", "search_spaces": "studentnas/search_spaces", "proxies": "studentnas/proxies"}


def stage(into: Path) -> None:
    """Copy every ``.py`` file of the package and the plugin folders into the installed layout under ``into``."""
    for source, target in LAYOUT.items():
        for path in (ROOT / source).rglob("*.py"):
            dest = into / target / path.relative_to(ROOT / source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)


def main() -> int:
    lint = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="studentnas-lint-") as tmp:
        stage(Path(tmp))
        # cwd first on sys.path: the staged copy shadows the editable install
        return subprocess.run([str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
