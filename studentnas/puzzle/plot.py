"""Puzzle students on one accuracy-vs-MACs plot, beside the run's searched and distilled students.

``RUN/puzzle/pareto.png`` shows, for every budget solved with realisation: the MIP student before and
after global KD, the greedy and random selections (test top-1 against their MACs), the teacher, and,
when ``studentnas distill`` ran in the same run directory, its distilled students
(``RUN/students/*.json`` with a ``distill`` record). Everything is measured on test data, so the
points are comparable; the searched students' own test split is the one ``distill`` used.

Example:
    >>> points = puzzle_points({"solutions": {}, "teacher_costs": {"macs": 1e6}})
    >>> points
    []
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studentnas.runfiles.atomic import write_json_atomic


def puzzle_points(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """(label, kind, macs, top-1) for every realised selection of a ``puzzle.json`` summary."""
    points = []
    for slug, row in summary.get("solutions", {}).items():
        ev = row.get("evaluation")
        if not ev:
            continue
        macs = row["measured"]["macs"]
        points.append({"kind": "Puzzle MIP", "label": slug, "macs": macs, "acc": ev["mip"].get("acc")})
        points.append({"kind": "Puzzle MIP + global KD", "label": slug, "macs": macs,
                       "acc": (ev.get("mip_after_gkd") or {}).get("acc")})  # None: skipped (random teacher)
        if "greedy_macs" not in row:  # written by an older version: costs of the baselines not recorded
            continue
        points.append({"kind": "greedy", "label": slug, "macs": row["greedy_macs"], "acc": ev["greedy"].get("acc")})
        for i, (r, r_macs) in enumerate(zip(ev.get("random", []), row["random_macs"], strict=True)):
            points.append({"kind": "random", "label": f"{slug}#{i + 1}", "macs": r_macs, "acc": r.get("acc")})
    return [p for p in points if p["acc"] is not None]


def searched_points(run: Path) -> list[dict[str, Any]]:
    """Distilled students of a ``studentnas distill`` in ``run`` (their KD test top-1 and MACs)."""
    points = []
    for path in sorted((run / "students").glob("*.json")):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        record = meta.get("distill")
        if isinstance(record, dict) and record.get("mode") == "kd" and "macs" in meta:
            points.append({"kind": "searched + distilled", "label": path.stem, "macs": float(meta["macs"]),
                           "acc": float(meta["test_top1"])})
    return points


def write_pareto_plot(run: str | Path) -> Path | None:
    """Write ``RUN/puzzle/pareto.png`` (and ``pareto_points.json``); None when nothing was realised yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    summary_path = run / "puzzle" / "puzzle.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    points = puzzle_points(summary) + searched_points(run)
    if not points:
        return None
    teacher_acc = next((row["evaluation"]["teacher"].get("acc") for row in summary["solutions"].values()
                        if row.get("evaluation")), None)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"Puzzle MIP": ("o", "C0"), "Puzzle MIP + global KD": ("*", "C3"), "greedy": ("s", "C1"),
              "random": ("x", "C7"), "searched + distilled": ("^", "C2")}
    for kind, (marker, colour) in styles.items():
        chosen = [p for p in points if p["kind"] == kind]
        if chosen:
            ax.scatter([p["macs"] / 1e6 for p in chosen], [p["acc"] for p in chosen], marker=marker, c=colour,
                       s=80 if marker == "*" else 40, label=kind)
    teacher_macs = summary.get("teacher_costs", {}).get("macs")
    if teacher_acc is not None and teacher_macs:
        ax.scatter([teacher_macs / 1e6], [teacher_acc], marker="D", c="k", label="teacher")
    ax.set_xlabel("MMACs (papers' MFLOPs), batch 1")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"Puzzle on {summary['teacher']['name']}: students under each budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = run / "puzzle" / "pareto.png"
    tmp = out.with_name(".pareto.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)
    write_json_atomic(run / "puzzle" / "pareto_points.json", {"points": points, "teacher_acc": teacher_acc,
                                                                "teacher_macs": teacher_macs})
    return out
