"""The provenance record every run file carries: library versions, the command line, seed and thread count.

One helper for the job: ``run.json``, model sidecars, benchmark JSON and study summaries all call
:func:`versions` or :func:`provenance`, so they record the same fields under the same names.

Example:
    >>> sorted(versions())
    ['numpy', 'python', 'studentnas', 'timm', 'torch']
    >>> record = provenance(seed=3, threads=1)
    >>> record["seed"], record["threads"], sorted(record)
    (3, 1, ['argv', 'seed', 'threads', 'versions'])
"""

from __future__ import annotations

import platform
import sys
from typing import Any


def versions() -> dict[str, str]:
    """Versions of what shapes results: studentnas, torch, timm, numpy and Python."""
    import numpy
    import timm
    import torch

    from studentnas import __version__

    return {"studentnas": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def provenance(seed: int | None = None, threads: int | None = None,
               argv: list[str] | None = None) -> dict[str, Any]:
    """``{"versions", "argv", "seed", "threads"}``: what produced a result and how to replay it.

    ``threads`` defaults to torch's current intra-op thread count (results of float reductions can
    differ in the last bits under another count); ``argv`` to this process's command line.
    """
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return {"versions": versions(), "argv": list(sys.argv if argv is None else argv), "seed": seed,
            "threads": int(threads)}
