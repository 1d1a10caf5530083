"""Every ``>>>`` example of the package runs: one test per module of ``studentnas`` that carries examples.

The plugin folders are imported under their installed names (``studentnas.search_spaces.resnet``, never
``search_spaces.resnet``, or their plugins would register twice). An example too slow for the suite says why
beside its ``# doctest: +SKIP``; :func:`test_every_skipped_example_says_why` holds that rule.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

import studentnas
import studentnas.proxies
import studentnas.search_spaces

ROOT = Path(__file__).resolve().parents[1]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
EXAMPLE = re.compile(r"^\s*>>>(?!\s*#)", re.MULTILINE)  # a ">>> # ..." line is a comment, not an example
SKIP = re.compile(r"#\s*doctest:[^\n]*\+SKIP")
REASON = re.compile(r"#\s*\S[^\n]*#\s*doctest:[^\n]*\+SKIP")  # "...  # why  # doctest: +SKIP"


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while collecting the package's examples")


def _source(name: str) -> str:
    return Path(importlib.util.find_spec(name).origin).read_text()


def _modules() -> list[str]:
    """Every module of the installed package (``__main__`` excluded: importing it runs the CLI)."""
    names = {"studentnas"}
    for package in (studentnas, studentnas.search_spaces, studentnas.proxies):
        names |= {info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".", _raise)}
    return sorted(name for name in names if not name.endswith(".__main__"))


MODULES = _modules()
WITH_EXAMPLES = [name for name in MODULES if EXAMPLE.search(_source(name))]


def test_the_walk_sees_plugins_and_subpackages() -> None:
    assert {"studentnas.search_spaces.resnet", "studentnas.proxies.zero_cost", "studentnas.core.budget",
            "studentnas.puzzle.families.resnet", "studentnas.distill.losses.logits"} <= set(WITH_EXAMPLES)
    assert not [name for name in MODULES if name.startswith(("search_spaces", "proxies"))]
    assert len(WITH_EXAMPLES) >= 100


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_examples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples name files as the README does, relative to the repository root
    module = importlib.import_module(name)
    tests = sorted(doctest.DocTestFinder().find(module, name), key=lambda test: test.name)
    # an example the finder cannot see (a nested function's docstring, a plain string) would never run
    assert sum(len(test.examples) for test in tests) == len(EXAMPLE.findall(_source(name))), \
        f"{name}: some '>>>' lines are not in docstrings that doctest finds"
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.summarize(verbose=False).failed == 0, "".join(report)


def test_every_skipped_example_says_why() -> None:
    silent = [f"{name}: {line.strip()}" for name in WITH_EXAMPLES for line in _source(name).splitlines()
              if SKIP.search(line) and not REASON.search(line)]
    assert not silent, "a skipped example says why beside its '# doctest: +SKIP':\n" + "\n".join(silent)
