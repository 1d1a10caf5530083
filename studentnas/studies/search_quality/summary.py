"""The search-quality study's numbers, all derived from the journal: KD top-1 per student and per pick,
Kendall's tau-b per proxy, the verdict on DisWOT's pick and the KD-vs-CE-only baseline with the issue-5 target.

Example:
    >>> students = {"a": {"macs": 20.0, "kd_top1_mean": 90.5, "kd_top1_std": 0.7,
    ...                   "runs": [{"seed": 0, "test_top1": 90.0}, {"seed": 1, "test_top1": 91.0}]}}
    >>> ce = {"a": {k: {"seed": k, "test_top1": 88.0 + k, "test_top5": 99.0, "test_loss": 0.3, "seconds": 1.0}
    ...             for k in (0, 1)}}
    >>> r = ce_baseline_summary(students, ce, "best", ["a"], teacher_top1=91.0, teacher_macs=100.0)
    >>> r["per_student"]["a"]["gain_values"], r["per_student"]["a"]["checks"], r["target_met"]
    ([2.0, 2.0], {'under_macs_share': True, 'within_points_of_teacher': True, 'above_ce_only': True}, True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from scipy import stats

from studentnas.studies.common import TARGET_MACS_SHARE, TARGET_POINTS, kendall_tau, mean_std
from studentnas.studies.search_quality.folder import Study
from studentnas.studies.search_quality.picks import PICKS
from studentnas.studies.settings import Settings
from studentnas.studies.worker import mode_of


def runs_by_student(study: Study, s: Settings, mode: str) -> dict[str, dict[int, dict]]:
    """student -> seed -> its journal line in ``mode`` (a retrained pair: the last line wins)."""
    runs: dict[str, dict[int, dict]] = {}
    for row in study.journal():
        if row["status"] == "ok" and row["seed"] < s.seeds and mode_of(row) == mode:
            runs.setdefault(row["student"], {})[row["seed"]] = row
    return runs


def ce_baseline_summary(students: Mapping[str, dict], ce_runs: Mapping[str, dict[int, dict]], which: str,
                        ids: Sequence[str], teacher_top1: float | None, teacher_macs: float | None) -> dict[str, Any]:
    """KD vs CE-only per student (KD gain paired by seed: mean +- std over the seeds with both) and the issue-5
    target: under 25 % of the teacher's MACs, KD top-1 within 1 point of the teacher's, above CE-only."""
    rows = {}
    for arch_id in ids:
        info, ce = students[arch_id], ce_runs.get(arch_id, {})
        kd = {r["seed"]: r for r in info["runs"]}
        ce_mean, ce_std = mean_std([ce[k]["test_top1"] for k in sorted(ce)])
        seeds = sorted(set(kd) & set(ce))
        gains = [kd[k]["test_top1"] - ce[k]["test_top1"] for k in seeds]
        gain_mean, gain_std = mean_std(gains)
        share = info["macs"] / teacher_macs if teacher_macs else None
        kd_mean = info["kd_top1_mean"]
        checks = {"under_macs_share": share is not None and share <= TARGET_MACS_SHARE,
                  "within_points_of_teacher": teacher_top1 is not None and math.isfinite(kd_mean)
                  and kd_mean >= teacher_top1 - TARGET_POINTS,
                  "above_ce_only": bool(gains) and math.isfinite(ce_mean) and kd_mean > ce_mean}
        rows[arch_id] = {"kd_top1_mean": kd_mean, "kd_top1_std": info["kd_top1_std"], "ce_top1_mean": ce_mean,
                         "ce_top1_std": ce_std, "ce_runs": [{k: ce[i][k] for k in ("seed", "test_top1", "test_top5",
                                                                                  "test_loss", "seconds")}
                                                            for i in sorted(ce)],
                         "gain_seeds": seeds, "gain_values": gains, "gain_mean": gain_mean, "gain_std": gain_std,
                         "macs_share_of_teacher": share, "teacher_gap_points": (kd_mean - teacher_top1)
                         if teacher_top1 is not None else None, "checks": checks, "target_met": all(checks.values())}
    return {"mode": which, "students": list(ids), "recipe": "the KD recipe with the KD term removed: CE weight 1, "
            "same epochs, images, seeds, batch order and initial weights, no HPO", "per_student": rows,
            "teacher_top1": teacher_top1, "target": {"macs_share": TARGET_MACS_SHARE, "points": TARGET_POINTS},
            "target_met": any(r["target_met"] for r in rows.values()) if rows else None}


def _verdict(picks: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The picks ranked by mean KD top-1, and DisWOT's pick against each other pick (Welch's t-test)."""
    ranking = sorted((k for k in PICKS if picks[k]["n_runs"]), key=lambda k: -picks[k]["top1_mean"])
    versus = {}
    for other in PICKS:
        if other == "diswot" or not picks[other]["n_runs"] or not picks["diswot"]["n_runs"]:
            continue
        a, b = picks["diswot"]["top1_values"], picks[other]["top1_values"]
        with warnings.catch_warnings():  # equal values (e.g. one student in two roles): p is nan, said as such
            warnings.simplefilter("ignore", RuntimeWarning)
            test = stats.ttest_ind(a, b, equal_var=False) if len(a) > 1 and len(b) > 1 else None
        diff = picks["diswot"]["top1_mean"] - picks[other]["top1_mean"]
        versus[other] = {"diff_points": diff, "outcome": "wins" if diff > 0 else "loses" if diff < 0 else "ties",
                         "welch_p": float(test.pvalue) if test is not None and math.isfinite(test.pvalue) else None,
                         "same_student": picks["diswot"]["students"] == picks[other]["students"]}
    return {"ranking": ranking, "diswot_rank": ranking.index("diswot") + 1 if "diswot" in ranking else None,
            "best_pick": ranking[0] if ranking else None, "diswot_vs": versus}


