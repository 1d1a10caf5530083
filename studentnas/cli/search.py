"""The ``search``, ``pick``, ``export`` and ``report`` subcommands of the ``studentnas`` CLI: make a run
directory and read it (registered in :mod:`studentnas.cli.main`; their Python twins are :func:`studentnas.search`,
:func:`studentnas.pick`, :func:`studentnas.export_student` and :func:`studentnas.cli.report.write_report`).

Example:
    >>> parse_duration("1.5h"), parse_duration("90")
    (5400.0, 90.0)
"""

from __future__ import annotations

import argparse
import re
import sys

FORMATTER = argparse.RawDescriptionHelpFormatter


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``1.5h``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration; use e.g. 90s, 10m or 1h")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


SEARCH_HELP = """\
Training-free search for the best students of a teacher under a hardware budget.

Every candidate is proposed by the searcher, checked against the budget with the space's analytic
cost (never built when over budget), built as a timm-style module and scored by the proxies. The run
directory gets run.json, candidates.jsonl (one line per candidate, the resume journal) and
pareto.json (non-dominated students: primary proxy score up, MACs down, best score first).

multi-objective search (--objectives A,B[,C...]): proxy scores are maximised, cost metrics (macs,
params, latency, memory) minimised. pareto.json then holds the non-dominated front of exactly those
objectives, and run.json its hypervolume with the reference point it was measured against (cost
divided by the budget, score scaled from the run's worst (1) to best (0); reference = 1 on every
axis). Latency objectives are measured for every candidate (batch 1, this machine). Searchers:
  evolution     regularised evolution (DisWOT's); several objectives: Pareto tournament
  random        uniform samples, the baseline
  nsga2         pymoo NSGA-II on the integer encoding, the budget as a constraint
  optuna-tpe    Optuna TPE (multi-objective TPE with --objectives); study in RUN/optuna.journal
  optuna-nsga2  Optuna's NSGA-II sampler; study in RUN/optuna.journal
The budget bounds every student: evolution and random repair a proposal over it (shrink it toward
the space's cheapest arch, one gene at a time, until it fits), the others tell their optimiser it is
infeasible. A search stops early when no new arch fits (even the cheapest is over it); afterwards
`studentnas pick RUN --budget SMALLER` answers any tighter budget from the same run.

FLOPs are multiply-accumulates (MACs), as in the ResNet/DisWOT papers: resnet50 = 4.1 GFLOPs.

budget grammar (repeat --budget to combine; all must hold):
  5GFLOPs  5 GFLOPs  5e9FLOPs  800MMACs   MACs of one image at the input size
  25Mparams                               parameters
  30ms                                    batch-1 latency on this machine (measured)
  200MB                                   peak inference memory (weights + activations)
  60%params  50%MACs                      a share of the teacher

examples:
  studentnas search --teacher resnet101 --budget 5GFLOPs
  studentnas search --teacher resnet50 --budget 2GFLOPs --budget 10Mparams --proxy nwot,synflow
  studentnas search --teacher resnet18 --space nb201 --image-size 32 --budget 100MMACs --data fashion-mnist
  studentnas search --teacher resnet50 --budget 60%params --teacher-checkpoint teacher.safetensors
  studentnas search --teacher resnet101 --budget 5GFLOPs --out runs/r1 --resume   # continue a killed run
  studentnas search --teacher resnet50 --budget 4GFLOPs --objectives diswot,macs --searcher nsga2
  studentnas search --teacher resnet18 --space nb201 --image-size 32 --budget 100MMACs \\
      --objectives nwot,latency --searcher optuna-tpe
  studentnas search --teacher resnet101 --budget 5GFLOPs --workers 2              # 2 local Ray workers
  studentnas search --teacher resnet101 --budget 5GFLOPs --ray-address auto       # on this Ray cluster

parallel runs (--workers N > 1 or --ray-address): the teacher and calibration batch go to each worker
once; every candidate is journalled as it finishes, with its worker (host:pid@node_ip/node_id); a
worker that dies mid-candidate is replaced and the candidate scored again. Scores do not depend on
the workers; up to 2N candidates are asked ahead of the searcher's feedback, so an evolution run's
candidates can differ from a serial run's (random search asks the same ones).
"""


