"""The KD-vs-CE study's flags (the same for ``studentnas bench study kd-vs-ce`` and ``scripts/kd_vs_ce.py``),
its help text, the student it trains, and the cheap checks made before any work.

Example:
    >>> args = parse_args(["--student-arch", '{"space": "resnet", "genes": {"block": "basic"}}', "--seeds", "0,2"])
    >>> parse_seeds(args.seeds), student_arch(args).space, recipe_key(args.temperature, args.kd_weight, args.ce_weight)
    ([0, 2], 'resnet', 'T4-kd0.9-ce0.1')
    >>> parse_seeds("1,1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    studentnas.core.errors.BadInputError: --seeds '1,1': give distinct whole numbers >= 0, comma separated, ...
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from studentnas.core.arch import Arch
from studentnas.core.errors import BadInputError
from studentnas.studies.search_quality.folder import STUDY
from studentnas.studies.settings import Settings

HELP = """\
KD against CE only for one student: the "real result" target of issue 5, with a teacher of your choice.

Target (issue 5): on Fashion-MNIST, a distilled student under 25 % of the teacher's MACs within 1 point
of the teacher's test top-1, and above the same student trained without KD.

1. Teacher: --teacher (default resnet34) trained here by `studentnas teacher train`'s code
   (--teacher-epochs on --teacher-train-images, no augmentation unless --teacher-augment) into
   OUT/teacher.safetensors, or --teacher-checkpoint reused. Its test top-1 is measured on the
   students' test images.
