"""Contract test suites shipped with the package. Every registered space, proxy and searcher passes
them automatically in our tests; third-party plugins can call them from their own tests.
May import: ``core``, ``hardware``, ``searchers`` (never a plugin by name).

Example:
    >>> from studentnas import get_space
    >>> from studentnas.testing import check_space
    >>> check_space(get_space("nb201"), input_size=(3, 16, 16), n=2)
"""

from studentnas.testing.proxies import check_proxy, check_proxy_order
from studentnas.testing.searchers import check_searcher
from studentnas.testing.spaces import check_space

__all__ = ["check_proxy", "check_proxy_order", "check_searcher", "check_space"]
