"""The ``studentnas`` command line. Every subcommand has a Python twin in :mod:`studentnas`.

Exit codes: 0 ok, 2 bad input (one line on stderr, no traceback), 1 unexpected failure (the
traceback is shown with ``--debug``), 130 interrupted (resume with ``--resume``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from studentnas.errors import BadInputError, StudentNASError

FORMATTER = argparse.RawDescriptionHelpFormatter


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


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
The budget bounds every student; afterwards `studentnas pick RUN --budget SMALLER` answers any
tighter budget from the same run.

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


def _add_search(sub: argparse._SubParsersAction) -> None:
    from studentnas.search_job import DEFAULT_BATCH_SIZE, DEFAULT_CANDIDATES, DEFAULT_PROXY, DEFAULT_SEARCHER

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


def _run_search(args: argparse.Namespace) -> int:
    from studentnas.search_job import search
    from studentnas.table import front_table

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
    print(front_table(front, cfg["proxies"], top=args.top))
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


def _add_pick(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pick", help="best student of a run under a smaller budget", description=PICK_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("run", help="run directory of a `studentnas search`")
    p.add_argument("--budget", action="append", required=True, metavar="BUDGET",
                   help="the smaller budget, e.g. 2GFLOPs, 10Mparams, 30ms, 50%%MACs; repeatable")
    p.add_argument("--objective", metavar="PROXY", help="proxy score to maximise (default: the run's primary proxy)")
    p.add_argument("--json", action="store_true", help="print the pick as one JSON object")


def _run_pick(args: argparse.Namespace) -> int:
    import json

    from studentnas.picker import describe_cost, pick_student
    from studentnas.run import Run
    from studentnas.table import front_table

    run = Run(args.run)
    chosen = pick_student(run, args.budget, args.objective)
    if chosen.looser_than_run:
        print(f"studentnas pick: note: {', '.join(chosen.looser_than_run)} is looser than the run's own budget "
              f"({' + '.join(run.config.get('budget', []))}); the answer is the best the run found", file=sys.stderr)
    if args.json:
        print(json.dumps(chosen.to_dict(run.path), sort_keys=True))
        return 0
    cand = chosen.candidate
    where = f"rank {chosen.front_rank} on the run's front" if chosen.front_rank else "not on the run's front"
    print(f"best of {chosen.n_fitting} students of {run.path} within {chosen.budget.describe()} by "
          f"{chosen.objective}: {cand.id} ({describe_cost(cand.cost, ['macs', 'params', *chosen.budget.metrics])}; "
          f"{where})")
    print(front_table([cand], run.config.get("proxies", [chosen.objective])))
    print(f"export it: studentnas export {run.path} --id {cand.id} --out student.safetensors")
    return 0


EXPORT_HELP = """\
Materialise one student of a run as a timm-style module: FILE.safetensors (weights, with the
arch in its metadata) and FILE.json (arch, cost, scores). Load it with studentnas.load_student(FILE).

examples:
  studentnas export runs/r1 --rank 1 --out student.safetensors
  studentnas export runs/r1 --id 1907c76d9e67 --out students/r50.safetensors
"""


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a student of a run as safetensors + JSON", description=EXPORT_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("run", help="run directory of a `studentnas search`")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--rank", type=int, help="rank on the Pareto front (1 = best score)")
    which.add_argument("--id", dest="arch_id", help="candidate id (see candidates.jsonl)")
    p.add_argument("--out", required=True, help="output .safetensors path")


def _run_export(args: argparse.Namespace) -> int:
    from studentnas.export import export_student, read_student_meta

    path = export_student(args.run, args.out, rank=args.rank, arch_id=args.arch_id)
    meta = read_student_meta(path)
    print(f"wrote {path} and {path.with_suffix('.json')}: {meta['label']} "
          f"({meta['cost']['macs'] / 1e9:.3f} GMACs, {meta['cost']['params'] / 1e6:.2f} M params)")
    return 0


BENCH_HELP = """\
Validate proxies against ground truth.

  studentnas bench proxies ...   rank agreement of proxies with NAS-Bench-201 accuracies
