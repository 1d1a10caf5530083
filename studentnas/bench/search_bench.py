"""``bench_search()``: how good are the NB201 cells a training-free search picks (``studentnas bench search``).

For each seed, a searcher runs ``evals`` proxy evaluations over NB201 (no training anywhere); its
choice is the evaluated cell with the highest proxy score, and that cell's test accuracy is looked
up in the ground truth afterwards. Random search with the same proxy and the same number of
evaluations always runs too, as the baseline. Both use the same scores: a cell's score depends
only on (``score_seed``, cell), never on the search seed, so each cell is scored once per benchmark
and cached.

Cache and resume: scores go to ``OUT.scores.jsonl`` as they are computed (one line per cell, with
the proxy's code fingerprint); a rerun with the same data and proxy reuses them, so extra seeds,
another searcher or a crash cost only the cells not yet scored.

Example (a few seconds)::

    >>> import tempfile
    >>> res = bench_search(ground_truth="../shared/reference/nb201/nats_bench.csv", proxy="synflow",
    ...                    searcher="evolution", evals=5, seeds=2, batch_size=8,
    ...                    out=tempfile.mkdtemp() + "/s.json", quiet=True)  # ~5 s  # doctest: +SKIP
    >>> sorted(res["summary"])  # the bench above  # doctest: +SKIP
    ['evolution', 'random']
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studentnas.bench import ground_truth as gt
from studentnas.bench.bench_data import DEFAULT_DATA, load_bench_batch
from studentnas.bench.journal import Journal, json_safe
from studentnas.bench.proxy_suite import proxy_fingerprint, resolve_proxies
from studentnas.core.budget import Budget
from studentnas.core.candidate import Candidate
from studentnas.core.console import Progress, sayer
from studentnas.core.errors import BadInputError, SearchExhaustedError
from studentnas.core.proxy import ProxyContext
from studentnas.core.registry import SEARCHERS, SPACES
from studentnas.engine.evaluate import LocalEvaluator
from studentnas.runfiles.provenance import versions

BASELINE = "random"
DEFAULT_EVALS = 100
DEFAULT_SEEDS = 10
DEFAULT_BATCH_SIZE = 64


def scores_path(out: str | Path) -> Path:
    """``OUT.scores.jsonl`` for ``--json OUT``: the cache of cell scores.

    Example:
        >>> scores_path("/tmp/s.json").name
        's.json.scores.jsonl'
    """
    out = Path(out)
    return out.with_name(out.name + ".scores.jsonl")


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"--{name} must be a positive integer, got {value!r}")
    return value


class CachedScorer:
    """Scores NB201 cells with one proxy, each cell once, journalled in ``OUT.scores.jsonl``."""

    def __init__(self, evaluator: LocalEvaluator, journal: Journal, fingerprint: str, fresh: bool):
        self.evaluator = evaluator
        self.journal = journal
        self.fingerprint = fingerprint
        done = journal.open(fresh)
        self.cache = {arch: rec for arch, rec in done.items() if rec.get("fingerprint") == fingerprint}
        self.reused = len(self.cache)
        self.scored = 0
        self.seconds = 0.0

    def __call__(self, arch_text: str, candidate_for: Callable[[], Candidate]) -> Candidate:
        """The candidate of ``arch_text``: from the cache, or scored now (and journalled)."""
        record = self.cache.get(arch_text)
        if record is None:
            cand = candidate_for()
            record = {"arch": arch_text, "candidate": cand.to_dict(), "fingerprint": self.fingerprint}
            self.journal.append(record)
            self.cache[arch_text] = json.loads(json.dumps(json_safe(record)))
            self.scored += 1
            self.seconds += cand.seconds
            return cand
        return Candidate.from_dict(record["candidate"])


def run_one(searcher_name: str, seed: int, space: Any, proxy: str, evals: int, scorer: CachedScorer,
            evaluator: LocalEvaluator, truth: dict[str, float], input_size: tuple[int, int, int],
            num_classes: int) -> dict[str, Any]:
    """One search: ``evals`` ask/tell steps of ``searcher_name`` with ``seed``; returns its record."""
    strategy = SEARCHERS.get(searcher_name)(space, seed=seed, objective=proxy)
    told: list[Candidate] = []
    stop = "evals"
    for _ in range(evals):
        try:
            [arch] = strategy.ask(1)
        except SearchExhaustedError:
            stop = "exhausted"
            break
        text = space.format_arch(arch)
        cand = scorer(text, lambda a=arch: evaluator.evaluate(a, space.cost(a, input_size, num_classes)))
        strategy.tell(cand)
        told.append(cand)
    ok = [c for c in told if c.ok and math.isfinite(c.score(proxy))]
    if not ok:
        raise BadInputError(f"every one of the {len(told)} cells {searcher_name} (seed {seed}) evaluated failed "
                            f"with proxy '{proxy}' (e.g. {told[0].reason if told else 'none'}); pick another --proxy")
    best = max(ok, key=lambda c: (c.score(proxy), c.id))
    chosen = space.format_arch(best.arch)
    accuracies = [truth[space.format_arch(c.arch)] for c in ok]
    return {"searcher": searcher_name, "seed": seed, "arch": chosen, "accuracy": truth[chosen],
            "score": best.score(proxy), "evals": len(told), "failed": len(told) - len(ok),
            "best_accuracy_evaluated": max(accuracies), "stop": stop}


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max())}


def bench_search(
    *,
    out: str | Path,
    ground_truth: str | Path,
    dataset: str = "cifar10",
    proxy: str = "nwot",
    searcher: str = "evolution",
    evals: int = DEFAULT_EVALS,
    seeds: int = DEFAULT_SEEDS,
    data: str | None = DEFAULT_DATA,
    batch_size: int = DEFAULT_BATCH_SIZE,
    score_seed: int = 0,
    threads: int = 2,
    fresh: bool = False,
    quiet: bool = False,
    space: str = "nb201",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``searcher`` and the random baseline for ``seeds`` seeds each, write ``out`` and return it."""
    t_start = time.perf_counter()
    say = log or sayer(quiet)
    # --- validation before any work ------------------------------------------------------------------
    if space != "nb201":
        raise BadInputError(f"--space {space!r}: `bench search` supports only nb201, the space with ground truth; "
                            "use --space nb201")
    gt.check_dataset(dataset)
    evals, seeds = _positive("evals", evals), _positive("seeds", seeds)
    _positive("threads", threads)
    SEARCHERS.get(searcher)
    suite = [p for p in resolve_proxies(proxy) if p.name == proxy.strip()]
    if len(suite) != 1 or "," in proxy:
        raise BadInputError(f"--proxy takes one proxy name, got {proxy!r}; e.g. --proxy nwot")
    out = Path(out).expanduser()
    if out.is_dir():
        raise BadInputError(f"--json '{out}' is a directory; pass a file path such as {out / 'search.json'}")
    truth, truth_source = gt.load_ground_truth(ground_truth, dataset)
    space_obj = SPACES.get(space)()
    input_size, num_classes = gt.INPUT_SIZE[dataset], gt.NUM_CLASSES[dataset]
    batch = load_bench_batch(data, batch_size, input_size, score_seed, num_classes)
    # --- scoring context and cache -------------------------------------------------------------------
    ctx = ProxyContext(images=batch.images, labels=batch.labels, num_classes=num_classes, seed=score_seed)
    evaluator = LocalEvaluator(space_obj, suite, ctx, Budget(()), score_seed, num_classes)
    identity = {"space": space_obj.config(), "dataset": dataset, "input_size": list(input_size),
                "num_classes": num_classes, "data": batch.info["spec"], "data_source": batch.info["source"],
                "batch_size": batch.info["batch_size"], "score_seed": score_seed, "proxy": proxy}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    journal = Journal(scores_path(out), identity)
    runs: list[dict[str, Any]] = []
    searchers = list(dict.fromkeys([searcher, BASELINE]))
    try:
        scorer = CachedScorer(evaluator, journal, proxy_fingerprint(suite[0]), fresh)
        if scorer.reused:
            say(f"reusing {scorer.reused} cell scores from {journal.path}")
        say(f"{' and '.join(searchers)} x {seeds} seeds x {evals} evaluations of {proxy} on NB201 ({dataset}); "
            f"data: {batch.info['source']}")
        with Progress(total=len(searchers) * seeds, desc="bench search", quiet=quiet) as bar:
            for name in searchers:
                for seed in range(seeds):
                    runs.append(run_one(name, seed, space_obj, proxy, evals, scorer, evaluator, truth, input_size,
                                        num_classes))
                    bar.update(1, acc=runs[-1]["accuracy"])
    finally:
        journal.close()
        torch.set_num_threads(previous_threads)
    # --- summary -------------------------------------------------------------------------------------
    optimum = max(truth.values())
    summary = {}
    for name in searchers:
        mine = [r for r in runs if r["searcher"] == name]
        summary[name] = {"accuracy": _stats([r["accuracy"] for r in mine]),
                         "regret": _stats([optimum - r["accuracy"] for r in mine]),
                         "evals": _stats([r["evals"] for r in mine]),
                         "best_accuracy_evaluated": _stats([r["best_accuracy_evaluated"] for r in mine]),
                         "seeds": len(mine)}
    config = {
        "space": space_obj.config(), "dataset": dataset, "ground_truth": truth_source, "proxy": proxy,
        "searcher": searcher, "baseline": BASELINE, "evals": evals, "seeds": seeds, "score_seed": score_seed,
        "data": batch.info, "threads": threads, "optimum_accuracy": optimum,
        "cells_scored": scorer.scored, "cells_reused": scorer.reused,
        "scoring_seconds": scorer.seconds, "scores_cache": str(journal.path),
        "versions": versions(),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
        "wall_seconds": time.perf_counter() - t_start,
    }
    result = {"config": config, "summary": summary, "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(result), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return result


def format_search_table(result: dict[str, Any]) -> str:
    """One line per searcher: mean +- std of the chosen cells' test accuracy, regret and evaluations."""
    cfg = result["config"]
    lines = [f"{cfg['dataset']} ({cfg['ground_truth']}): {cfg['seeds']} seeds x {cfg['evals']} evaluations of "
             f"{cfg['proxy']}; optimum {cfg['optimum_accuracy']:.2f}%"]
    header = ["searcher", "accuracy mean", "std", "min", "max", "regret", "evals"]
    rows = [header]
    for name, s in result["summary"].items():
        a = s["accuracy"]
        rows.append([name, f"{a['mean']:.2f}", f"{a['std']:.2f}", f"{a['min']:.2f}", f"{a['max']:.2f}",
                     f"{s['regret']['mean']:.2f}", f"{s['evals']['mean']:.0f}"])
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    lines += ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    return "\n".join(lines)
