"""The search-quality study's markdown section (the one ``--write-benchmarks`` appends to BENCHMARKS.md):
the command, the settings, the pick table, every student with its proxy scores, Kendall's tau, the verdict
and the KD-vs-CE-only table with the issue-5 target.

Example:
    >>> ce = {"per_student": {}, "mode": "none"}
    >>> ce_markdown(ce, {}, 90.0)
    []
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np

from studentnas.studies.common import fmt_mean_std, fmt_number
from studentnas.studies.search_quality.picks import PICKS
from studentnas.studies.settings import Settings


def markdown(report: Mapping[str, Any]) -> str:
    """The BENCHMARKS.md section: command, settings, the pick table, every student, Kendall tau, verdict."""
    s, summary, st = Settings(**report["config"]["settings"]), report["summary"], report
    teacher, picks, students = st["teacher"], summary["picks"], summary["students"]
    classic = s.classic_proxy
    how = {"diswot": f"best of {s.candidates} `{s.searcher}` candidates by diswot",
           "classic": f"best of {s.candidates} `{s.searcher}` candidates by {classic}",
           "largest_params": f"most params: best of {s.params_samples} draws, then hill-climbing "
                             f"({st['sampling']['largest_params']['hill_climb_steps']} steps)",
           "random": f"{s.random_students} uniform draws under the budget, pooled"}
    names = {"diswot": "DisWOT search", "classic": f"{classic} search", "largest_params": "largest #params",
             "random": "random"}
    lines = [f"## Search quality: does the search pick better students? (Fashion-MNIST, {dt.date.today()})", "",
             "```", report["command"], "```", "",
             f"Teacher `{s.teacher}` ({teacher['origin']}), {s.image_size} px: test top-1 "
             f"**{teacher['test_top1']:.2f} %** on {teacher['test_images']} test images, "
             f"{teacher['macs'] / 1e6:.1f} MMACs, "
             f"{teacher['params'] / 1e6:.2f} M params. Budget `{s.budget}` = {report['budget']['resolved']} "
             f"(space `{s.space}`, centred on the teacher). Recipe, the same for every student: Hinton KD "
             f"(T = {s.temperature:g}, weight {s.kd_weight:g}) + {s.ce_weight:g} CE, SGD Nesterov, lr {s.lr:g} cosine, "
             f"weight decay {s.weight_decay:g}, {s.epochs} epochs on {s.train_images} training images, batch "
             f"{s.batch_size}, no augmentation, seeds 0-{s.seeds - 1}; test top-1 on "
             f"{report['test_images']} test images. Wall time {report['timings']['wall_total_s'] / 60:.1f} min"
             f" ({report['machine']['cpu_count']} cores, {report['config']['jobs']} parallel trainings)."
             + ("" if summary["complete"] else " **Incomplete: some trainings are missing or failed.**"), "",
             "| pick | how | student | MMACs | M params | KD test top-1 % (mean +- std) | runs |",
             "|---|---|---|---|---|---|---|"]
    for key in PICKS:
        p = picks[key]
        ids = p["students"]
        if len(ids) == 1:
            info = students[ids[0]]
            who, macs, params = f"`{ids[0]}` {info['label']}", info["macs"] / 1e6, info["params"] / 1e6
        else:
            who = f"{len(ids)} students (below)"
            macs = float(np.mean([students[i]["macs"] for i in ids])) / 1e6
            params = float(np.mean([students[i]["params"] for i in ids])) / 1e6
        best = key == summary["verdict"]["best_pick"]
        acc = fmt_mean_std(p["top1_mean"], p["top1_std"])
        lines.append(f"| {names[key]} | {how[key]} | {who} | {macs:.2f} | {params:.2f} | "
                     f"{f'**{acc}**' if best else acc} | {p['n_runs']} |")
    lines.append(f"| teacher | `{s.teacher}` | | {teacher['macs'] / 1e6:.2f} | {teacher['params'] / 1e6:.2f} | "
                 f"{teacher['test_top1']:.2f} | 1 |")
    lines += ["", f"Every student trained ({len(students)}; proxy scores on the searches' calibration batch):", "",
              f"| student | role | arch | MMACs | M params | diswot | {classic} | params | KD top-1 % |",
              "|---|---|---|---|---|---|---|---|---|"]
    for arch_id, info in sorted(students.items(), key=lambda kv: -(kv[1]["kd_top1_mean"] or -1e9)):
        sc = info["scores"]
        lines.append(f"| `{arch_id}` | {', '.join(info['roles'])} | {info['label']} | {info['macs'] / 1e6:.2f} | "
                     f"{info['params'] / 1e6:.2f} | {fmt_number(sc.get('diswot'), 4)} | "
                     f"{fmt_number(sc.get(classic), 4)} | "
                     f"{fmt_number(sc.get('params'), 3)} | {fmt_mean_std(info['kd_top1_mean'], info['kd_top1_std'])} |")
    lines += ["", "Kendall tau-b between each proxy and the mean KD test top-1, over every student trained:", "",
              "| proxy | tau | p | students |", "|---|---|---|---|"]
    for proxy, t in summary["kendall_tau"].items():
        lines.append(f"| {proxy} | {fmt_number(t['tau'])} | {fmt_number(t['p_value'])} | {t['n']} |")
    v = summary["verdict"]
    parts = []
    for other, r in v["diswot_vs"].items():
        same = " (the same student)" if r["same_student"] else ""
        welch = f" (Welch p = {r['welch_p']:.2f})" if r["welch_p"] is not None else ""
        parts.append(f"{r['outcome']} against {names[other]} by {r['diff_points']:+.2f} points{welch}{same}")
    lines += ["", f"**Verdict: DisWOT's pick ranks {v['diswot_rank']} of {len(v['ranking'])}** "
                  f"(best: {names.get(v['best_pick'], v['best_pick'])}); it " + "; ".join(parts) + ".", ""]
    lines += ce_markdown(summary["ce_baseline"], students, teacher["test_top1"])
    return "\n".join(lines)


def ce_markdown(ce: dict[str, Any], students: Mapping[str, dict], teacher_top1: float) -> list[str]:
    """The KD-vs-CE-only table and the issue-5 target line (nothing when no CE baseline was trained)."""
    if not ce["per_student"]:
        return []
    which = {"best": "the student with the best mean KD top-1", "all": "every student"}.get(ce["mode"], ce["mode"])
    lines = [f"KD against CE only (`--ce-baseline {ce['mode']}`: {which}; {ce['recipe']}). KD gain = KD minus "
             "CE-only test top-1 of the same seed, mean +- std over seeds:", "",
             "| student | role | arch | MACs / teacher | KD top-1 % | CE-only top-1 % | KD gain (points) | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for arch_id, r in ce["per_student"].items():
        info = students[arch_id]
        share = "-" if r["macs_share_of_teacher"] is None else f"{100 * r['macs_share_of_teacher']:.1f} %"
        lines.append(f"| `{arch_id}` | {', '.join(info['roles'])} | {info['label']} | {share} | "
                     f"{fmt_mean_std(r['kd_top1_mean'], r['kd_top1_std'])} | "
                     f"{fmt_mean_std(r['ce_top1_mean'], r['ce_top1_std'])} | "
                     f"{fmt_mean_std(r['gain_mean'], r['gain_std'])} | {len(r['gain_seeds'])} |")
    target = (f"under {100 * ce['target']['macs_share']:g} % of the teacher's MACs, within "
              f"{ce['target']['points']:g} point of the teacher's top-1, above the same student without KD")
    for arch_id, r in ce["per_student"].items():
        c = r["checks"]
        met = "**met**" if r["target_met"] else "**not met**"
        gap = "-" if r["teacher_gap_points"] is None else f"{r['teacher_gap_points']:+.2f}"
        within = "within" if c["within_points_of_teacher"] else "not within"
        above = "above" if c["above_ce_only"] else "not above"
        lines += ["", f"Target (issue 5: {target}) for `{arch_id}`: {met}. KD "
                      f"{fmt_mean_std(r['kd_top1_mean'], r['kd_top1_std'])} % vs the teacher's "
                      f"{teacher_top1:.2f} % ({gap} "
                      f"points: {within}); vs CE only {fmt_mean_std(r['ce_top1_mean'], r['ce_top1_std'])} % (KD gain "
                      f"{fmt_mean_std(r['gain_mean'], r['gain_std'])} points: {above}); MACs "
                      f"{'under' if c['under_macs_share'] else 'not under'} the share."]
    return lines + [""]

