"""The ``bench proxies``, ``bench search`` and ``bench study`` subcommands of the ``studentnas`` CLI (registered in
:mod:`studentnas.cli.main`; their Python twins are :func:`studentnas.bench.proxy_bench.bench_proxies`,
:func:`studentnas.bench.search_bench.bench_search` and the studies of :mod:`studentnas.cli.study`)."""

from __future__ import annotations

import argparse

from studentnas.cli.study import add_study, run_study

FORMATTER = argparse.RawDescriptionHelpFormatter


BENCH_HELP = """\
Validate proxies and searchers against NAS-Bench-201 ground truth (no training anywhere).

  studentnas bench proxies ...   rank agreement of proxies with NAS-Bench-201 accuracies
  studentnas bench search ...    accuracy of the cells a proxy-driven search picks (random search as baseline)
  studentnas bench study ...     studies with real distillations: search quality, KD vs CE only (these train)
  studentnas bench kd ...        build a KD ground truth: distil students of a MACs band from a trained teacher
"""

BENCH_PROXIES_HELP = """\
How well training-free proxies rank students against a ground truth: NAS-Bench-201 cells against
their test accuracy after 200 epochs, or the students of a `studentnas bench kd` file (any space)
against their mean KD top-1 (and, where trained, their CE-only top-1).

Samples --samples distinct cells (seeded; a KD file: all its students), scores each with every proxy
through one candidate view (shared passes are computed once; #params and #macs are always included as
baselines), and writes --json OUT with per_arch (arch, accuracy, split, every score and its seconds),
summary (on the 'report' cells: Spearman, Kendall, top-10% hit rate, regret@10%, @1 and @5, and the
within-band pairwise accuracy pairwise_10/pairwise_20: among pairs of cells whose MACs are within
10 % / 20 % of each other, the share the proxy orders as the ground truth does, with their counts
pairs_10/pairs_20; the figure that matters under a budget, where every candidate sits near its edge),
summary_tune, summary_all, summary_ce (a KD file's CE-only students against their CE-only top-1),
timing and config (data used, batch size, seed, threads, versions).

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
  studentnas bench proxies --ground-truth nats_bench.csv --teacher resnet18 \\
      --proxies diswot,diswot_relation,kd_snip,ickd --samples 300 --json diswot.json
  studentnas bench proxies --ground-truth studentnas/assets/kd_ground_truth/kd_ground_truth.json \\
      --teacher cifar_resnet20 --teacher-checkpoint studentnas/assets/cifar_resnet20_fashion_mnist.safetensors \\
      --json kd_proxies.json                       # the shipped KD ground truth (40 students)
  studentnas bench proxies --compare-published ../shared/reference/nb201/naslib_zc_nasbench201.json \\
      --dataset cifar10 --samples 100 --proxies nwot,synflow --json compare.json
"""


def add_bench(sub: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser]) -> None:
    from studentnas.bench.proxy_bench import DEFAULT_BATCH_SIZE, DEFAULT_HOLDOUT, DEFAULT_SAMPLES, DEFAULT_THREADS

    p = sub.add_parser("bench", help="validate proxies and searchers against NAS-Bench-201",
                       description=BENCH_HELP, formatter_class=FORMATTER)
    kinds = p.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK", parser_class=parser_class)
    q = kinds.add_parser("proxies", help="rank correlation of proxies with NAS-Bench-201 accuracy",
                         description=BENCH_PROXIES_HELP, formatter_class=FORMATTER)
    q.add_argument("--space", help="search space: nb201 for NAS-Bench-201 ground truth (default), or the space "
                   "a `bench kd` file names (default: that space)")
    q.add_argument("--ground-truth", metavar="PATH|analog-nasbench",
                   help="NATS-Bench CSV (e.g. ../shared/reference/nb201/nats_bench.csv), analog-nasbench "
                        "(CIFAR-10 only; pip install 'studentnas[nasbench]'), or a kd_ground_truth.json/.csv "
                        "written by `studentnas bench kd` (any space; ranked against mean KD top-1)")
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
    add_study(kinds, parser_class)
    _add_bench_kd(kinds)


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


def run_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "study":
        return run_study(args)
    if args.bench_command == "kd":
        return _run_bench_kd(args)
    from pathlib import Path

    from studentnas.bench.proxy_bench import bench_proxies
    from studentnas.bench.summary import format_table
    from studentnas.runfiles.paths import check_writable_file

    if args.bench_command in ("proxies", "search"):
        check_writable_file(Path(args.out).expanduser(), "--json", example=f"{args.bench_command}.json")
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


