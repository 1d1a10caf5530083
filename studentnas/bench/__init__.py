"""Validation against ground truth: proxy benchmarks on NAS-Bench-201 (``studentnas bench proxies``).

May import: ``core``, ``runfiles``, ``data``, ``engine`` and lower layers (not ``puzzle``, ``studies`` or ``cli``).

* :mod:`~studentnas.bench.ground_truth`: NB201 accuracies from a NATS-Bench CSV or ``analog-nasbench``;
* :mod:`~studentnas.bench.published`: NASLib's published zero-cost proxy values;
* :mod:`~studentnas.bench.correlation`: Spearman, Kendall, top-k hit rate, regret, rank combinations;
* :mod:`~studentnas.bench.bench_data` and :mod:`~studentnas.bench.foolbox_data`: the calibration batch;
* :mod:`~studentnas.bench.proxy_suite`: which proxies a run scores, their code fingerprint, one cell's scores;
* :mod:`~studentnas.bench.proxy_bench`: the driver, :func:`bench_proxies`.

Example:
    >>> from studentnas.bench import spearman
    >>> import numpy as np
    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0]))
    0.5
"""

from studentnas.bench.correlation import (
    combine_ranks,
    kendall,
    parse_combination,
    regret_at_k,
    spearman,
    summarize,
    top_k_hit_rate,
)


def __getattr__(name: str):  # noqa: ANN202 - lazy: the driver pulls in torch and the data stack
    if name == "bench_proxies":
        from studentnas.bench.proxy_bench import bench_proxies

        return bench_proxies
    raise AttributeError(f"module 'studentnas.bench' has no attribute '{name}'")


__all__ = ["bench_proxies", "combine_ranks", "kendall", "parse_combination", "regret_at_k", "spearman", "summarize",
           "top_k_hit_rate"]
