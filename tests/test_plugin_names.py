"""Each plugin class gives its registry name once: its ``name`` attribute, which ``register()`` reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from studentnas.core.registry import PROXIES, SEARCHERS, SPACES, Registry
from studentnas.distill.losses.base import LOSSES
from studentnas.puzzle.decompose import FAMILIES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("registry", [SPACES, PROXIES, SEARCHERS, LOSSES, FAMILIES], ids=lambda r: r.kind)
def test_every_class_is_registered_under_its_name(registry: Registry) -> None:
    classes = {key: registry.get(key) for key in registry.list() if isinstance(registry.get(key), type)}
    assert classes, f"no {registry.kind} classes registered"
    assert {key: cls.name for key, cls in classes.items()} == {key: key for key in classes}


def test_no_class_names_itself_twice() -> None:
    twice = []
    paths = sorted(p for folder in ("studentnas", "search_spaces", "proxies") for p in (ROOT / folder).rglob("*.py"))
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            named = any(isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "name" for t in s.targets)
                        for s in node.body)
            passed = [d for d in node.decorator_list if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
                      and d.func.attr == "register" and d.args]
            if named and passed:
                twice.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not twice, "these set `name` and pass it to register() too; use @REGISTRY.register():\n" + "\n".join(twice)
