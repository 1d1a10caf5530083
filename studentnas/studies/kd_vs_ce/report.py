"""The KD-vs-CE numbers and table: per KD recipe in the journal, KD and CE-only top-1, the KD gain paired by
seed and the issue-5 target (CE-only runs do not depend on the recipe, so every row shares them).

Example:
    >>> rows = [{"student": "a", "seed": s, "mode": m, "recipe": r, "status": "ok", "test_top1": acc}
    ...         for s, m, r, acc in ((0, "kd", "T4-kd0.9-ce0.1", 90.0), (0, "ce", None, 88.5))]
    >>> summary = summarise(rows, "a", [0], teacher_top1=90.5, share=0.2)
    >>> summary["ce_top1_mean"], summary["recipes"]["T4-kd0.9-ce0.1"]["gain_values"]
    (88.5, [1.5])
    >>> summary["recipes"]["T4-kd0.9-ce0.1"]["target_met"]
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from studentnas.studies.common import TARGET_MACS_SHARE, TARGET_POINTS, fmt_mean_std, mean_std


def summarise(rows: Sequence[Mapping[str, Any]], student: str, seeds: Sequence[int], teacher_top1: float,
              share: float) -> dict[str, Any]:
    """Per KD recipe in the journal: KD and CE-only top-1 over ``seeds``, the paired KD gain, the target."""
    ok = [r for r in rows if r["status"] == "ok" and r["student"] == student and r["seed"] in seeds]
    ce = {r["seed"]: r["test_top1"] for r in ok if r["mode"] == "ce"}
    ce_mean, ce_std = mean_std([ce[k] for k in sorted(ce)])
    recipes: dict[str, dict[int, float]] = {}
    for r in ok:
        if r["mode"] == "kd":
            recipes.setdefault(r["recipe"], {})[r["seed"]] = r["test_top1"]
    out = {}
    for key, kd in recipes.items():
        kd_mean, kd_std = mean_std([kd[k] for k in sorted(kd)])
        paired = sorted(set(kd) & set(ce))
        gains = [kd[k] - ce[k] for k in paired]
        gain_mean, gain_std = mean_std(gains)
        checks = {"under_macs_share": share <= TARGET_MACS_SHARE,
                  "within_points_of_teacher": kd_mean >= teacher_top1 - TARGET_POINTS,
                  "above_ce_only": bool(gains) and kd_mean > ce_mean}
        out[key] = {"kd_top1": [kd[k] for k in sorted(kd)], "kd_seeds": sorted(kd), "kd_top1_mean": kd_mean,
                    "kd_top1_std": kd_std, "gain_seeds": paired, "gain_values": gains, "gain_mean": gain_mean,
                    "gain_std": gain_std, "teacher_gap_points": kd_mean - teacher_top1, "checks": checks,
                    "target_met": all(checks.values()),
                    "complete": set(kd) == set(seeds) and set(ce) == set(seeds)}
    return {"ce_top1": [ce[k] for k in sorted(ce)], "ce_seeds": sorted(ce), "ce_top1_mean": ce_mean,
            "ce_top1_std": ce_std, "recipes": out}


def markdown(report: Mapping[str, Any]) -> str:
    """The table of every KD recipe against CE only, with the teacher, the student and the target."""
    t, st, summary = report["teacher"], report["student"], report["summary"]
    lines = [f"Teacher `{t['model']}` ({t['origin']}): test top-1 **{t['test_top1']:.2f} %** on "
             f"{t['test_images']} test images. Student `{st['id']}` ({st['label']}): "
             f"{100 * st['macs_share']:.1f} % of the teacher's MACs. Target: under "
             f"{100 * TARGET_MACS_SHARE:g} % of the teacher's MACs, KD top-1 within {TARGET_POINTS:g} point "
             "of the teacher's, above CE only.", "",
             "| KD recipe | teacher top-1 % | KD top-1 % | CE-only top-1 % | KD gain (points, paired) | MACs share "
             "| seeds | target |", "|---|---|---|---|---|---|---|---|"]
    ce = fmt_mean_std(summary["ce_top1_mean"], summary["ce_top1_std"])
    for key, r in summary["recipes"].items():
        current = " (this run)" if key == report["recipe"] else ""
        lines.append(f"| `{key}`{current} | {t['test_top1']:.2f} | {fmt_mean_std(r['kd_top1_mean'], r['kd_top1_std'])} "
                     f"| {ce} | {fmt_mean_std(r['gain_mean'], r['gain_std'])} | {100 * st['macs_share']:.1f} % | "
                     f"{len(r['gain_seeds'])} | {'**met**' if r['target_met'] else '**not met**'} |")
    if len(summary["recipes"]) > 1:
        lines += ["", "Several KD recipes were run; each row is judged on its own. Picking the best row by these "
                      "test accuracies would be tuning on the test set."]
    return "\n".join(lines)
