"""Summaries and the terminal table of a proxy benchmark, from its per-cell rows.

Rows are the ``per_arch`` entries of the output: ``{"arch", "split", "accuracy", "scores",
"seconds", ...}``. Cells are split into ``tune`` and ``report`` by a hash of (split seed, arch
string), so a cell's side never depends on which other cells were sampled, on ``--samples`` or on
the order of work. Anything tuned (e.g. the weights of a ``--combine``) must be chosen on ``tune``
cells and judged on ``report`` cells.

Example:
    >>> cell_split("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", split_seed=0, holdout_fraction=1.0)
    'report'
    >>> rows = [{"arch": str(i), "split": "report", "accuracy": float(i), "scores": {"p": float(i)},
    ...          "seconds": {"p": 0.5}} for i in range(10)]
    >>> s = summarize_rows(rows, ["p"], {}, {"p": "none"})
    >>> round(s["p"]["spearman"], 6), s["p"]["top_hit"], s["p"]["seconds_per_arch"]
    (1.0, 1.0, 0.5)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from studentnas.bench.correlation import TOP_FRACTION, combine_ranks, kendall, spearman, summarize

SPLITS = ("report", "tune")


def cell_split(arch: str, split_seed: int, holdout_fraction: float) -> str:
    """``"report"`` for a ``holdout_fraction`` share of cells (chosen by hash), ``"tune"`` for the rest."""
    digest = hashlib.sha256(f"{split_seed}:{arch}".encode()).hexdigest()
    return "report" if int(digest[:13], 16) / 16**13 < holdout_fraction else "tune"


def _column(rows: Sequence[Mapping[str, Any]], key: str, name: str | None = None) -> np.ndarray:
    """One float per row: ``row[key]`` (or ``row[key][name]``), nan where missing or null."""
    values = []
    for row in rows:
        value = row.get(key)
        if name is not None:
            value = value.get(name) if isinstance(value, Mapping) else None
        values.append(float(value) if isinstance(value, (int, float)) else math.nan)
    return np.asarray(values, dtype=np.float64)


def mean_seconds(rows: Sequence[Mapping[str, Any]], name: str, key: str = "seconds") -> float:
    """Mean of ``row[key][name]`` over the rows that have it (nan when none do)."""
    values = _column(rows, key, name)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def combined_scores(rows: Sequence[Mapping[str, Any]],
                    combos: Mapping[str, Mapping[str, float]]) -> dict[str, np.ndarray]:
    """``{combination name: combine_ranks of its proxies over these rows}``."""
    return {name: combine_ranks({p: _column(rows, "scores", p) for p in weights}, weights)
            for name, weights in combos.items()}


def summarize_rows(rows: Sequence[Mapping[str, Any]], proxies: Sequence[str],
                   combos: Mapping[str, Mapping[str, float]], data_used: Mapping[str, str],
                   truth_key: str = "accuracy", fraction: float = TOP_FRACTION) -> dict[str, dict[str, Any]]:
    """Per proxy (and per combination): :func:`~studentnas.bench.correlation.summarize` against
    ``row[truth_key]``, plus ``seconds_per_arch`` (mean over these rows) and ``data`` (what it read).

    Combinations use the combined values stored in ``row["combined"]`` when present (ranks over
    the whole sample), else ranks over these rows.
    """
    truth = _column(rows, truth_key)
    macs = _column(rows, "scores", "macs")
    costs = macs if np.isfinite(macs).any() else None  # the within-band figures need the MACs baseline's scores
    out: dict[str, dict[str, Any]] = {}
    for name in proxies:
        out[name] = {**summarize(_column(rows, "scores", name), truth, fraction, costs),
                     "seconds_per_arch": mean_seconds(rows, name), "data": data_used.get(name, "")}
    fallback = combined_scores(rows, combos) if combos else {}
    for name, weights in combos.items():
        stored = _column(rows, "combined", name)
        values = stored if np.isfinite(stored).any() else fallback[name]
        seconds = [mean_seconds(rows, p) for p in weights]
        out[name] = {**summarize(values, truth, fraction, costs), "seconds_per_arch": float(sum(seconds)),
                     "combination": dict(weights), "data": "; ".join(sorted({data_used.get(p, "") for p in weights}))}
    return out


def split_summaries(rows: Sequence[Mapping[str, Any]], proxies: Sequence[str],
                    combos: Mapping[str, Mapping[str, float]], data_used: Mapping[str, str]) -> dict[str, Any]:
    """``summary`` (report cells), ``summary_tune`` and ``summary_all`` of a ground-truth benchmark."""
    by_split = {s: [r for r in rows if r.get("split") == s] for s in SPLITS}
    out = {
        "summary": summarize_rows(by_split["report"], proxies, combos, data_used),
        "summary_tune": summarize_rows(by_split["tune"], proxies, combos, data_used),
        "summary_all": summarize_rows(rows, proxies, combos, data_used),
    }
    with_ce = [r for r in rows if isinstance(r.get("ce_accuracy"), (int, float))]
    if with_ce:  # a KD ground truth with CE-only students: the same figures against vanilla accuracy
        out["summary_ce"] = summarize_rows(with_ce, proxies, combos, data_used, truth_key="ce_accuracy")
        out["summary_kd_of_ce_students"] = summarize_rows(with_ce, proxies, combos, data_used)
    return out


def compare_summary(rows: Sequence[Mapping[str, Any]], proxies: Sequence[str], published_names: Mapping[str, str],
                    data_used: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per proxy: rank agreement of our scores with the published ones on the same cells, and of both
    with the file's validation accuracy (and with ``accuracy``, the ground truth, when rows have it)."""
    val = _column(rows, "val_accuracy")
    test = _column(rows, "accuracy")
    out: dict[str, dict[str, Any]] = {}
    for name in proxies:
        ours = _column(rows, "scores", name)
        theirs = _column(rows, "published", name)
        has_published = bool(np.isfinite(theirs).any())
        entry: dict[str, Any] = {
            "published_name": published_names.get(name) if has_published else None,
            "spearman_vs_published": spearman(ours, theirs) if has_published else math.nan,
            "kendall_vs_published": kendall(ours, theirs) if has_published else math.nan,
            "n": int((np.isfinite(ours) & np.isfinite(theirs)).sum()) if has_published else 0,
            "n_failed": int((~np.isfinite(ours)).sum()),
            "spearman_vs_val_accuracy": spearman(ours, val),
            "published_spearman_vs_val_accuracy": spearman(theirs, val) if has_published else math.nan,
            "seconds_per_arch": mean_seconds(rows, name),
            "published_seconds_per_arch": mean_seconds(rows, name, "published_seconds") if has_published else math.nan,
            "data": data_used.get(name, ""),
        }
        if np.isfinite(test).any():
            entry["spearman_vs_test_accuracy"] = spearman(ours, test)
            entry["published_spearman_vs_test_accuracy"] = spearman(theirs, test) if has_published else math.nan
        out[name] = entry
    return out