"""

BENCH_PROXIES_HELP = """\
How well training-free proxies rank NAS-Bench-201 cells, against test accuracy after 200 epochs.

Samples --samples distinct cells (seeded), scores each with every proxy through one candidate view
(shared passes are computed once; #params and #macs are always included as baselines), and writes
--json OUT with per_arch (arch, accuracy, split, every score and its seconds), summary (Spearman,
Kendall, top-10% hit rate, regret and seconds per arch on the 'report' cells), summary_tune,
summary_all, timing and config (data used, batch size, seed, threads, versions).

Cells are split by a hash of (--split-seed, arch) into 'report' (a --holdout-fraction share) and
'tune' cells: choose anything you tune (e.g. --combine weights) on tune cells only. --fit LIST does
that for you: it fits the weights of a rank combination of LIST on the tune cells (coordinate ascent
over a small grid) and reports it, as fit[a:w+b:w], on the report cells.

Teacher-student proxies (diswot, kd_snip, ickd, ...) need --teacher NAME: a timm model, randomly
initialised (seeded by --seed) unless --teacher-checkpoint; its head gets the dataset's classes.
A random teacher's DisWOT ranks cells by how they resemble an untrained network, so read its
correlation with vanilla accuracy as such, not as a prediction of KD accuracy.

Resume is the default: scored cells go to OUT.partial.jsonl as they finish, and a rerun with the
same settings scores only new cells (or new proxies); --fresh starts over.

Data (--data): fashion-mnist (default; resized to 32x32, 16x16 for ImageNet16-120, 3 channels),
foolbox-cifar10 / foolbox-cifar100 (the 20 real CIFAR test images in the foolbox 3.3.4 wheel,
fetched with pip into ~/.cache/studentnas/foolbox, or foolbox-cifar10:/path/to/the.whl; all 20 are
used, whatever --batch-size), or any `studentnas search --data` spec.

--compare-published FILE: instead, score the cells of NASLib's published zero-cost file for
--dataset and report per proxy the Spearman correlation between our and the published scores, and
of both with the file's validation accuracy (--ground-truth is then optional, and adds the
correlation with test accuracy). This mode reports every cell; the tune/report split is not used.

examples:
  studentnas bench proxies --ground-truth ../shared/reference/nb201/nats_bench.csv --dataset cifar10 \\
      --samples 1000 --proxies nwot,synflow --json bench.json
  studentnas bench proxies --ground-truth analog-nasbench --samples 200 --json bench_analog.json
  studentnas bench proxies --ground-truth nats_bench.csv --dataset cifar100 --data foolbox-cifar100 \\
      --combine nwot+synflow --json c100.json
  studentnas bench proxies --ground-truth nats_bench.csv --fit nwot,synflow,meco,zico --json fit.json
  studentnas bench proxies --ground-truth nats_bench.csv --teacher resnet18 \
      --proxies diswot,diswot_relation,kd_snip,ickd --samples 300 --json diswot.json
  studentnas bench proxies --compare-published ../shared/reference/nb201/naslib_zc_nasbench201.json \\
      --dataset cifar10 --samples 100 --proxies nwot,synflow --json compare.json
