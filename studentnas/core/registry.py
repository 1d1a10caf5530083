"""Name -> object registries with lazy plugin loading and close-match suggestions.

A registry maps names to classes (spaces, proxies, searchers). Plugins register themselves with
the :meth:`Registry.register` decorator. The core never imports a plugin by name: the first lookup
imports every module of the registry's plugin package, the registry's named ``modules`` (for entries
that live in feature modules of a higher layer), the modules named in the environment
variable ``STUDENTNAS_PLUGINS`` (comma separated module names or ``.py`` paths) and every entry point
of the registry's entry-point group.

Example:
    >>> reg = Registry("colour")
    >>> @reg.register("red")
    ... class Red: ...
    >>> reg.get("red") is Red
    True
    >>> reg.get("rde")
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: unknown colour 'rde'. Did you mean 'red'? Known: red
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

from studentnas.core.errors import BadInputError

T = TypeVar("T")

PLUGINS_ENV = "STUDENTNAS_PLUGINS"


def suggest(name: str, known: list[str], n: int = 3) -> str:
    """A ``" Did you mean 'x' or 'y'?"`` fragment for an unknown ``name`` (empty when nothing is close)."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    if not close:
        close = [lowered[k] for k in lowered if name.lower() in k][:n]
    else:
        close = [lowered[c] for c in close]
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def load_env_plugins() -> None:
    """Import the modules named in ``$STUDENTNAS_PLUGINS`` (module names or paths to ``.py`` files)."""
    for item in filter(None, (s.strip() for s in os.environ.get(PLUGINS_ENV, "").split(","))):
        if item.endswith(".py"):
            path = Path(item)
            if not path.is_file():
                raise BadInputError(f"{PLUGINS_ENV} names '{item}', which is not a file; fix the path or unset it")
            mod_name = f"studentnas_user_plugin_{path.stem}"
            if mod_name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(mod_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(item)
            except ImportError as err:
                raise BadInputError(f"{PLUGINS_ENV} names module '{item}', which cannot be imported ({err}); "
                                    "install it or fix the name") from None


class Registry(Generic[T]):
    """A named collection of plugins of one kind.

    Args:
        kind: what the registry holds, used in messages ("search space", "proxy", ...).
        plugin_package: dotted package whose modules are imported on first lookup.
        entry_point_group: the entry-point group third-party packages use to add plugins.
        modules: dotted modules imported on first lookup (they register their entries when imported).
    """

    def __init__(self, kind: str, plugin_package: str | None = None, entry_point_group: str | None = None,
                 modules: tuple[str, ...] = ()):
        self.kind = kind
        self._plugin_package = plugin_package
        self._entry_point_group = entry_point_group
        self._modules = tuple(modules)
        self._items: dict[str, T] = {}
        self._loaded = plugin_package is None and entry_point_group is None and not self._modules

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator that registers an object under ``name`` (default: its ``name`` attribute or ``__name__``)."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None) or obj.__name__  # type: ignore[attr-defined]
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} '{key}' is registered twice ({self._items[key]!r} and {obj!r})")
            self._items[key] = obj
            return obj

        return deco

    def load(self) -> None:
        """Import this registry's plugins now (idempotent). Plugins may register more than their entry, e.g.
        the ``cifar_resnet`` space registers its classic members as timm models; code that resolves such
        names (the teacher loader) calls ``SPACES.load()`` first."""
        self._load_plugins()

    def _load_plugins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._plugin_package:
            package = importlib.import_module(self._plugin_package)
            for info in pkgutil.iter_modules(package.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self._plugin_package}.{info.name}")
        for module in self._modules:
            importlib.import_module(module)
        if self._entry_point_group:
            for ep in entry_points(group=self._entry_point_group):
                ep.load()
        load_env_plugins()

    def get(self, name: str) -> T:
        """The object registered as ``name``; a :class:`BadInputError` with close matches otherwise."""
        self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = sorted(self._items)
            raise BadInputError(
                f"unknown {self.kind} '{name}'.{suggest(name, known)} Known: {', '.join(known)}"
            ) from None

    def list(self, filter: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style pattern (``'nb*'``)."""
        self._load_plugins()
        names = sorted(self._items)
        return [n for n in names if filter is None or fnmatch.fnmatch(n, filter)]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())


SPACES: Registry = Registry("search space", "studentnas.search_spaces", "studentnas.search_spaces")
PROXIES: Registry = Registry("proxy", "studentnas.proxies", "studentnas.proxies")
SEARCHERS: Registry = Registry("searcher", "studentnas.searchers", "studentnas.searchers")
