"""The search-quality study's flags (the same for ``studentnas bench study search-quality`` and
``scripts/search_quality.py``), its help text, and the cheap checks made before any work.

Example:
    >>> s, args = parse_settings(["--quick", "--seeds", "2", "--out", "runs/sq"])
    >>> s.quick, s.epochs, s.seeds, args.jobs, args.ce_baseline
    (True, 2, 2, 2, 'best')
    >>> parse_settings(["--seeds", "1"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --seeds 1: a mean +- std needs at least 2 seeds; use --seeds 3
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from studentnas.core.budget import Budget
from studentnas.core.errors import BadInputError
from studentnas.core.registry import PROXIES, SPACES
from studentnas.distill.train_config import TrainConfig
from studentnas.engine.setup import static_budget
from studentnas.studies.settings import QUICK, Settings, budget_texts
from studentnas.studies.teacher import check_teacher_checkpoint

CE_BASELINES = ("best", "all", "none")

HELP = """\
Does the search pick better students? The study of issue 5, item 5, on Fashion-MNIST.

1. Teacher: --teacher (default resnet34) trained on --data at --image-size px by `studentnas teacher
   train`'s code, or --teacher-checkpoint reused; evaluated on the test images.
2. Budget (default 25%macs of the teacher, any studentnas.core.budget form) and four picks under it:

   * diswot: studentnas.search(proxy="diswot") with the trained teacher; the candidate with the best
     DisWOT score (rank 1 of its front);
   * classic: the same search with --classic-proxy (default meco, the best single proxy in
     BENCHMARKS.md; zc_ensemble is fitted on NB201 cells, so it is meant for NB201-like spaces);
   * largest_params: the most parameters that fit: the largest of --params-samples uniform draws
     from the space that fit the budget, then hill-climbing: move to the single-gene change with the most
     parameters that still fits, until no change adds parameters;
   * random: --random-students uniform draws that fit the budget (rejection sampling).

3. Distillation: every distinct student, once per seed (--seeds), with one fixed recipe: Hinton KD
   (kd, T = --temperature, weight --kd-weight) + --ce-weight x CE, SGD with Nesterov momentum and a
   cosine LR (studentnas.distill.trainer.train), --epochs epochs on a stratified subset of
   --train-images training images, teacher logits cached once; test top-1 on --test-images test
   images. Student weights start from a seed derived from (training seed, arch id).
4. CE baseline (--ce-baseline, default best): once every KD training is done, the student with the
   best mean KD test top-1 (best; all: every student; none: skipped) is trained again with the same
   recipe minus the KD term: CE only (KD weight 0, CE weight 1, since the KD recipe's CE weight of 0.1
   alone would only scale the learning rate down), same epochs, images, seeds, batch order and initial
   weights, no hyper-parameter search. The KD gain is paired by seed (KD minus CE top-1 of the same seed)
   and reported as mean +- std over seeds, with the issue-5 target: a distilled student under 25 % of the
   teacher's MACs within 1 point of the teacher's top-1 and above the same student trained without KD.