def summarise(study: Study, s: Settings, ce_ids: Sequence[str] = (), ce_mode: str = "none",
              teacher_macs: float | None = None) -> dict[str, Any]:
    """Per-student and per-pick accuracies, Kendall tau per proxy, the verdict on DisWOT's pick, and the
    CE-only baseline of ``ce_ids`` (``ce_mode`` says how they were chosen)."""
    runs = runs_by_student(study, s, "kd")
    students = {}
    for arch_id, info in study.state["students"].items():
        mine = [runs.get(arch_id, {})[k] for k in sorted(runs.get(arch_id, {}))]
        mean, std = mean_std([r["test_top1"] for r in mine])
        students[arch_id] = {**info, "scores": study.state.get("scores", {}).get(arch_id, {}),
                             "runs": [{k: r[k] for k in ("seed", "test_top1", "test_top5", "test_loss", "seconds",
                                                         "train_images_per_s", "history")} for r in mine],
                             "kd_top1_mean": mean, "kd_top1_std": std}
    picks = {}
    for key in PICKS:
        ids = study.state["picks"][key]
        values = [r["test_top1"] for i in ids for r in students[i]["runs"]]
        mean, std = mean_std(values)
        picks[key] = {"students": ids, "top1_values": values, "top1_mean": mean, "top1_std": std, "n_runs": len(values),
                      "student_means": [students[i]["kd_top1_mean"] for i in ids]}
    trained = [i for i in students if students[i]["runs"]]
    proxies = ["diswot", s.classic_proxy, "params"]
    taus = {p: kendall_tau([students[i]["scores"][p] for i in trained], [students[i]["kd_top1_mean"] for i in trained])
            for p in proxies}
    searches = study.state["searches"]  # a pick's rescored value must equal what its search recorded
    search_check = {key: {"student": searches[key]["pick"], "proxy": searches[key]["proxy"],
                          "search_score": searches[key]["pick_score"],
                          "rescored": students[searches[key]["pick"]]["scores"].get(searches[key]["proxy"])}
                    for key in ("diswot", "classic")}
    ce_runs = runs_by_student(study, s, "ce")
    teacher_top1 = (study.state.get("teacher_eval") or {}).get("test_top1")
    ce = ce_baseline_summary(students, ce_runs, ce_mode, ce_ids, teacher_top1, teacher_macs)
    return {"students": students, "picks": picks, "kendall_tau": taus, "verdict": _verdict(picks),
            "search_score_check": search_check, "ce_baseline": ce,
            "complete": all(len(v["runs"]) == s.seeds for v in students.values())
            and all(len(ce_runs.get(i, {})) == s.seeds for i in ce_ids)}