"""


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from studentnas.bench.proxy_bench import DEFAULT_BATCH_SIZE, DEFAULT_HOLDOUT, DEFAULT_SAMPLES, DEFAULT_THREADS

    p = sub.add_parser("bench", help="validate proxies (and later searchers) against ground truth",
                       description=BENCH_HELP, formatter_class=FORMATTER)
    kinds = p.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK", parser_class=_Parser)
    q = kinds.add_parser("proxies", help="rank correlation of proxies with NAS-Bench-201 accuracy",
                         description=BENCH_PROXIES_HELP, formatter_class=FORMATTER)
    q.add_argument("--space", default="nb201", help="search space; only nb201 has ground truth (default: nb201)")
    q.add_argument("--ground-truth", metavar="PATH|analog-nasbench",
                   help="NATS-Bench CSV (e.g. ../shared/reference/nb201/nats_bench.csv) or analog-nasbench "
                        "(CIFAR-10 only; pip install 'studentnas[nasbench]')")
    q.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "ImageNet16-120"],
                   help="whose accuracy and class count (default: cifar10)")
    q.add_argument("--samples", type=int, metavar="N",
                   help=f"cells to score (default: {DEFAULT_SAMPLES}; with --compare-published: all published cells)")
    q.add_argument("--proxies", metavar="LIST",
                   help="comma list of proxies (default: every registered proxy that needs no teacher); "
                        "params and macs are always added")
    q.add_argument("--data", default="fashion-mnist",
                   help="calibration images: fashion-mnist (default), foolbox-cifar10[:WHEEL], "
                        "foolbox-cifar100[:WHEEL], cifar10:PATH, an ImageFolder directory, ...")
    q.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"calibration batch size (default: {DEFAULT_BATCH_SIZE}; smaller sets are used whole)")
    q.add_argument("--seed", type=int, default=0, help="seed of the cell sample, the batch and the students' init")
    q.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch CPU threads (default: {DEFAULT_THREADS})")
    q.add_argument("--json", dest="out", required=True, metavar="OUT", help="output JSON path")
    q.add_argument("--compare-published", metavar="PATH",
                   help="NASLib's zc_nasbench201.json: compare our scores with the published ones")
    q.add_argument("--holdout-fraction", type=float, default=DEFAULT_HOLDOUT, metavar="F",
                   help=f"share of cells marked 'report' (the rest 'tune'; default: {DEFAULT_HOLDOUT})")
    q.add_argument("--split-seed", type=int, default=0, help="seed of the tune/report split (default: 0)")
    q.add_argument("--combine", action="append", default=[], metavar="A+B[:W]",
                   help="add a rank combination of proxies, e.g. nwot+synflow or nwot:2+synflow:1; repeatable")
    q.add_argument("--fit", metavar="LIST|all",
                   help="add a rank combination of these proxies whose weights are fitted on the tune cells only "
                        "and reported on the report cells (e.g. --fit nwot,synflow,meco,zico or --fit all)")
    q.add_argument("--teacher", metavar="NAME",
                   help="a timm teacher (random init, seeded by --seed; head sized to the dataset) for the "
                        "teacher-student proxies: diswot, kd_snip, ickd, ... (default: none, and they are left out)")
    q.add_argument("--teacher-checkpoint", metavar="PATH", help="weights for --teacher (.pth/.safetensors)")
    again = q.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from OUT.partial.jsonl (the default; accepted for symmetry with `search`)")
    again.add_argument("--fresh", action="store_true", help="ignore OUT.partial.jsonl and score every cell again")
    q.add_argument("--quiet", action="store_true", help="no progress output")
    _add_bench_search(kinds)


BENCH_SEARCH_HELP = """\
How good are the cells a training-free search picks on NAS-Bench-201: for each of --seeds seeds,
--searcher runs --evals proxy evaluations (no training), picks the evaluated cell with the best
--proxy score, and that cell's test accuracy is looked up in --ground-truth afterwards. Random
search with the same proxy and evaluations always runs too, as the baseline.

A cell's score depends only on the cell (students are seeded by --score-seed and the cell), so each
cell is scored once and cached in OUT.scores.jsonl: more seeds, another searcher or a rerun after a
crash only score cells not seen yet.

--json OUT holds per-seed runs (searcher, seed, chosen arch, its accuracy and score, evaluations,
the best accuracy among the evaluated cells) and per searcher the mean, std, min and max of the
chosen accuracy and of the regret to the space optimum.