5. Report: test top-1 mean +- std per pick (the random pick pools all its students' runs), every
   trained student scored by every proxy (diswot, the classic proxy, params; same calibration batch and
   seed as the searches), and Kendall's tau-b (scipy) between each proxy's score and the student's mean KD
   accuracy over all students trained. Whatever comes out is reported, including a loss of DisWOT's pick.

Output folder (--out): study.json (settings, picks, scores, teacher evaluation: what a rerun must
match), journal.jsonl (one line per finished (student, seed, mode) training, mode kd or ce, a
line without one is kd: the resume source of truth), search-* run directories, teacher.safetensors,
ckpt/ (per-epoch checkpoints of trainings in flight), and the results search_quality.json and
search_quality.md. Rerunning the same command continues: searches resume, finished trainings are
kept, a training in flight resumes from its epoch. --ce-baseline is not a setting: rerunning a
finished study with another value trains only the CE baselines it adds.

  OMP_NUM_THREADS=1 studentnas bench study search-quality --out runs/search_quality     # ~53 min, see below
  OMP_NUM_THREADS=1 studentnas bench study search-quality --quick --out /tmp/sq          # ~3 min smoke run
  OMP_NUM_THREADS=1 studentnas bench study search-quality --out runs/search_quality --write-benchmarks

`python scripts/search_quality.py` takes the same flags. --write-benchmarks appends the markdown
section (with the exact command) to BENCHMARKS.md; by default it is only printed. Exit status 2 with
a one-line message on bad input.

Why these defaults (2 cores, measured by --quick under a load average of 3-5): students under 25 % of
resnet34's MACs train at ~200 (bottleneck) to ~280 (basic) images/s per process with 1 thread, 2 processes
at a time; so 7 students x 3 seeds x 6 epochs x 7,936 images take ~38 min, the teacher (4 epochs of 10,800
images at ~160 images/s) ~5 min, the two 150-candidate searches ~2.5 min (meco ~0.9 s, diswot ~0.1 s per
candidate), the CE baseline of the best student (3 trainings, 2 at a time) ~6 min: ~53 min in all, less on
an idle machine (the CE baselines of the BENCHMARKS.md run took 19 min under a load average of 5-8).
The teacher is resnet34 (1.1 % of the resnet space centred on it fits 25 % of its MACs at 32 px), the one of
the run in BENCHMARKS.md. --teacher resnet18 works too: only about 0.02 % of its space fits, but the
searches' random and evolution searchers repair over-budget proposals into the budget (they used to give up
after 2000 rejected samples, which is why resnet34 was chosen), and the largest-params and random picks find
such students in a few thousand uniform draws each.
"""

HELPS = {
    "teacher": "timm teacher model (with --space resnet: a timm ResNet)",
    "teacher_checkpoint": "reuse these weights (trained by `studentnas teacher train`) instead of training",
    "data": "data spec with train and test splits", "image_size": "image side in pixels",
    "teacher_epochs": "epochs of teacher training", "teacher_train_images": "training images for the teacher",
    "budget": "budget string(s), comma separated (studentnas.core.budget grammar)",
    "space": "search space", "classic_proxy": "the training-free proxy DisWOT is compared with",
    "searcher": "searcher of both searches", "candidates": "candidates each search evaluates",
    "calibration_batch": "proxy calibration batch size (the searches' --batch-size)",
    "params_samples": "uniform draws for the largest-params pick before hill-climbing",
    "random_students": "random students under the budget", "seeds": "training seeds 0..N-1 per student",
    "epochs": "distillation epochs", "train_images": "training images for the students (stratified subset)",
    "test_images": "test images (None: the whole test split)", "batch_size": "training batch size",
    "lr": "peak learning rate (cosine to 0)", "weight_decay": "SGD weight decay",
    "temperature": "KD temperature T", "kd_weight": "weight of the KD loss", "ce_weight": "weight of CE",
    "seed": "seed of the searches, the random picks and the data subsets",
}


def default_benchmarks() -> Path:
    """Where ``--write-benchmarks`` appends by default: the BENCHMARKS.md of the source checkout this package
    runs from, or of the current folder when it is installed elsewhere."""
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "pyproject.toml").is_file() and (checkout / "BENCHMARKS.md").is_file():
        return checkout / "BENCHMARKS.md"
    return Path("BENCHMARKS.md")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the study's flags to ``parser`` (the CLI subcommand and the script share them)."""
    defaults = Settings()
    for f in fields(Settings):
        if f.name == "quick":
            continue
        kind = {int: int, float: float}.get(type(getattr(defaults, f.name)), str)
        if f.name == "test_images":
            kind = int
        quick = f"; --quick: {QUICK[f.name]}" if f.name in QUICK else ""
        default = f" (default: {getattr(defaults, f.name)}{quick})".replace("%", "%%")
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                            help=HELPS.get(f.name, "") + default)
    parser.add_argument("--quick", action="store_true", help="smoke configuration (2-3 minutes on 2 cores)")
    parser.add_argument("--ce-baseline", choices=CE_BASELINES, default="best",
                        help="after the KD trainings, train the best KD student (best), every student (all) or none "
                             "again with CE only (same recipe without the KD term, same seeds) and report the KD "
                             "gain (default: best; not a setting, so a finished study can add it)")
    parser.add_argument("--out", default="runs/search_quality",
                        help="study folder; rerun the same command to resume (default: runs/search_quality)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="trainings run in parallel processes, 1 torch thread each (default: 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process: teacher training, searches, scoring (default: torch's)")
    parser.add_argument("--write-benchmarks", action="store_true", help="append the markdown section to BENCHMARKS.md")
    parser.add_argument("--benchmarks", default=None, help="the file --write-benchmarks appends to")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The study's :class:`Settings` from parsed flags (``--quick`` first, explicit flags over it), checked."""
    defaults = Settings()
    values = {f.name: getattr(defaults, f.name) for f in fields(Settings)}
    if args.quick:
        values.update(QUICK, quick=True)
    values.update({k: v for k, v in vars(args).items() if k in values and v is not None})
    settings = Settings(**values)
    check_settings(settings, args)
    return settings


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Parse the script's command line: the :class:`Settings` and the other flags (``--out``, ``--jobs``, ...)."""
    parser = argparse.ArgumentParser(description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return settings_from_args(args), args


def check_settings(s: Settings, args: argparse.Namespace) -> None:
    """Cheap checks before any work: one-line errors that name the rule, the value and the fix."""
    positive = ("image_size", "teacher_epochs", "teacher_train_images", "candidates", "calibration_batch",
                "params_samples", "random_students", "seeds", "epochs", "train_images", "batch_size")
    for name in positive:
        if getattr(s, name) < 1:
            raise BadInputError(f"--{name.replace('_', '-')} {getattr(s, name)}: must be >= 1")
    if s.test_images is not None and s.test_images < 1:
        raise BadInputError(f"--test-images {s.test_images}: must be >= 1 (or leave it out for the whole test split)")
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        raise BadInputError(f"--jobs {args.jobs} / --threads {args.threads}: must be >= 1, e.g. --jobs 2")
    if s.seeds < 2:
        raise BadInputError(f"--seeds {s.seeds}: a mean +- std needs at least 2 seeds; use --seeds 3")
    if s.classic_proxy in ("diswot", "params"):
        raise BadInputError(f"--classic-proxy {s.classic_proxy}: it is compared with diswot and params already; "
                            "pick another, e.g. --classic-proxy meco")
    PROXIES.get(s.classic_proxy)
    SPACES.get(s.space)
    check_teacher_checkpoint(s.teacher_checkpoint)
    if static_budget(Budget.parse(budget_texts(s.budget))) is None:
        raise BadInputError(f"--budget {s.budget}: the study needs a MACs or params budget (picks are checked "
                            "analytically), e.g. --budget 25%macs")
    TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay,
                ce_weight=s.ce_weight, losses=({"name": "kd", "weight": s.kd_weight, "T": s.temperature},))