2. Student: one arch, --student-arch JSON ({"space": ..., "genes": {...}}, inline or a file) or
   --from-study DIR --student ID (a student of a search-quality study folder's study.json),
   built in the space centred on the teacher (studentnas.engine.setup.pick_space).
3. Trainings: per seed of --seeds, the student is trained twice by the search-quality study's own worker
   (studentnas.studies.worker.train_one): with the KD recipe (Hinton KD at --temperature, weight
   --kd-weight, plus --ce-weight x CE) and with CE only (KD term removed, CE weight 1). Same epochs,
   images, seed, initial weights and batch order; teacher logits cached once.
4. Report: teacher top-1, KD and CE-only top-1 mean +- std, the KD gain paired by seed, the student's
   MACs share of the teacher and whether the target is met; JSON to --json (default OUT/kd_vs_ce.json)
   and a markdown table on stdout. Every KD recipe found in the journal is reported, one row each (the
   CE-only runs do not depend on the recipe, so they are shared): running a second recipe into the same
   --out adds a row. Choosing among recipes by these numbers would be tuning on the test set: the
   report picks none.

OUT/journal.jsonl holds one line per finished training (the resume source of truth): rerunning a
command trains only what is missing, a training in flight resumes from its last epoch (OUT/ckpt/).
OUT/config.json pins what every training shares (teacher, data, student, epochs, ...); a rerun with
other values is refused.

  OMP_NUM_THREADS=1 studentnas bench study kd-vs-ce --out runs/kd_vs_ce \\
      --from-study runs/search_quality --student 233ab1fc666c --teacher-epochs 5 --teacher-train-images 20000
  OMP_NUM_THREADS=1 studentnas bench study kd-vs-ce --out runs/kd_vs_ce ... --temperature 1 --kd-weight 0.5 \\
      --ce-weight 0.5       # a second recipe: 3 more KD trainings, the CE-only ones are reused

`python scripts/kd_vs_ce.py` takes the same flags. Exit status 2 with a one-line message on bad input.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the study's flags to ``p`` (the CLI subcommand and the script share them)."""
    p.add_argument("--out", default="runs/kd_vs_ce", help="output folder; rerun to resume (default: runs/kd_vs_ce)")
    p.add_argument("--json", default=None, help="report JSON path (default: OUT/kd_vs_ce.json)")
    t = p.add_argument_group("teacher")
    t.add_argument("--teacher", default="resnet34", help="timm teacher (default: resnet34)")
    t.add_argument("--teacher-checkpoint", default=None, help="reuse these weights instead of training a teacher")
    t.add_argument("--teacher-epochs", type=int, default=5, help="teacher training epochs (default: 5)")
    t.add_argument("--teacher-train-images", type=int, default=16000,
                   help="training images for the teacher, before its validation hold-out (default: 16000)")
    t.add_argument("--teacher-lr", type=float, default=0.05, help="teacher peak LR, cosine (default: 0.05)")
    t.add_argument("--teacher-val-fraction", type=float, default=0.1, help="held out for validation (default: 0.1)")
    t.add_argument("--teacher-augment", action="store_true", help="random crop + flip for the teacher (default: off)")
    s = p.add_argument_group("student")
    s.add_argument("--student-arch", default=None, help='arch JSON, inline or a file: {"space": ..., "genes": {...}}')
    s.add_argument("--from-study", default=None, help="a scripts/search_quality.py folder (its study.json)")
    s.add_argument("--student", default=None, help="with --from-study: the student id")
    r = p.add_argument_group("data and recipe")
    r.add_argument("--data", default="fashion-mnist", help="data spec with train and test splits")
    r.add_argument("--image-size", type=int, default=32, help="image side in pixels (default: 32)")
    r.add_argument("--epochs", type=int, default=6, help="student epochs (default: 6)")
    r.add_argument("--train-images", type=int, default=8000, help="student training images (default: 8000)")
    r.add_argument("--test-images", type=int, default=None, help="test images (default: the whole test split)")
    r.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    r.add_argument("--lr", type=float, default=0.05, help="student peak LR, cosine to 0 (default: 0.05)")
    r.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 5e-4)")
    r.add_argument("--temperature", type=float, default=4.0, help="KD temperature T (default: 4)")
    r.add_argument("--kd-weight", type=float, default=0.9, help="weight of the KD loss (default: 0.9)")
    r.add_argument("--ce-weight", type=float, default=0.1, help="weight of CE in the KD recipe (default: 0.1)")
    r.add_argument("--seeds", default="0,1,2", help="training seeds, comma separated (default: 0,1,2)")
    r.add_argument("--seed", type=int, default=0, help="seed of the data subsets and the teacher (default: 0)")
    p.add_argument("--jobs", type=int, default=2, help="trainings in parallel processes, 1 thread each (default: 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads here: teacher training and evaluation")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the script's command line (checked later, by :func:`check_args`)."""
    parser = argparse.ArgumentParser(description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser.parse_args(argv)


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: distinct whole numbers >= 0, comma separated."""
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise BadInputError(f"--seeds '{text}': give distinct whole numbers >= 0, comma separated, e.g. --seeds 0,1,2")
    return seeds


def student_arch(args: argparse.Namespace) -> Arch:
    """The student from ``--student-arch`` (JSON text or file) or ``--from-study DIR --student ID``."""
    if (args.student_arch is None) == (args.from_study is None):
        raise BadInputError("give exactly one of --student-arch JSON or --from-study DIR --student ID")
    if args.from_study is not None:
        file = Path(args.from_study) / STUDY
        if not file.is_file():
            raise BadInputError(f"--from-study '{args.from_study}' holds no {STUDY}; give a search_quality folder")
        students = json.loads(file.read_text()).get("students", {})
        if args.student not in students:
            raise BadInputError(f"--student {args.student!r} is not in {file}; known: {', '.join(sorted(students))}")
        return Arch.from_dict(students[args.student]["arch"])
    if args.student is not None:
        raise BadInputError("--student goes with --from-study; with --student-arch leave it out")
    text = args.student_arch
    if not text.lstrip().startswith("{") and Path(text).is_file():
        text = Path(text).read_text()
    try:
        data = json.loads(text)
        return Arch.from_dict(data)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise BadInputError(f"--student-arch: not an arch JSON ({err}); expected "
                            '{"space": "resnet", "genes": {...}}, e.g. from a study.json\'s students') from None


def check_args(args: argparse.Namespace) -> None:
    """Cheap checks of the numbers and paths: one-line errors that name the rule, the value and the fix."""
    for name in ("teacher_epochs", "teacher_train_images", "image_size", "epochs", "train_images", "batch_size",
                 "jobs"):
        if getattr(args, name) < 1:
            raise BadInputError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.test_images is not None and args.test_images < 1:
        raise BadInputError(f"--test-images {args.test_images}: must be >= 1 (or leave it out for the whole split)")
    if args.threads is not None and args.threads < 1:
        raise BadInputError(f"--threads {args.threads}: must be >= 1, e.g. --threads 1")
    if args.teacher_checkpoint is not None and not Path(args.teacher_checkpoint).is_file():
        raise BadInputError(f"--teacher-checkpoint '{args.teacher_checkpoint}' does not exist; leave it out to train "
                            "a teacher here")


def settings_of(args: argparse.Namespace, checkpoint: Path) -> Settings:
    """The study's Settings for these trainings: the fields its worker reads (the rest keep their defaults)."""
    return Settings(teacher=args.teacher, teacher_checkpoint=str(checkpoint), data=args.data,
                    image_size=args.image_size, epochs=args.epochs, train_images=args.train_images,
                    test_images=args.test_images, batch_size=args.batch_size, lr=args.lr,
                    weight_decay=args.weight_decay, temperature=args.temperature, kd_weight=args.kd_weight,
                    ce_weight=args.ce_weight, seed=args.seed)


def recipe_key(t: float, kd: float, ce: float) -> str:
    """A KD recipe's name in the journal, e.g. ``T4-kd0.9-ce0.1``."""
    return f"T{t:g}-kd{kd:g}-ce{ce:g}"