examples:
  studentnas bench search --space nb201 --ground-truth ../shared/reference/nb201/nats_bench.csv \
      --dataset cifar10 --proxy nwot --searcher evolution --evals 100 --seeds 10 --json search.json
  studentnas bench search --ground-truth nats_bench.csv --dataset cifar100 --proxy meco --json s100.json
"""


def _add_bench_search(kinds: argparse._SubParsersAction) -> None:
    from studentnas.bench.search_bench import DEFAULT_BATCH_SIZE, DEFAULT_EVALS, DEFAULT_SEEDS

    q = kinds.add_parser("search", help="accuracy of the NB201 cells a proxy-driven search picks",
                         description=BENCH_SEARCH_HELP, formatter_class=FORMATTER)
    q.add_argument("--space", default="nb201", help="search space; only nb201 has ground truth (default: nb201)")
    q.add_argument("--ground-truth", required=True, metavar="PATH|analog-nasbench",
                   help="NATS-Bench CSV (e.g. ../shared/reference/nb201/nats_bench.csv) or analog-nasbench")
    q.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "ImageNet16-120"],
                   help="whose accuracy and class count (default: cifar10)")
    q.add_argument("--proxy", default="nwot", help="the one proxy the search maximises (default: nwot)")
    q.add_argument("--searcher", default="evolution", help="searcher to benchmark (default: evolution; random "
                   "always runs as the baseline)")
    q.add_argument("--evals", type=int, default=DEFAULT_EVALS,
                   help=f"proxy evaluations per search (default: {DEFAULT_EVALS})")
    q.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"searches per searcher (default: {DEFAULT_SEEDS})")
    q.add_argument("--data", default="fashion-mnist", help="calibration images, as for `bench proxies` "
                   "(default: fashion-mnist)")
    q.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"calibration batch size (default: {DEFAULT_BATCH_SIZE})")
    q.add_argument("--score-seed", type=int, default=0, help="seed of the batch and the students' init (default: 0)")
    q.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    q.add_argument("--json", dest="out", required=True, metavar="OUT", help="output JSON path")
    q.add_argument("--fresh", action="store_true", help="ignore the OUT.scores.jsonl cache and score again")
    q.add_argument("--quiet", action="store_true", help="no progress output")


def _run_bench(args: argparse.Namespace) -> int:
    from studentnas.bench.proxy_bench import bench_proxies
    from studentnas.bench.summary import format_table

    if args.bench_command == "search":
        from studentnas.bench.search_bench import bench_search, format_search_table

        result = bench_search(out=args.out, ground_truth=args.ground_truth, dataset=args.dataset, proxy=args.proxy,
                              searcher=args.searcher, evals=args.evals, seeds=args.seeds, data=args.data,
                              batch_size=args.batch_size, score_seed=args.score_seed, threads=args.threads,
                              fresh=args.fresh, quiet=args.quiet, space=args.space)
        print(format_search_table(result))
        print(f"wrote {args.out}")
        return 0

    result = bench_proxies(out=args.out, ground_truth=args.ground_truth, dataset=args.dataset, samples=args.samples,
                           proxies=args.proxies, data=args.data, batch_size=args.batch_size, seed=args.seed,
                           threads=args.threads, compare_published=args.compare_published,
                           holdout_fraction=args.holdout_fraction, split_seed=args.split_seed, combine=args.combine,
                           fit=args.fit, teacher=args.teacher, teacher_checkpoint=args.teacher_checkpoint,
                           fresh=args.fresh, quiet=args.quiet, space=args.space)
    print(format_table(result))
    print(f"wrote {args.out}")
    return 0


LIST_HELP = """\
List what is registered (plugins in search_spaces/ and proxies/, entry points, $STUDENTNAS_PLUGINS).

