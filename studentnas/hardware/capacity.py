"""How much parallel work this machine really does: the ceiling for any N-worker speed-up measured here.

Two vCPUs may share one physical core, or the host may be busy: then two processes finish two units of
work no faster than one process finishes one. Parallel benchmarks report their speed-up beside this
ceiling, measured in the same run.

Example:
    >>> print(_matmul_script(2).splitlines()[1])  # the unit of work each process runs
    torch.set_num_threads(1)
    >>> machine_parallel_capacity(workers=2)["capacity"]  # starts 3 processes: seconds  # doctest: +SKIP
    1.78
"""

from __future__ import annotations

import subprocess
import sys
import time


def _matmul_script(repeats: int) -> str:
    return ("import time, torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
            f"for _ in range({int(repeats)}):\n    a @ a\n")


def machine_parallel_capacity(workers: int = 2, repeats: int = 300) -> dict[str, float]:
    """How much faster ``workers`` single-threaded processes get through ``workers`` units of matmul work
    than 1 process through 1 unit, times ``workers``: the ceiling for a ``workers``-way speed-up here
    (``workers`` on that many idle real cores)."""

    def run(n: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _matmul_script(repeats)]) for _ in range(n)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - start

    one = run(1)
    many = one if workers == 1 else run(workers)
    return {"workers": workers, "one_process_s": one, "parallel_s": many, "capacity": workers * one / many}