BENCH_KD_HELP = """\
Build a KD ground truth: which students of a space distil best from a trained teacher, measured.

Draws --students N archs of the space (default: the one derived from the teacher, as `studentnas
search` does) spread evenly in MACs over --band LO:HI of the teacher's MACs (the band cut into N bins,
one arch per bin, seeded by --seed), adds every --student, and distils each from the teacher with
one fixed recipe (--epochs, --lr, --temperature, --kd-weight, --ce-weight, --batch-size on
--train-images images), once per seed of --seeds; --ce-only N also trains N of them (spread over
MACs) with cross-entropy only, so the KD gain shows. Each student is scored by test top-1 on
--test-images images (default: the whole test split), and so is the teacher.

Writes to --out: kd_ground_truth.json and kd_ground_truth.csv (arch JSON, id, space, MACs, params,
KD top-1 per seed and mean, CE-only top-1 where trained, the recipe, the teacher's top-1,
provenance), journal.jsonl (one line per finished training) and config.json (the run's identity).
Give either file to `studentnas bench proxies --ground-truth FILE` to rank proxies against it.

Trainings run in parallel as Ray tasks of one CPU each: a local Ray with --workers N CPUs (default:
all), or an existing cluster with --ray-address (the --out folder and the teacher checkpoint must
then be on a file system every node sees); --workers 1 trains here, one after the other.

How long: one training costs about what `studentnas distill` does for the same student and recipe;
students x seeds (+ CE-only x seeds) trainings in all, spread over the workers. A killed run loses at
most the epochs in flight: rerun the same command with --resume and only the missing (student,
seed, mode) trainings run, each from its last epoch checkpoint. --resume refuses a folder built
from another teacher or recipe; with more --seeds than the folder has (0,1 -> 0,1,2) it trains only
the new seeds, which is how a noisy ground truth is sharpened.

examples:
  studentnas teacher train --model resnet18 --data fashion-mnist --epochs 3 --image-size 32 --out teacher.safetensors
  studentnas bench kd --teacher resnet18 --teacher-checkpoint teacher.safetensors --band 10%:40% \\
      --students 40 --seeds 0,1 --ce-only 12 --epochs 6 --out runs/kd-truth
  studentnas bench kd ... --out runs/kd-truth --resume                  # after a crash or a kill
  studentnas bench kd ... --seeds 0,1,2 --out runs/kd-truth --resume    # add a seed to every student
  studentnas bench proxies --ground-truth runs/kd-truth/kd_ground_truth.json --teacher resnet18 \\
      --teacher-checkpoint teacher.safetensors --json kd_proxies.json
"""


def _add_bench_kd(kinds: argparse._SubParsersAction) -> None:
    q = kinds.add_parser("kd", help="build a KD ground truth (distil students of a MACs band; this trains)",
                         description=BENCH_KD_HELP, formatter_class=FORMATTER)
    q.add_argument("--teacher", required=True, metavar="NAME", help="the teacher's timm name, e.g. resnet18")
    q.add_argument("--teacher-checkpoint", required=True, metavar="PATH",
                   help="the trained teacher's weights (.safetensors/.pth), e.g. from `studentnas teacher train`")
    q.add_argument("--space", help="search space of the students (default: derived from the teacher)")
    q.add_argument("--band", default="10%:40%", metavar="LO:HI",
                   help="MACs band as shares of the teacher's MACs (default: 10%%:40%%)")
    q.add_argument("--students", type=int, default=8, metavar="N", help="students drawn in the band (default: 8)")
    q.add_argument("--student", action="append", default=[], metavar="ARCH",
                   help="a named extra student: its arch JSON (as in kd_ground_truth.json) or the space's text "
                        "form, e.g. a label of kd_ground_truth.csv (repeatable)")
    q.add_argument("--seeds", default="0,1", metavar="LIST", help="training seeds, comma-separated (default: 0,1)")
    q.add_argument("--ce-only", type=int, default=0, metavar="N",
                   help="also train N of the students with CE only (default: 0)")
    q.add_argument("--epochs", type=int, default=6, help="epochs per training (default: 6)")
    q.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default: 0.05)")
    q.add_argument("--temperature", type=float, default=4.0, help="KD temperature (default: 4)")
    q.add_argument("--kd-weight", type=float, default=0.9, help="weight of the KD term (default: 0.9)")
    q.add_argument("--ce-weight", type=float, default=0.1, help="weight of the CE term with KD (default: 0.1)")
    q.add_argument("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    q.add_argument("--train-images", type=int, default=8000, help="training images, stratified (default: 8000)")
    q.add_argument("--test-images", type=int, help="test images (default: the whole test split)")
    q.add_argument("--data", default="fashion-mnist", help="dataset (default: fashion-mnist)")
    q.add_argument("--image-size", type=int, default=32, help="input size in px, students and teacher (default: 32)")
    q.add_argument("--seed", type=int, default=0, help="seed of the student sample and the data subsets (default: 0)")
    q.add_argument("--out", required=True, metavar="DIR", help="output folder")
    q.add_argument("--resume", action="store_true",
                   help="continue the run in --out (same teacher and recipe; more --seeds add trainings)")
    q.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
                   "(default: a local Ray)")
    q.add_argument("--workers", type=int, metavar="N",
                   help="parallel trainings (default: every CPU of the local Ray; 1: here, no Ray)")
    q.add_argument("--quiet", action="store_true", help="no progress output")


def _run_bench_kd(args: argparse.Namespace) -> int:
    from studentnas.studies.kd_builder import bench_kd

    doc = bench_kd(teacher=args.teacher, teacher_checkpoint=args.teacher_checkpoint, out=args.out, space=args.space,
                   band=args.band, students=args.students, named=args.student, seeds=args.seeds,
                   ce_only=args.ce_only, epochs=args.epochs, lr=args.lr, temperature=args.temperature,
                   kd_weight=args.kd_weight, ce_weight=args.ce_weight, batch_size=args.batch_size,
                   train_images=args.train_images, test_images=args.test_images, data=args.data,
                   image_size=args.image_size, seed=args.seed, resume=args.resume, ray_address=args.ray_address,
                   workers=args.workers, quiet=args.quiet)
    print(f"{len(doc['students'])} students, teacher top-1 {doc['teacher']['test_top1']:.2f}: "
          f"wrote {args.out}/kd_ground_truth.json and .csv")
    return 0
