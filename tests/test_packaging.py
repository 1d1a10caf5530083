"""The package list of pyproject.toml names every package of the tree (a wheel built from it holds them all)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text()  # tomllib is Python 3.11+; the project supports 3.10
    listed = set(ast.literal_eval(re.search(r"^packages = (\[.*?\])", text, re.M | re.S).group(1)))
    mapping = re.search(r"^package-dir = \{(.*?)\}", text, re.M).group(1)
    package_dir = dict(re.findall(r'"([\w.]+)" = "([\w.]+)"', mapping))
    assert package_dir["studentnas"] == "studentnas" and len(package_dir) == 3
    found = set()
    for name, folder in package_dir.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    # a plugin folder mapped into studentnas also sits under the studentnas mapping's own name
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
    assert listed - found == set(), "these listed packages have no folder"
