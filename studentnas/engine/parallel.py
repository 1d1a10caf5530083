"""Evaluating candidates on Ray: one actor per worker, on this machine or on a cluster.

Used by ``studentnas search --workers N`` (a local Ray started in this process with
``ray.init(num_cpus=N)``, no dashboard) and ``--ray-address auto|HOST:PORT|ray://HOST:PORT`` (an
existing cluster). Ray is imported only here, and only then; the default ``--workers 1`` scores in
process with :class:`~studentnas.engine.evaluate.InProcessPool`.

What travels, and how often:

* the job's inputs (teacher, calibration batch, space, proxies, budget, seed) are ``ray.put`` into
  the object store **once**; every actor receives the reference, builds its
  :class:`~studentnas.core.proxy.ProxyContext` once and computes the teacher outputs once, in
  ``__init__``, not once per candidate;
* per candidate only the arch and its analytic cost go out, and one :class:`Candidate` comes back,
  stamped with the worker that made it: ``host:pid@node_ip/node_id`` (first 12 hex digits of the
  Ray node id), so each ``candidates.jsonl`` row names its node.

Each actor holds one CPU and scores with one torch thread. Students are seeded by (run seed, arch
id), so a candidate's scores are bit-identical to a serial run's made with one thread
(``OMP_NUM_THREADS=1``); a serial run with more threads reduces floats in another order and differs
in the last digits (about 1e-6 relative).

Workers import ``studentnas`` before anything else, and the job's ``runtime_env`` runs
:func:`studentnas._compat.install` in every worker process (Ray's ``worker_process_setup_hook``), so
timm and torchvision import next to a CPU-only torch on every node.

A worker that dies mid-candidate (segfault, out of memory, lost node) does not stop the run: its
actor is replaced and the candidate goes back to the front of the queue, to the next free actor. A
candidate that has killed :data:`MAX_ATTEMPTS` workers is recorded as failed, with the reason.

Test-only fault injection: if ``STUDENTNAS_TEST_CRASH_ONCE=MARKER`` is set where the search is
started, the first worker to receive a candidate creates the file ``MARKER`` (atomically, so only
one does), writes the candidate's arch id into it and exits the process (``os._exit``) mid-candidate.
``tests/test_ray.py`` uses it to kill a real worker; nothing else reads it.

Example::

    >>> check_address("auto"), check_address(None)
    (None, None)
    >>> check_address("127.0.0.1:notaport")
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --ray-address '127.0.0.1:notaport' is not auto, HOST:PORT or ray://HOST:PORT; e.g. --ray-address 10.0.0.5:6379
"""  # noqa: E501

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import torch

from studentnas.core.arch import Arch
from studentnas.core.budget import Budget
from studentnas.core.candidate import FAILED, Candidate, ray_worker_name
from studentnas.core.console import warn
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError, StudentNASError
from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.space import SearchSpace
from studentnas.engine.evaluate import LocalEvaluator

SETUP_HOOK = "studentnas._compat.install"
CRASH_ENV = "STUDENTNAS_TEST_CRASH_ONCE"  # test-only fault injection, see the module docstring
MAX_ATTEMPTS = 3  # workers a candidate may kill before it is recorded as failed
CONNECT_TIMEOUT_S = 5.0
START_TIMEOUT_S = 300.0  # how long to wait for a worker to start when no other worker is busy
_ADDRESS = re.compile(r"(?:ray://)?(\[[0-9a-fA-F:]+\]|[^:/\s]+):(\d{1,5})")


def check_address(address: str | None) -> tuple[str, int] | None:
    """Validate the syntax of ``--ray-address``; ``(host, port)`` to probe, or None for ``auto``/none."""
    if address is None or address == "auto":
        return None
    match = _ADDRESS.fullmatch(address.strip())
    if not match or not 0 < int(match[2]) < 65536:
        raise BadInputError(f"--ray-address '{address}' is not auto, HOST:PORT or ray://HOST:PORT; "
                            "e.g. --ray-address 10.0.0.5:6379")
    return match[1].strip("[]"), int(match[2])