examples:
  studentnas list spaces
  studentnas list proxies
  studentnas list losses
  studentnas list teachers 'resnet*'
"""


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list spaces, proxies, searchers, losses or teachers", description=LIST_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("what", choices=["spaces", "proxies", "searchers", "losses", "teachers"])
    p.add_argument("filter", nargs="?", help="shell-style pattern, e.g. 'res*'")


def _run_list(args: argparse.Namespace) -> int:
    from studentnas.registry import PROXIES, SEARCHERS, SPACES

    if args.what == "teachers":
        import timm

        names = timm.list_models(args.filter or "")
    else:
        from studentnas.distill import LOSSES

        registry = {"spaces": SPACES, "proxies": PROXIES, "searchers": SEARCHERS, "losses": LOSSES}[args.what]
        found = registry.list(args.filter)
        width = max((len(n) for n in found), default=0)
        names = []
        for name in found:
            doc = (registry.get(name).__doc__ or "").strip().splitlines()
            names.append(f"{name:{width}s}  {doc[0] if doc else ''}")
    print("\n".join(names))
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


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="Pareto plots of a run: report.png and report.html", description=REPORT_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("run", help="run directory of a `studentnas search`")


def _run_report(args: argparse.Namespace) -> int:
    from studentnas.report import write_report

    png, html = write_report(args.run)
    print(f"wrote {png} and {html}")
    return 0


def _add_teacher(sub: argparse._SubParsersAction) -> None:
    from studentnas.distill.commands import add_teacher

    add_teacher(sub, _Parser)


def _run_teacher(args: argparse.Namespace) -> int:
    from studentnas.distill.commands import run_teacher

    return run_teacher(args)


def _add_distill(sub: argparse._SubParsersAction) -> None:
    from studentnas.distill.commands import add_distill

    add_distill(sub)


def _run_distill(args: argparse.Namespace) -> int:
    from studentnas.distill.commands import run_distill

    return run_distill(args)


COMMANDS = {"search": (_add_search, _run_search), "pick": (_add_pick, _run_pick),
            "export": (_add_export, _run_export), "teacher": (_add_teacher, _run_teacher),
            "distill": (_add_distill, _run_distill),
            "bench": (_add_bench, _run_bench), "report": (_add_report, _run_report),
            "list": (_add_list, _run_list)}


def build_parser() -> argparse.ArgumentParser:
    from studentnas import __version__

    parser = _Parser(prog="studentnas", formatter_class=FORMATTER, description=(
        "Find the best student network to distil a teacher into, under a hardware budget.\n\n"
        "  studentnas search --teacher resnet101 --budget 5GFLOPs     # ranked Pareto front of students\n"
        "  studentnas pick runs/resnet101-5GFLOPs --budget 2GFLOPs    # best student under a smaller budget\n"
        "  studentnas export runs/resnet101-5GFLOPs --rank 1 --out s.safetensors\n"
        "  studentnas teacher train --model resnet18 --data fashion-mnist --image-size 32 --out t.safetensors\n"
        "  studentnas distill runs/resnet101-5GFLOPs --top 2 --data fashion-mnist --baseline   # KD + HPO, Ray Tune\n"
        "  studentnas bench proxies --ground-truth nats_bench.csv --json bench.json\n"
        "  studentnas report runs/resnet101-5GFLOPs                   # report.png + report.html\n"
        "  studentnas list spaces|proxies|searchers|losses|teachers"))
    parser.add_argument("--version", action="version", version=f"studentnas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add, _run in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except BadInputError as err:
        print(f"studentnas {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"studentnas {args.command}: interrupted; finished work is saved (search: rerun with --resume)",
              file=sys.stderr)
        return 130
    except StudentNASError as err:
        if args.debug:
            raise
        print(f"studentnas {args.command}: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - last resort: one line unless --debug
        if args.debug:
            raise
        print(f"studentnas {args.command}: unexpected error: {type(err).__name__}: {err} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
