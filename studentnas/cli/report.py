"""``studentnas report RUN``: the Pareto front of a run as ``report.png`` (matplotlib) and ``report.html`` (plotly).

One panel per cost the run has: score vs GMACs (papers' GFLOPs) always, score vs batch-1 CPU
latency when latencies were measured (a latency budget or objective). In each panel the front is
recomputed for that cost (:func:`studentnas.core.pareto.pareto_indices`: higher score, lower cost) and
drawn as a staircase of numbered points (1 = best score); dominated candidates are grey. The
teacher's cost and the budget limit are vertical lines. The HTML has the same panels, and hovering
a point shows its id, arch, score and costs. The run is read through the public API
(:func:`studentnas.load_run` and ``Run.to_dataframe``), and both files are written atomically.

Example::

    >>> png, html = write_report("runs/r1")  # needs a run  # doctest: +SKIP
    >>> png.name, html.name  # the report above  # doctest: +SKIP
    ('report.png', 'report.html')
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studentnas.core.budget import Budget
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError
from studentnas.core.pareto import pareto_indices
from studentnas.engine.rundir import Run, load_run
from studentnas.runfiles.atomic import write_atomic

PNG, HTML = "report.png", "report.html"
MAX_LABELLED = 12  # front points numbered in the PNG; the rest are only drawn (all are in the HTML)


@dataclass(frozen=True)
class CostAxis:
    """A cost a panel plots: the dataframe column, the axis label, the factor to its unit."""

    metric: str  # as in Cost.value / Budget constraints
    column: str
    label: str
    scale: float
    unit: str


COST_AXES = {
    "macs": CostAxis("macs", "macs", "GMACs (papers' GFLOPs)", 1e-9, "GMACs"),
    "latency": CostAxis("latency", "latency_ms", "batch-1 CPU latency (ms)", 1.0, "ms"),
}


@dataclass
class Panel:
    """What one panel shows: the plotted rows, which of them are on the front, and the reference lines."""

    axis: CostAxis
    rows: Any  # pandas DataFrame: ok candidates with this cost measured
    front: list[int]  # row positions on the front, best score first
    teacher: float | None  # teacher cost in the axis unit
    limit: float | None  # budget limit in the axis unit


@dataclass
class ReportData:
    title: str
    subtitle: str
    score_label: str
    panels: list[Panel]


def _budget_limits(config: dict[str, Any]) -> dict[str, float]:
    """The run's budget as absolute limits per metric (the tightest when repeated)."""
    try:
        budget = Budget.parse(config.get("budget") or [])
        budget = budget.resolve(Cost.from_dict(config["teacher_cost"])) if "teacher_cost" in config else budget
    except (BadInputError, KeyError):
        return {}
    limits: dict[str, float] = {}
    for c in budget.constraints:
        if not c.is_relative:
            limits[c.metric] = min(limits.get(c.metric, math.inf), c.limit)
    return limits


def report_data(run: Run) -> ReportData:
    """Everything the two writers draw, computed once from ``run`` (bad runs raise ``BadInputError``)."""
    config = run.config
    objective = run.objective
    df = run.to_dataframe()
    column = f"score_{objective}"
    if df.empty or column not in df or not (df["status"] == "ok").any():
        raise BadInputError(f"run '{run.path}' has no scored candidates yet ({len(df)} journalled); "
                            "let `studentnas search` finish (or --resume it) before `studentnas report`")
    ok = df[(df["status"] == "ok") & df[column].map(lambda v: isinstance(v, float) and math.isfinite(v))]
    teacher = config.get("teacher_cost", {})
    limits = _budget_limits(config)
    panels = []
    for metric, axis in COST_AXES.items():
        rows = ok[ok[axis.column].notna()].reset_index(drop=True)
        if rows.empty:
            continue
        front = pareto_indices(list(zip(rows[column], rows[axis.column])))
        teacher_value = Cost.from_dict(teacher).value(metric) if teacher else None
        panels.append(Panel(axis, rows, front, None if teacher_value is None else teacher_value * axis.scale,
                            limits[metric] * axis.scale if metric in limits else None))
    counts = df["status"].value_counts().to_dict()
    space = config.get("space", {}).get("name", "?")
    title = (f"Students of {config.get('teacher', '?')} in space '{space}': budget "
             f"{' + '.join(config.get('budget', []))}, proxy {objective}")
    over = f", {counts['infeasible']} over a measured budget" if counts.get("infeasible") else ""
    subtitle = (f"{len(df)} candidates: {counts.get('ok', 0)} scored, {counts.get('failed', 0)} failed{over}. "
                f"Front: no other student has a higher score at a lower cost. Run: {run.path}")
    return ReportData(title, subtitle, f"{objective} score (higher is better)", panels)


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    write_atomic(path, write, suffix=path.suffix)


