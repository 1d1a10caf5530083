"""studentnas: find the best student network to distil a teacher into, under a hardware budget.

Example:
    >>> import studentnas as sn
    >>> sn.Budget.parse("5GFLOPs").constraints[0].limit
    5000000000.0
    >>> "resnet" in sn.list_spaces()
    True
"""

from studentnas import _compat  # noqa: F401  (must run before torchvision/timm are imported)
from studentnas.arch import Arch
from studentnas.budget import Budget
from studentnas.candidate import Candidate
from studentnas.cost import Cost
from studentnas.errors import BadInputError, StudentNASError
from studentnas.registry import PROXIES, SEARCHERS, SPACES

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


def __getattr__(name: str):  # lazy: these pull in timm and the data stack
    if name == "search":
        from studentnas.search_job import search

        return search
    if name in ("load_run", "Run"):
        from studentnas import run

        return getattr(run, name)
    if name in ("load_student", "export_student"):
        from studentnas import export

        return getattr(export, name)
    if name == "pick":
        from studentnas.picker import pick

        return pick
    raise AttributeError(f"module 'studentnas' has no attribute '{name}'")


__all__ = [
    "Arch", "BadInputError", "Budget", "Candidate", "Cost", "StudentNASError", "get_proxy", "get_space",
    "list_proxies", "list_searchers", "list_spaces", "load_run", "load_student", "pick", "search", "export_student",
]