def check_parallel(workers: int | None, address: str | None) -> None:
    """Cheap checks of ``--workers``/``--ray-address``: syntax, Ray installed, the address answers.

    Runs before the teacher is loaded, so an unreachable cluster is reported within seconds.
    """
    if workers is not None and workers < 1:
        raise BadInputError(f"--workers must be >= 1, got {workers}")
    if address is None and (workers or 1) == 1:
        return
    if importlib.util.find_spec("ray") is None:
        raise BadInputError("--workers > 1 and --ray-address need Ray, which is not installed; "
                            "pip install ray (the same version on every node)")
    target = check_address(address)
    if address is not None and address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise BadInputError(f"--ray-address '{address}' uses Ray Client, which is not installed; "
                            "pip install 'ray[client]', or pass the cluster's HOST:PORT (GCS port, default 6379)")
    if target is not None:
        try:
            socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as err:
            raise BadInputError(f"cannot reach the Ray cluster at --ray-address '{address}' ({err.strerror or err}); "
                                "start it with `ray start --head`, check the host and port, or drop --ray-address "
                                "to run on this machine") from None


@dataclass
class EvalInputs:
    """Everything a worker needs to score candidates; put in the object store once per search."""

    space: SearchSpace
    proxies: list[Proxy]
    budget: Budget
    seed: int
    num_classes: int
    images: torch.Tensor
    labels: torch.Tensor
    teacher: torch.nn.Module | None
    teacher_trained: bool
    crash_once: str | None = None  # test-only fault injection (a marker path), see the module docstring


class EvalWorker:
    """The actor: builds the context and teacher outputs once, then scores one candidate per call."""

    def __init__(self, inputs: EvalInputs):
        import ray

        # torch was imported by the setup hook before Ray set OMP_NUM_THREADS, so pin the threads here:
        # one per CPU the actor holds, whatever the node's core count (scores depend on the thread count).
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.inputs = inputs
        ctx = ProxyContext(images=inputs.images, labels=inputs.labels, num_classes=inputs.num_classes,
                           teacher=inputs.teacher, teacher_trained=inputs.teacher_trained, seed=inputs.seed)
        if any("teacher" in p.needs for p in inputs.proxies):
            ctx.teacher_outputs()
        self.teacher_seconds = ctx.teacher_seconds
        self.evaluator = LocalEvaluator(inputs.space, inputs.proxies, ctx, inputs.budget, inputs.seed,
                                        inputs.num_classes)
        self.worker = ray_worker_name()

    @staticmethod
    def _crash_once(arch: Arch, marker: str) -> None:
        """Test-only: die mid-candidate if no worker has yet (see the module docstring)."""
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, arch.id.encode())
        os.close(fd)
        os._exit(1)

    def ready(self) -> float:
        """Seconds this worker spent on teacher outputs (called once, to know it has started)."""
        return self.teacher_seconds

    def evaluate(self, arch: Arch, cost: Cost) -> Candidate:
        if self.inputs.crash_once:
            self._crash_once(arch, self.inputs.crash_once)
        return replace(self.evaluator.evaluate(arch, cost), worker=self.worker)


def worker_node(worker: str) -> str:
    """The Ray node id (12 hex digits) in a candidate's ``worker`` field; '' for in-process workers.

    >>> worker_node("vm:4242@127.0.0.1/0123456789ab"), worker_node("vm:4242")
    ('0123456789ab', '')
    """
    return worker.rsplit("/", 1)[1] if "@" in worker and "/" in worker else ""


@dataclass
class _Task:
    arch: Arch
    cost: Cost
    attempts: int = 0
    sent: float = 0.0