def _draw_panel(ax: Any, panel: Panel, score_column: str, score_label: str, teacher_name: str) -> None:
    rows, axis = panel.rows, panel.axis
    x, y = rows[axis.column] * axis.scale, rows[score_column]
    on = set(panel.front)
    dominated = [i for i in range(len(rows)) if i not in on]
    ax.scatter(x.iloc[dominated], y.iloc[dominated], s=18, color="0.7", label=f"dominated ({len(dominated)})",
               zorder=2)
    fx, fy = x.iloc[panel.front].to_numpy(), y.iloc[panel.front].to_numpy()
    order = fx.argsort()
    ax.step(fx[order], fy[order], where="post", color="tab:blue", linewidth=1.2, alpha=0.6, zorder=3)
    ax.scatter(fx, fy, s=46, color="tab:blue", edgecolor="white", linewidth=0.8, zorder=4,
               label=f"Pareto front ({len(fx)}; 1 = best score)")
    for rank, (px, py) in enumerate(zip(fx[:MAX_LABELLED], fy[:MAX_LABELLED]), start=1):
        ax.annotate(str(rank), (px, py), textcoords="offset points", xytext=(5, 5), fontsize=9, color="tab:blue",
                    fontweight="bold", zorder=5)
    if panel.teacher is not None:
        ax.axvline(panel.teacher, color="tab:red", linestyle="--", linewidth=1.5,
                   label=f"teacher {teacher_name}: {panel.teacher:.3g} {axis.unit}")
    if panel.limit is not None:
        ax.axvline(panel.limit, color="tab:green", linestyle=":", linewidth=1.8,
                   label=f"budget: {panel.limit:.3g} {axis.unit}")
    values = [v for v in (x.min(), x.max(), panel.teacher, panel.limit) if v is not None and v > 0]
    if values and max(values) / min(values) > 50:
        ax.set_xscale("log")
    ax.set_xlabel(axis.label, fontsize=11)
    ax.set_ylabel(score_label, fontsize=11)
    note = "" if panel.teacher is not None else " (teacher not measured)"
    ax.set_title(f"{score_label.split(' ')[0]} score vs {axis.label}{note}", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc="best", framealpha=0.9)


def write_png(data: ReportData, path: Path, score_column: str, teacher_name: str) -> None:
    """The matplotlib figure (Agg canvas: no display, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(data.panels)
    width = 9.0 if n == 1 else 7.5 * n
    fig = Figure(figsize=(width, 6.4), dpi=130, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, panel in zip(axes, data.panels):
        _draw_panel(ax, panel, score_column, data.score_label, teacher_name)
    chars = int(width * 13)  # about 13 characters per inch at these font sizes
    fig.suptitle("\n".join([*textwrap.wrap(data.title, chars), *textwrap.wrap(data.subtitle, int(chars * 1.1))]),
                 fontsize=11)
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def write_html(data: ReportData, path: Path, score_column: str, teacher_name: str) -> None:
    """The plotly figure, self-contained (plotly.js inlined, so it opens offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(data.panels), subplot_titles=[p.axis.label for p in data.panels])
    hover = ("<b>%{customdata[0]}</b> (front rank %{customdata[1]})<br>%{customdata[2]}<br>"
             f"{score_column[6:]}: %{{y:.4g}}<br>%{{customdata[3]:.4g}} GMACs, %{{customdata[4]:.3g}} M params, "
             "latency %{customdata[5]}<extra></extra>")
    for col, panel in enumerate(data.panels, start=1):
        rows, axis = panel.rows, panel.axis
        rank = {pos: r for r, pos in enumerate(panel.front, start=1)}
        custom = [[row.id, rank.get(i, "-"), row.label, row.macs / 1e9, row.params / 1e6,
                   "-" if math.isnan(row.latency_ms) else f"{row.latency_ms:.3g} ms"]
                  for i, row in enumerate(rows.itertuples())]
        for name, members, style in (("dominated", [i for i in range(len(rows)) if i not in rank],
                                      dict(color="lightgrey", size=7)),
                                     ("Pareto front", panel.front, dict(color="royalblue", size=10))):
            fig.add_trace(go.Scatter(
                x=[rows[axis.column].iloc[i] * axis.scale for i in members], y=[rows[score_column].iloc[i]
                                                                                for i in members],
                mode="markers", marker=style, name=f"{name} ({axis.unit})", customdata=[custom[i] for i in members],
                hovertemplate=hover, legendgroup=name), row=1, col=col)
        if panel.teacher is not None:
            fig.add_vline(x=panel.teacher, line_dash="dash", line_color="red", row=1, col=col,
                          annotation_text=f"teacher {teacher_name}", annotation_position="top left")
        if panel.limit is not None:
            fig.add_vline(x=panel.limit, line_dash="dot", line_color="green", row=1, col=col,
                          annotation_text="budget", annotation_position="bottom right")
        fig.update_xaxes(title_text=axis.label, row=1, col=col)
        fig.update_yaxes(title_text=data.score_label, row=1, col=col)
    fig.update_layout(title=dict(text=f"{data.title}<br><sup>{data.subtitle}</sup>"), template="plotly_white",
                      height=600, width=700 * len(data.panels) + 100, hovermode="closest")
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    _atomic_write(path, lambda tmp: Path(tmp).write_text(html, encoding="utf-8"))


def write_report(run_path: str | Path) -> tuple[Path, Path]:
    """Write ``report.png`` and ``report.html`` into the run directory; returns their paths."""
    path = Path(run_path)
    if not path.is_dir():
        raise BadInputError(f"run directory '{path}' does not exist; pass the --out folder of a `studentnas search`")
    run = load_run(path)
    data = report_data(run)
    column, teacher = f"score_{run.objective}", run.config.get("teacher", "?")
    png, html = path / PNG, path / HTML
    write_png(data, png, column, teacher)
    write_html(data, html, column, teacher)
    return png, html