# ---------------------------------------------------------------------------------------------- table


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def _render(rows: list[list[str]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def format_table(result: Mapping[str, Any]) -> str:
    """A plain-text table of a benchmark result (the ``--json`` content), one line per proxy."""
    cfg = result["config"]
    if cfg["mode"] == "compare-published":
        head = (f"{cfg['dataset']}: our scores vs published ({cfg['published']}) on {cfg['cells']} cells; "
                f"data: {cfg['data']['source']}")
        test = cfg["ground_truth"] is not None
        rows = [["proxy", "rho(ours,published)", "rho(ours,val)", "rho(published,val)",
                 *(["rho(ours,test)"] if test else []), "n", "s/arch"]]
        for name, s in result["summary"].items():
            rows.append([name, _fmt(s["spearman_vs_published"]), _fmt(s["spearman_vs_val_accuracy"]),
                         _fmt(s["published_spearman_vs_val_accuracy"]),
                         *([_fmt(s.get("spearman_vs_test_accuracy"))] if test else []), str(s["n"]),
                         _fmt(s["seconds_per_arch"], 4)])
        return head + "\n" + _render(rows)
    parts = []
    truth = "KD top-1" if str(cfg["ground_truth"]).startswith("KD ground truth") else cfg["dataset"]
    tables = [("summary", f"{truth}, report cells ({cfg['n_report']})"), ("summary_all", f"{truth}, all cells "
              f"({cfg['cells']})"), ("summary_ce", "CE-only top-1 of the CE-only students"),
              ("summary_kd_of_ce_students", "KD top-1 of the same students")]
    for key, label in tables:
        if key not in result:
            continue
        parts.append(f"{label}: {cfg['ground_truth']}; data: {cfg['data']['source']}")
        parts.append(_render(_table_rows(result[key], cfg["top_fraction"])))
    timing = result["timing"]
    parts.append(f"suite: {_fmt(timing['suite_seconds_per_arch'], 3)} s per cell (build + all proxies, "
                 f"{cfg['threads']} threads, batch {cfg['data']['batch_size']})")
    return "\n".join(parts)


def _table_rows(summary: Mapping[str, Mapping[str, Any]], top_fraction: float) -> list[list[str]]:
    """Header and one line per proxy: correlations, within-band pairwise accuracy (with pair counts) where the
    summary has it, top-k hit and regrets."""
    pct = f"{round(100 * top_fraction)}%"
    tags = [key.removeprefix("pairwise_") for key in next(iter(summary.values()), {}) if key.startswith("pairwise_")]
    rows = [["proxy", "spearman", "kendall", *[f"pairs@{t}%MACs" for t in tags], f"top{pct}", f"regret@{pct}",
             "regret@5", "n", "failed", "s/arch"]]
    for name, s in summary.items():
        rows.append([name, _fmt(s["spearman"]), _fmt(s["kendall"]),
                     *[f"{_fmt(s[f'pairwise_{t}'])} ({s[f'pairs_{t}']})" for t in tags], _fmt(s["top_hit"]),
                     _fmt(s["regret_top"], 2), _fmt(s.get("regret_at_5", math.nan), 2), str(s["n"]),
                     str(s["n_failed"]), _fmt(s["seconds_per_arch"], 4)])
    return rows