class RayPool:
    """Candidates in, candidates out, on ``workers`` Ray actors (see the module docstring).

    ``submit`` queues a candidate; ``next_finished`` blocks until any one is done and returns it
    (completion order); ``cancel_queued`` drops the ones no actor has started. ``close`` ends the
    actors, and the local Ray if this pool started it.
    """

    def __init__(self, inputs: EvalInputs, workers: int | None, address: str | None):
        import ray

        self._ray = ray
        self._owns_ray = False
        self._starting: dict[Any, Any] = {}  # ready() ref -> actor
        self._idle: deque[Any] = deque()
        self._running: dict[Any, tuple[Any, _Task]] = {}  # evaluate() ref -> (actor, task)
        self._queue: deque[_Task] = deque()
        self._replaced = 0
        self.teacher_seconds = 0.0
        self.overhead_seconds = 0.0  # round trip minus the candidate's own seconds, summed
        self.n_done = 0
        self.address = address or "local"
        if not ray.is_initialized():
            self._connect(workers, address)
        try:
            self._cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(EvalWorker)
            self._inputs_ref = ray.put(inputs)  # shipped once; each actor gets the reference
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers = workers or max(1, cpus)
            if self.workers > cpus:
                warn(f"{self.workers} workers but the Ray cluster has {cpus} CPUs; "
                     "the extra workers wait for free CPUs")
            for _ in range(self.workers):
                self._spawn()
            # Start together: the first worker up would otherwise take every candidate of a short run.
            ray.wait(list(self._starting), num_returns=len(self._starting), timeout=START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def _connect(self, workers: int | None, address: str | None) -> None:
        init_ray(address, workers or 1)
        self._owns_ray = True

    def _spawn(self) -> None:
        actor = self._cls.remote(self._inputs_ref)
        self._starting[actor.ready.remote()] = actor

    def _replace(self, actor: Any) -> None:
        self._replaced += 1
        if self._replaced > 3 * self.workers + 10:
            raise StudentNASError(f"Ray workers died {self._replaced} times; giving up (see the worker logs "
                                  "under /tmp/ray/session_latest/logs)")
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - it is already dead; killing is only tidying up
            pass
        self._spawn()

    def submit(self, arch: Arch, cost: Cost) -> None:
        self._queue.append(_Task(arch, cost))

    def cancel_queued(self) -> list[str]:
        """Drop the candidates no worker has started; returns their arch ids."""
        dropped = [t.arch.id for t in self._queue]
        self._queue.clear()
        return dropped

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            actor, task = self._idle.popleft(), self._queue.popleft()
            task.sent = time.perf_counter()
            self._running[actor.evaluate.remote(task.arch, task.cost)] = (actor, task)

    def next_finished(self) -> Candidate:
        """The next candidate to finish, in any order; re-runs candidates whose worker died."""
        ray = self._ray
        while True:
            self._dispatch()
            if not self._running and not self._queue:
                raise RuntimeError("next_finished() with nothing submitted")
            waiting = [*self._running, *self._starting]
            timeout = None if self._running else START_TIMEOUT_S
            done, _ = ray.wait(waiting, num_returns=1, timeout=timeout)
            if not done:
                raise StudentNASError(f"no Ray worker started within {START_TIMEOUT_S:.0f} s (cluster resources: "
                                      f"{ray.available_resources()}); free CPUs on the cluster or lower --workers")
            [ref] = done
            if ref in self._starting:
                actor = self._starting.pop(ref)
                try:
                    self.teacher_seconds = max(self.teacher_seconds, ray.get(ref))
                except ray.exceptions.RayActorError as err:
                    raise StudentNASError(f"a Ray worker could not start: {_first_line(err)}; every node needs "
                                          "studentnas and its dependencies installed (see the README)") from err
                self._idle.append(actor)
                continue
            actor, task = self._running.pop(ref)
            try:
                cand = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                self._replace(actor)
                task.attempts += 1
                if task.attempts >= MAX_ATTEMPTS:
                    return Candidate.now(arch=task.arch, cost=task.cost, status=FAILED,
                                         reason=f"its worker died {task.attempts} times: {_first_line(err)}")
                self._queue.appendleft(task)
                continue
            self.overhead_seconds += max(0.0, time.perf_counter() - task.sent - cand.seconds)
            self.n_done += 1
            self._idle.append(actor)
            return cand

    def close(self) -> None:
        for actor in [*self._idle, *(a for a, _ in self._running.values()), *self._starting.values()]:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        if self._owns_ray:
            self._ray.shutdown()


def init_ray(address: str | None, num_cpus: int) -> None:
    """Start a local Ray with ``num_cpus`` CPUs (``address`` None; never joins a cluster by accident) or
    connect to ``address``; every worker runs the torchvision shim first. An unreachable or refusing
    cluster is a one-line ``BadInputError``. Shared by the search's pool and ``studentnas distill``."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True,
             "runtime_env": {"worker_process_setup_hook": SETUP_HOOK}}
    if address is None:
        # Ray turns token authentication on for a local instance and says so at WARNING level: that is the
        # safe default, not news, so keep it out of our output.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        return
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, TimeoutError, RuntimeError) as err:
        if _caused_by(err, "AuthenticationError"):
            raise BadInputError(f"the Ray cluster at --ray-address '{address}' refused this client's authentication "
                                "token; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the "
                                "cluster's token") from None
        raise BadInputError(f"cannot connect to the Ray cluster at --ray-address '{address}': {_first_line(err)}; "
                            "start it with `ray start --head` or drop --ray-address") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _caused_by(err: BaseException | None, kind: str) -> bool:
    """Whether an exception class named ``kind`` is in the chain of ``err``, raised or quoted (Ray
    quotes the GCS client's error in its own message)."""
    while err is not None:
        if kind in {c.__name__ for c in type(err).__mro__} or kind in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False
