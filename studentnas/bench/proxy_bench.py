"""``bench_proxies()``: how well training-free proxies rank NAS-Bench-201 cells (``studentnas bench proxies``).

Two modes:

* **ground truth** (default): ``samples`` distinct cells drawn with ``seed`` (a seeded permutation of
  the sorted arch strings, so a larger ``samples`` extends a smaller one), each scored by every
  proxy, then Spearman, Kendall, top-10% hit rate and regret against the test accuracy of
  ``ground_truth`` (a NATS-Bench CSV or ``analog-nasbench``);
* **compare-published**: the cells of NASLib's published file for ``dataset`` (capped by
  ``samples``), and per proxy the Spearman correlation between our scores and the published ones.

Per cell, the student is built once (seeded by run seed and arch id, channels-last, as in
:mod:`studentnas.engine.evaluate`) and every proxy scores it through ONE candidate view, so proxies that
share a pass compute it once. Each proxy's ``score`` call is timed; the first proxy that needs a
shared pass pays for it, so ``seconds["total"]`` (build + every proxy) is the fair cost of the suite.
``params`` and ``macs`` are always scored, as the baselines. Proxies are timed in the given order.

Resume: cells go to the journal ``OUT.partial.jsonl`` as they finish (:mod:`~studentnas.bench.journal`);
a rerun with the same settings scores only the cells (or proxies) that are new, and cells whose proxy
code changed since (:func:`proxy_fingerprint`). This is the default (``fresh=True`` / ``--fresh``
starts over). The final JSON is written atomically.

Example (a few seconds)::

    >>> import tempfile
    >>> res = bench_proxies(ground_truth="../shared/reference/nb201/nats_bench.csv", samples=4, batch_size=8,
    ...                     proxies="nwot", out=tempfile.mkdtemp() + "/b.json", quiet=True)  # ~5 s  # doctest: +SKIP
    >>> sorted(res["summary"])  # the bench above  # doctest: +SKIP
    ['macs', 'nwot', 'params']
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studentnas.bench import ground_truth as gt
from studentnas.bench.bench_data import DEFAULT_DATA, load_bench_batch
from studentnas.bench.correlation import TOP_FRACTION, combine_ranks, parse_combination
from studentnas.bench.ensemble import fit_rank_weights
from studentnas.bench.journal import Journal, journal_path, json_safe
from studentnas.bench.kd_truth import ArchTable, ids_of, is_kd_ground_truth, load_kd_ground_truth
from studentnas.bench.proxy_suite import proxy_fingerprint, resolve_proxies, score_cell, teacher_proxies
from studentnas.bench.published import load_published, published_name
from studentnas.bench.summary import cell_split, compare_summary, split_summaries
from studentnas.core.console import Progress, sayer
from studentnas.core.errors import BadInputError
from studentnas.core.proxy import Proxy, ProxyContext
from studentnas.core.registry import SPACES
from studentnas.data.teachers import check_teacher_name, load_teacher
from studentnas.runfiles.provenance import versions

DEFAULT_SAMPLES = 1000
DEFAULT_BATCH_SIZE = 64
DEFAULT_THREADS = 2
DEFAULT_HOLDOUT = 0.5
RSS_EVERY = 100  # record resident memory every this many cells


def _data_used(proxy: Proxy, data_source: str) -> str:
    if "cost" in proxy.needs and not proxy.needs & {"data", "labels"}:
        return "none (analytic cost)"
    if proxy.needs & {"data", "labels"}:
        return data_source
    return "none (data-free)"


def _rss_mb() -> float:
    """Resident memory of this process in MB (current where /proc exists, else the peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _sample(cells: Sequence[str], samples: int | None, seed: int, what: str) -> list[str]:
    """A seeded permutation prefix of ``cells`` (all of them when ``samples`` is None)."""
    if samples is None:
        return list(cells)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise BadInputError(f"--samples must be a positive integer, got {samples!r}")
    if samples > len(cells):
        raise BadInputError(f"--samples {samples} exceeds the {len(cells)} cells of {what}; use --samples "
                            f"{len(cells)} or fewer")
    order = np.random.default_rng(seed).permutation(len(cells))[:samples]
    return [cells[i] for i in order]


def _memory_summary(rss_start: float, trace: list[list[float]]) -> dict[str, Any]:
    """Resident memory before scoring, after the first cell and at the end; ``growth_after_first_cell`` is
    the leak indicator (the first cell pays for one-off allocations: kernels, caches, allocator arenas)."""
    first = trace[0][1] if trace else math.nan
    end = trace[-1][1] if trace else math.nan
    return {"rss_start": rss_start, "rss_after_first_cell": first, "rss_end": end,
            "growth_after_first_cell": end - first, "trace": trace}


def _write_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(payload), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def bench_proxies(
    *,
    out: str | Path,
    ground_truth: str | Path | None = None,
    dataset: str = "cifar10",
    samples: int | None = None,
    proxies: str | Sequence[str] | None = None,
    data: str | None = DEFAULT_DATA,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    threads: int = DEFAULT_THREADS,
    compare_published: str | Path | None = None,
    holdout_fraction: float = DEFAULT_HOLDOUT,
    split_seed: int = 0,
    combine: Sequence[str] = (),
    fit: str | Sequence[str] | None = None,
    teacher: str | None = None,
    teacher_checkpoint: str | Path | None = None,
    fresh: bool = False,
    quiet: bool = False,
    space: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark, write ``out`` (JSON) and return its content (see the module docstring).

    ``samples`` defaults to 1000 cells with ground truth, or every published cell in compare mode.
    ``holdout_fraction`` of the cells are ``report`` cells (``summary``), the rest ``tune`` cells
    (``summary_tune``); ``summary_all`` covers both. ``combine`` adds rank combinations such as
    ``"nwot+synflow"`` (:func:`~studentnas.bench.correlation.combine_ranks`) as pseudo-proxies.
    ``fit`` (proxy names, or ``"all"``) adds a rank combination whose weights are fitted on the tune
    cells only (:mod:`~studentnas.bench.ensemble`) and reported on the report cells.
    ``teacher`` (a timm name; random init seeded by ``seed`` unless ``teacher_checkpoint``) makes the
    teacher-student proxies (DisWOT, KD-aware) available; its head gets the dataset's class count.
    ``ground_truth`` may also be a ``studentnas bench kd`` file (:mod:`~studentnas.bench.kd_truth`), of any
    space: its students (all of them unless ``samples``) are ranked against their mean KD top-1, at the
    file's image size and class count; ``space`` (default: the file's) must then be the file's space.
    """
    t_start = time.perf_counter()
    say = log or sayer(quiet)
    # --- 1. validation, before anything heavy --------------------------------------------------------
    kd = None
    if ground_truth is not None and compare_published is None and is_kd_ground_truth(ground_truth):
        kd = load_kd_ground_truth(ground_truth)
        if space not in (None, kd.space.name):
            raise BadInputError(f"--space {space!r}: the ground-truth file '{ground_truth}' holds {kd.space.name} "
                                f"students; drop --space or pass --space {kd.space.name}")
        space_obj: Any = ArchTable(kd.space, kd.archs)
    else:
        space = space or "nb201"
        if space != "nb201":
            raise BadInputError(f"--space {space!r}: `bench proxies` supports only nb201, the space with published "
                                "ground truth (NAS-Bench-201), or the space of a `studentnas bench kd` file; use "
                                "--space nb201 or --ground-truth kd_ground_truth.json")
        space_obj = SPACES.get(space)()
    gt.check_dataset(dataset)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BadInputError(f"--threads must be a positive integer, got {threads!r}")
    if not 0 < holdout_fraction <= 1:
        raise BadInputError(f"--holdout-fraction must be in (0, 1] (the share of cells reported), got "
                            f"{holdout_fraction}; use 1 to report every cell")
    out = Path(out).expanduser()
    if out.is_dir():
        raise BadInputError(f"--json '{out}' is a directory; pass a file path such as {out / 'bench.json'}")
    if teacher is not None:
        check_teacher_name(teacher)
    suite = resolve_proxies(proxies, has_teacher=teacher is not None)
    names = [p.name for p in suite]
    fit_names = _fit_names(fit, names)
    if fit_names and compare_published is not None:
        raise BadInputError("--fit needs ground truth on tune cells; it does not apply to --compare-published")
    combos = {text.replace(" ", ""): parse_combination(text) for text in combine}
    for text, weights in combos.items():
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise BadInputError(f"--combine {text}: {unknown} not among the scored proxies {names}; add them to "
                                "--proxies")
    if compare_published is None and ground_truth is None:
        raise BadInputError("pass --ground-truth PATH (a NATS-Bench CSV, e.g. ../shared/reference/nb201/"
                            "nats_bench.csv) or --ground-truth analog-nasbench, or use --compare-published PATH")
    # --- 2. ground truth, cells, data --------------------------------------------------------------
    if kd is not None:
        truth, truth_source = dict(kd.kd), kd.source
    else:
        truth, truth_source = gt.load_ground_truth(ground_truth, dataset) if ground_truth is not None else ({}, None)
    published = {}
    if kd is not None:
        cells = _sample(ids_of(kd), samples, seed, f"the ground truth ({truth_source})")
    elif compare_published is not None:
        published = {c.arch: c for c in load_published(compare_published, dataset)}
        cells = _sample(sorted(published), samples, seed, f"'{compare_published}' [{dataset}]")
    else:
        cells = _sample(sorted(truth), DEFAULT_SAMPLES if samples is None else samples, seed,
                        f"the ground truth ({truth_source})")
    input_size, num_classes = (kd.input_size, kd.num_classes) if kd else (gt.INPUT_SIZE[dataset],
                                                                          gt.NUM_CLASSES[dataset])
    batch = load_bench_batch(data, batch_size, input_size, seed, num_classes)
    teach = None
    if teacher is not None:
        torch.manual_seed(seed)  # a random-init teacher is the same in every run of this seed
        teach = load_teacher(teacher, teacher_checkpoint, num_classes=num_classes)
    data_used = {p.name: _data_used(p, batch.info["source"]) for p in suite}
    # --- 3. score (resumable) ------------------------------------------------------------------------
    identity = {"space": space_obj.config(), "dataset": dataset, "input_size": list(input_size),
                "num_classes": num_classes, "data": batch.info["spec"], "data_source": batch.info["source"],
                "batch_size": batch.info["batch_size"], "seed": seed}
    if teach is not None:  # only then, so journals of teacher-free runs stay valid
        identity["teacher"] = {"name": teach.name, "checkpoint_sha256": teach.checkpoint_sha256}
    journal = Journal(journal_path(out), identity)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    ctx = ProxyContext(images=batch.images, labels=batch.labels, num_classes=num_classes, seed=seed,
                       suite=tuple(p.name for p in suite), teacher=teach.model if teach else None,
                       teacher_trained=bool(teach and teach.trained))
    ctx.require(suite)
    rss_start = _rss_mb()
    rss_trace: list[list[float]] = []  # [cells scored in this process, resident MB]
    loop_start = time.perf_counter()
    try:
        done = journal.open(fresh)
        fingerprints = {p.name: proxy_fingerprint(p) for p in suite}
        todo = [c for c in cells if c not in done or any(done[c].get("fingerprints", {}).get(n) != f
                                                         for n, f in fingerprints.items())]
        resumed = len(cells) - len(todo)
        if resumed:
            say(f"resuming from {journal.path}: {resumed} of {len(cells)} cells already scored")
        what = f"{kd.space.name} students (KD ground truth" if kd else f"NB201 cells ({dataset}"
        say(f"scoring {len(todo)} {what}, {'x'.join(map(str, input_size))}) with "
            f"{', '.join(names)}; {threads} threads; data: {batch.info['source']}")
        with Progress(total=len(cells), desc="bench proxies", quiet=quiet, initial=resumed) as bar:
            for i, arch in enumerate(todo, start=1):
                record = score_cell(space_obj, arch, suite, ctx, seed, input_size, num_classes)
                record["fingerprints"] = fingerprints
                journal.append(record)
                done[arch] = json.loads(json.dumps(json_safe(record)))
                bar.update(1, s_per_cell=record["seconds"]["total"])
                if i == 1 or i % RSS_EVERY == 0 or i == len(todo):
                    rss_trace.append([i, _rss_mb()])
    finally:
        journal.close()
        torch.set_num_threads(previous_threads)
    loop_seconds = time.perf_counter() - loop_start
    # --- 4. assemble, summarise, write ---------------------------------------------------------------
    rows = []
    for arch in cells:
        record = done[arch]
        row: dict[str, Any] = {"arch": arch, "split": cell_split(arch, split_seed, holdout_fraction),
                               "accuracy": truth.get(arch)}
        if kd is not None:
            row["ce_accuracy"] = kd.ce.get(arch)
        if published:
            cell = published[arch]
            row.update(val_accuracy=cell.val_accuracy, naslib_tuple=list(cell.naslib_tuple),
                       published={n: cell.scores.get(n) for n in names if n in cell.scores},
                       published_seconds={n: cell.seconds.get(n) for n in names if n in cell.seconds})
        row.update(scores={n: record["scores"].get(n) for n in names},
                   seconds={k: v for k, v in record["seconds"].items() if k in names or k in ("build", "total")},
                   errors={k: v for k, v in record.get("errors", {}).items() if k in names})
        rows.append(row)
    fitted = None
    if fit_names:
        tune = [r for r in rows if r["split"] == "tune"]
        fitted = fit_rank_weights({p: _scores(tune, p) for p in fit_names},
                                  np.array([r["accuracy"] for r in tune], dtype=np.float64))
        combos[fitted.name] = fitted.weights
        say(f"fitted on {fitted.n_tune} tune cells: {fitted.name} (tune Spearman {fitted.tune_spearman:.3f})")
    if combos:
        for text, weights in combos.items():
            values = combine_ranks({p: _scores(rows, p) for p in weights}, weights)
            for row, value in zip(rows, values):
                row.setdefault("combined", {})[text] = float(value)
    config = {
        "mode": "compare-published" if published else "ground-truth",
        "space": space_obj.config(), "dataset": dataset, "num_classes": num_classes, "input_size": list(input_size),
        "ground_truth": truth_source, "published": str(compare_published) if published else None,
        "cells": len(cells), "samples": samples, "sample_seed": seed, "proxies": names,
        "proxies_left_out": teacher_proxies() if proxies is None and teach is None else [],
        "proxy_fingerprints": fingerprints, "fit": fitted.to_dict() if fitted else None,
        "teacher": None if teach is None else {"name": teach.name, "trained": teach.trained,
                                               "checkpoint": teach.checkpoint, "num_classes": teach.num_classes},
        "combine": {k: dict(v) for k, v in combos.items()}, "data": batch.info, "batch_size": batch.info["batch_size"],
        "seed": seed, "threads": threads, "holdout_fraction": holdout_fraction, "split_seed": split_seed,
        "n_report": sum(r["split"] == "report" for r in rows), "n_tune": sum(r["split"] == "tune" for r in rows),
        "top_fraction": TOP_FRACTION, "resumed_cells": resumed, "scored_cells": len(todo),
        "journal": str(journal.path), "memory_mb": _memory_summary(rss_start, rss_trace),
        "versions": versions(),
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
        "wall_seconds": time.perf_counter() - t_start, "loop_seconds": loop_seconds,
        "timing_note": ("per-proxy seconds time each proxy's score() call in the order of 'proxies', one candidate "
                        "view per cell: the first proxy that needs a shared pass pays for it; 'total' is build + "
                        "every proxy"),
    }
    timing = {"seconds_per_arch": {n: _mean([r["seconds"].get(n) for r in rows]) for n in names},
              "build_seconds_per_arch": _mean([r["seconds"].get("build") for r in rows]),
              "suite_seconds_per_arch": _mean([r["seconds"].get("total") for r in rows])}
    result: dict[str, Any] = {"config": config, "timing": timing}
    if published:
        result["summary"] = compare_summary(rows, names, {n: published_name(n) for n in names}, data_used)
    else:
        result.update(split_summaries(rows, names, combos, data_used))
    result["per_arch"] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out, result)
    return json.loads(json.dumps(json_safe(result)))


def _scores(rows: Sequence[dict[str, Any]], proxy: str) -> np.ndarray:
    """One proxy's score per row, nan where it failed."""
    return np.array([r["scores"][proxy] if r["scores"].get(proxy) is not None else math.nan for r in rows],
                    dtype=np.float64)


def _fit_names(fit: str | Sequence[str] | None, names: Sequence[str]) -> list[str]:
    """The proxies ``--fit`` may weight: ``"all"`` = every scored proxy; unknown names are an error."""
    if fit is None:
        return []
    wanted = [p.strip() for p in (fit.split(",") if isinstance(fit, str) else fit) if p.strip()]
    if wanted == ["all"]:
        return list(names)
    unknown = [p for p in wanted if p not in names]
    if unknown or not wanted:
        raise BadInputError(f"--fit {','.join(wanted) or '(empty)'}: {unknown or 'no proxy'} not among the scored "
                            f"proxies {list(names)}; add them to --proxies, or pass --fit all")
    return list(dict.fromkeys(wanted))


def _mean(values: Sequence[Any]) -> float:
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