def add_search(sub: argparse._SubParsersAction) -> None:
    from studentnas.engine.setup import DEFAULT_BATCH_SIZE, DEFAULT_CANDIDATES, DEFAULT_PROXY, DEFAULT_SEARCHER

    p = sub.add_parser("search", help="training-free search for students under a budget", description=SEARCH_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("--teacher", required=True, help="timm model name of the teacher, e.g. resnet101")
    p.add_argument("--teacher-checkpoint", metavar="PATH", help="teacher weights (.pth/.safetensors state dict)")
    p.add_argument("--pretrained", action="store_true", help="teacher weights from timm's hub (needs network)")
    p.add_argument("--budget", action="append", required=True, metavar="BUDGET",
                   help="hardware budget, e.g. 5GFLOPs, 25Mparams, 30ms, 200MB, 60%%params; repeatable")
    p.add_argument("--space", help="search space (default: the one derived from the teacher; "
                                   "see `studentnas list spaces`)")
    p.add_argument("--proxy", default=None,
                   help=f"comma list of proxies, the first is primary (default: {DEFAULT_PROXY}, or the proxies "
                        "named in --objectives, which are then scored first)")
    p.add_argument("--objectives", metavar="LIST",
                   help="multi-objective search over this comma list: proxy scores up, cost metrics (macs, params, "
                        "latency, memory) down, e.g. diswot,macs or nwot,latency (default: the primary proxy, "
                        "with a front of it vs MACs)")
    p.add_argument("--searcher", default=DEFAULT_SEARCHER,
                   help=f"evolution, random, nsga2, optuna-tpe or optuna-nsga2 (default: {DEFAULT_SEARCHER}; "
                        "see `studentnas list searchers`)")
    p.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES, metavar="N",
                   help=f"number of candidates to evaluate (default: {DEFAULT_CANDIDATES})")
    p.add_argument("--time-limit", type=parse_duration, metavar="DURATION",
                   help="stop after this long, e.g. 90s, 10m, 1h (default: none)")
    p.add_argument("--data", help="calibration images: fashion-mnist, cifar10:PATH, cifar100:PATH or an "
                                  "ImageFolder directory (default: the shipped Fashion-MNIST sample)")
    p.add_argument("--image-size", type=int, metavar="PX", help="input resolution (default: the teacher's)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"calibration batch size (default: {DEFAULT_BATCH_SIZE})")
    p.add_argument("--seed", type=int, default=0, help="seed of the teacher init, batch, students, searcher")
    p.add_argument("--out", help="run directory (default: runs/<teacher>-<budget>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (or start it)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="score N candidates at a time on Ray workers (default: 1, in this process, no Ray; "
                        "with --ray-address: one per cluster CPU)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="run the workers on an existing Ray cluster: auto, HOST:PORT (e.g. 10.0.0.5:6379) or "
                        "ray://HOST:10001 (default: this machine)")
    p.add_argument("--top", type=int, default=10, help="rows of the front to print (default: 10)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run_search(args: argparse.Namespace) -> int:
    from studentnas.cli.table import front_table
    from studentnas.engine.search import search

    run = search(teacher=args.teacher, budget=args.budget, space=args.space, proxy=args.proxy,
                 objectives=args.objectives, searcher=args.searcher, candidates=args.candidates,
                 time_limit=args.time_limit, data=args.data,
                 image_size=args.image_size, batch_size=args.batch_size, seed=args.seed, out=args.out,
                 resume=args.resume, quiet=args.quiet, teacher_checkpoint=args.teacher_checkpoint,
                 pretrained=args.pretrained, workers=args.workers, ray_address=args.ray_address)
    cfg = run.config
    front = run.pareto
    axes = " vs ".join("GMACs (papers' GFLOPs)" if o == "macs" else o for o in run.objectives)
    print(f"{cfg['n_ok']} of {cfg['n_candidates']} candidates scored ({cfg['n_failed']} failed); "
          f"{len(front)} on the Pareto front of {axes}, hypervolume {cfg.get('hypervolume', 0.0):.4f}. "
          f"Run: {run.path}")
    print(front_table(front, cfg["proxies"], run.space, top=args.top))
    return 0


PICK_HELP = """\
The best student of a finished search under a smaller budget, without searching again.

One run answers every budget up to its own: among the run's scored candidates that fit --budget,
the one with the best --objective score (default: the run's primary proxy; ties go to fewer MACs).
Budgets use the search grammar (repeat --budget to combine); shares such as 50%params are taken of
the run's teacher. Latency (30ms) and memory (200MB) budgets need a run that measured them.

A budget tighter than every student is bad input (exit status 2): the message names the smallest
student on the run's front and its cost. A budget looser than the run's own is answered from what
the run searched (a note says so).

examples:
  studentnas pick runs/resnet101-5GFLOPs --budget 2GFLOPs
  studentnas pick runs/r1 --budget 1.5GFLOPs --budget 10Mparams --objective synflow
  studentnas pick runs/r1 --budget 30%MACs --json
  studentnas export runs/r1 --id $(studentnas pick runs/r1 --budget 2GFLOPs --json | jq -r .id) --out s.safetensors
"""


def add_pick(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pick", help="best student of a run under a smaller budget", description=PICK_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("run", help="run directory of a `studentnas search`")
    p.add_argument("--budget", action="append", required=True, metavar="BUDGET",
                   help="the smaller budget, e.g. 2GFLOPs, 10Mparams, 30ms, 50%%MACs; repeatable")
    p.add_argument("--objective", metavar="PROXY", help="proxy score to maximise (default: the run's primary proxy)")
    p.add_argument("--json", action="store_true", help="print the pick as one JSON object")


def run_pick(args: argparse.Namespace) -> int:
    import json

    from studentnas.cli.table import front_table
    from studentnas.core.cost import describe_cost
    from studentnas.engine.pick import pick_student
    from studentnas.engine.rundir import Run

    run = Run(args.run)
    chosen = pick_student(run, args.budget, args.objective)
    if chosen.looser_than_run:
        print(f"studentnas pick: note: {', '.join(chosen.looser_than_run)} is looser than the run's own budget "
              f"({' + '.join(run.config.get('budget', []))}); the answer is the best the run found", file=sys.stderr)
    if args.json:
        print(json.dumps(chosen.to_dict(run), sort_keys=True))
        return 0
    cand = chosen.candidate
    where = f"rank {chosen.front_rank} on the run's front" if chosen.front_rank else "not on the run's front"
    print(f"best of {chosen.n_fitting} students of {run.path} within {chosen.budget.describe()} by "
          f"{chosen.objective}: {cand.id} ({describe_cost(cand.cost, ['macs', 'params', *chosen.budget.metrics])}; "
          f"{where})")
    print(front_table([cand], run.config.get("proxies", [chosen.objective]), run.space))
    print(f"export it: studentnas export {run.path} --id {cand.id} --out student.safetensors")
    return 0


EXPORT_HELP = """\
Materialise one student of a run as a timm-style module: FILE.safetensors (weights, with the
arch in its metadata) and FILE.json (arch, cost, scores). Load it with studentnas.load_student(FILE).

examples:
  studentnas export runs/r1 --rank 1 --out student.safetensors
  studentnas export runs/r1 --id 1907c76d9e67 --out students/r50.safetensors
"""


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a student of a run as safetensors + JSON", description=EXPORT_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("run", help="run directory of a `studentnas search`")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--rank", type=int, help="rank on the Pareto front (1 = best score)")
    which.add_argument("--id", dest="arch_id", help="candidate id (see candidates.jsonl)")
    p.add_argument("--out", required=True, help="output .safetensors path")


def run_export(args: argparse.Namespace) -> int:
    from studentnas.engine.export import export_student
    from studentnas.runfiles.models import read_model_meta
    from studentnas.runfiles.paths import check_writable_file

    check_writable_file(args.out, "--out", example="student.safetensors")
    path = export_student(args.run, args.out, rank=args.rank, arch_id=args.arch_id)
    meta = read_model_meta(path)
    print(f"wrote {path} and {path.with_suffix('.json')}: {meta['label']} "
          f"({meta['cost']['macs'] / 1e9:.3f} GMACs, {meta['cost']['params'] / 1e6:.2f} M params)")
    return 0



REPORT_HELP = """\
Pictures of a run's Pareto front: RUN/report.png (matplotlib) and RUN/report.html (plotly,
interactive: hover a point for its id, arch, score and costs).

One panel per cost: score vs GMACs (papers' GFLOPs), and score vs batch-1 CPU latency when the run
measured latencies (a latency budget). In each panel the front (higher score, lower cost) is drawn
as numbered blue points (1 = best score), dominated students are grey, and the teacher's cost and
the budget are vertical lines. Reads the run through studentnas.load_run(RUN).to_dataframe().

examples:
  studentnas report runs/resnet101-5GFLOPs
"""


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="Pareto plots of a run: report.png and report.html", description=REPORT_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("run", help="run directory of a `studentnas search`")


def run_report(args: argparse.Namespace) -> int:
    from studentnas.cli.report import write_report

    png, html = write_report(args.run)
    print(f"wrote {png} and {html}")
    return 0
