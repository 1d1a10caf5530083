"""One Ray Tune experiment of ``studentnas distill``: the trials of one student in one mode, proposed by
Optuna's TPE (told the journal's finished trials first), stopped early by ASHA (or run to the end by
FIFO), and written to the journal as they finish.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studentnas.core.errors import StudentNASError
from studentnas.distill.batches import seed_of
from studentnas.distill.hparams import HyperParamSpace
from studentnas.distill.journal import TrialJournal
from studentnas.distill.journal_callback import journal_callback
from studentnas.distill.prepare import JOURNAL, Prepared
from studentnas.distill.trial import METRIC, TrialJob, run_trial

PENDING_TIMEOUT_ENV = "STUDENTNAS_DISTILL_PENDING_TIMEOUT"
DEFAULT_PENDING_TIMEOUT_S = 300.0


def make_scheduler(name: str, epochs: int) -> Any:
    """The Ray Tune trial scheduler ``name`` (a key of :data:`SCHEDULERS`) for trials of ``epochs`` epochs."""
    return SCHEDULERS[name](epochs)


def _asha(epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(metric=METRIC, mode="max", time_attr="training_iteration", max_t=epochs, grace_period=1,
                         reduction_factor=2)


def _fifo(_epochs: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: dict[str, Callable[[int], Any]] = {"asha": _asha, "fifo": _fifo}


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _experiment_name(tune_dir: Path, student: str, mode: str) -> str:
    name, k = f"{student}-{mode}", 1
    while (tune_dir / name).exists():
        k += 1
        name = f"{student}-{mode}-{k}"
    return name


def make_searcher(space: HyperParamSpace, mode: str, seed: int, student: str,
                  done: list[dict[str, Any]]) -> tuple[Any, list[str]]:
    """Optuna TPE over the tunable parameters, told the journal's finished trials first (None: nothing to tune)."""
    from ray.tune.search.optuna import OptunaSearch

    dists = space.distributions(mode)
    if not dists:
        return None, []
    optuna_log = logging.getLogger("optuna")
    level = optuna_log.level
    optuna_log.setLevel(logging.WARNING)
    try:
        # The sampler's seed includes how many trials finished before: a resumed study must not draw the
        # same random start-up points again (TPE's first trials are random draws from its own RNG).
        searcher = OptunaSearch(space=dists, metric=METRIC, mode="max",
                                seed=seed_of("optuna", seed, student, mode, len(done)) % 2**31)
        for row in done:
            params = {k: row["config"][k] for k in dists if k in row.get("config", {})}
            if len(params) != len(dists):
                continue
            failed = row.get("status") != "ok" or row.get("val_top1") is None
            searcher.add_evaluated_point(params, None if failed else float(row["val_top1"]), error=failed,
                                         pruned=bool(row.get("stopped_early")) and not failed)
    finally:
        optuna_log.setLevel(level)
    return searcher, list(dists)


def run_experiment(prep: Prepared, job: TrialJob, trials: int, scheduler: str, resources: dict[str, float],
                   max_failures: int, quiet: bool, say: Callable[[str], None]) -> None:
    """Run the trials of ``job`` (one student, one mode) still missing from the journal, up to ``trials`` in all.

    Each finished trial is written to ``RUN/distill/trials.jsonl`` as Tune reports it; a
    :class:`~studentnas.core.errors.StudentNASError` raised inside Tune is re-raised as itself.
    """
    from ray import tune

    journal = TrialJournal(prep.folder / JOURNAL)
    done = journal.rows(job.student, job.mode)
    if len(done) >= trials:
        return
    searcher, params = make_searcher(prep.space, job.mode, job.seed, job.student, done)
    tune_dir = prep.folder / "tune"
    name = _experiment_name(tune_dir, job.student, job.mode)
    say(f"{job.student} [{job.mode}]: {trials - len(done)} trial(s) to run ({len(done)} finished before), "
        f"{job.epochs} epoch(s) each, scheduler {scheduler}, experiment {tune_dir / name}")
    timeout = float(os.environ.get(PENDING_TIMEOUT_ENV, DEFAULT_PENDING_TIMEOUT_S))
    callback = journal_callback(journal, job, name, prep.folder, params, timeout, say, trials)
    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job),
                                    {k: v for k, v in resources.items() if v > 0})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(scheduler, job.epochs),
                                    num_samples=trials - len(done), reuse_actors=False,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=name, storage_path=str(tune_dir.resolve()), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=max_failures),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=[callback]),
    )
    try:
        tuner.fit()
    except StudentNASError:
        raise
    except Exception as err:  # noqa: BLE001 - Tune wraps our callback's errors in its own
        cause = err
        while cause is not None and not isinstance(cause, StudentNASError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
