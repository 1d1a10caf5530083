"""studentnas: find the best student network to distil a teacher into, under a hardware budget.

Example:
    >>> import studentnas as sn
    >>> sn.Budget.parse("5GFLOPs").constraints[0].limit
    5000000000.0
    >>> "resnet" in sn.list_spaces()
    True

Any model the tool writes (``export``, ``distill``, ``puzzle``, ``teacher train``, ``lm train``) loads
with ``sn.load_model(path)``; ``sn.load_student`` is the same function under its first name.
"""

import studentnas._compat as _compat  # noqa: F401  (must run before torchvision/timm are imported)
from studentnas.core.arch import Arch
from studentnas.core.budget import Budget
from studentnas.core.candidate import Candidate
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError, StudentNASError
from studentnas.core.registry import PROXIES, SEARCHERS, SPACES

__version__ = "0.1.0"


def get_space(name: str, **config):  # noqa: ANN201 - returns a SearchSpace
    """An instance of the registered search space ``name`` (``config`` goes to ``from_config``)."""
    cls = SPACES.get(name)
    return cls.from_config({"name": name, **config}) if config else cls()


def get_proxy(name: str, **params):  # noqa: ANN201 - returns a Proxy
    """An instance of the registered proxy ``name``."""
    return PROXIES.get(name)(**params)


def list_spaces(filter: str | None = None) -> list[str]:
    return SPACES.list(filter)


def list_proxies(filter: str | None = None) -> list[str]:
    return PROXIES.list(filter)


def list_searchers(filter: str | None = None) -> list[str]:
    return SEARCHERS.list(filter)


#: Lazy public names (they pull in timm and the data stack): attribute -> "module:name".
_LAZY = {
    "search": "studentnas.engine.search:search",
    "load_run": "studentnas.engine.rundir:load_run",
    "Run": "studentnas.engine.rundir:Run",
    "load_model": "studentnas.runfiles.models:load_model",
    "load_student": "studentnas.runfiles.models:load_model",  # the same function, kept under its first name
    "export_student": "studentnas.engine.export:export_student",
    "pick": "studentnas.engine.pick:pick",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'studentnas' has no attribute '{name}'")
    import importlib

    module, attr = _LAZY[name].split(":")
    return getattr(importlib.import_module(module), attr)


__all__ = [
    "Arch", "BadInputError", "Budget", "Candidate", "Cost", "StudentNASError", "get_proxy", "get_space",
    "list_proxies", "list_searchers", "list_spaces", "load_model", "load_run", "load_student", "pick", "search",
    "export_student",
]
