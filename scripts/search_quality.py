"""Does the search pick better students? The study of issue 5, item 5, on Fashion-MNIST.

1. **Teacher**: ``--teacher`` (default resnet34) trained on ``--data`` at ``--image-size`` px by
   ``studentnas teacher train``'s code, or ``--teacher-checkpoint`` reused; evaluated on the test images.
2. **Budget** (default ``25%macs`` of the teacher, any :mod:`studentnas.core.budget` form) and four picks under it:

   * ``diswot``: ``studentnas.search(proxy="diswot")`` with the trained teacher; the candidate with the
     best DisWOT score (rank 1 of its front);
   * ``classic``: the same search with ``--classic-proxy`` (default ``meco``, the best single proxy in
     BENCHMARKS.md; ``zc_ensemble`` is fitted on NB201 cells, so it is meant for NB201-like spaces);
   * ``largest_params``: the most parameters that fit: the largest of ``--params-samples`` uniform draws
     from the space that fit the budget, then hill-climbing: move to the single-gene change with the most
     parameters that still fits, until no change adds parameters;
   * ``random``: ``--random-students`` uniform draws that fit the budget (rejection sampling).

3. **Distillation**: every distinct student, once per seed (``--seeds``), with one fixed recipe: Hinton KD
   (``kd``, T = ``--temperature``, weight ``--kd-weight``) + ``--ce-weight`` x CE, SGD with Nesterov
   momentum and a cosine LR (:func:`studentnas.distill.trainer.train`), ``--epochs`` epochs on a stratified
   subset of ``--train-images`` training images, teacher logits cached once; test top-1 on
   ``--test-images`` test images. Student weights start from a seed derived from (training seed, arch id).
4. **CE baseline** (``--ce-baseline``, default ``best``): once every KD training is done, the student with
   the best mean KD test top-1 (``best``; ``all``: every student; ``none``: skipped) is trained again with the
   same recipe minus the KD term: CE only (KD weight 0, CE weight 1, since the KD recipe's CE weight of 0.1
   alone would only scale the learning rate down), same epochs, images, seeds, batch order and initial
   weights, no hyper-parameter search. The KD gain is paired by seed (KD minus CE top-1 of the same seed)
   and reported as mean +- std over seeds, with the issue-5 target: a distilled student under 25 % of the
   teacher's MACs within 1 point of the teacher's top-1 and above the same student trained without KD.
5. **Report**: test top-1 mean +- std per pick (the random pick pools all its students' runs), every
   trained student scored by every proxy (diswot, the classic proxy, params; same calibration batch and
   seed as the searches), and Kendall's tau-b (scipy) between each proxy's score and the student's mean KD
   accuracy over all students trained. Whatever comes out is reported, including a loss of DisWOT's pick.

Output folder (``--out``): ``study.json`` (settings, picks, scores, teacher evaluation: what a rerun must
match), ``journal.jsonl`` (one line per finished (student, seed, mode) training, mode ``kd`` or ``ce``, a
line without one is ``kd``: the resume source of truth),
``search-*`` run directories, ``teacher.safetensors``, ``ckpt/`` (per-epoch checkpoints of trainings in
flight), and the results ``search_quality.json`` and ``search_quality.md``. Rerunning the same command
continues: searches resume, finished trainings are kept, a training in flight resumes from its epoch.
``--ce-baseline`` is not a setting: rerunning a finished study with another value trains only the CE
baselines it adds.

  OMP_NUM_THREADS=1 python scripts/search_quality.py --out runs/search_quality            # ~53 min, see below
  OMP_NUM_THREADS=1 python scripts/search_quality.py --quick --out /tmp/sq                 # ~3 min smoke run
  OMP_NUM_THREADS=1 python scripts/search_quality.py --out runs/search_quality --write-benchmarks

``--write-benchmarks`` appends the markdown section (with the exact command) to BENCHMARKS.md; by default it
is only printed. Exit status 2 with a one-line message on bad input.

Why these defaults (2 cores, measured by ``--quick`` under a load average of 3-5): students under 25 % of
resnet34's MACs train at ~200 (bottleneck) to ~280 (basic) images/s per process with 1 thread, 2 processes
at a time; so 7 students x 3 seeds x 6 epochs x 7,936 images take ~38 min, the teacher (4 epochs of 10,800
images at ~160 images/s) ~5 min, the two 150-candidate searches ~2.5 min (meco ~0.9 s, diswot ~0.1 s per
candidate), the CE baseline of the best student (3 trainings, 2 at a time) ~6 min: ~53 min in all, less on
an idle machine (the CE baselines of the BENCHMARKS.md run took 19 min under a load average of 5-8).
The teacher is resnet34 (1.1 % of the resnet space centred on it fits 25 % of its MACs at 32 px), the one of
the run in BENCHMARKS.md. ``--teacher resnet18`` works too: only about 0.02 % of its space fits, but the
searches' random and evolution searchers repair over-budget proposals into the budget (they used to give up
after 2000 rejected samples, which is why resnet34 was chosen), and the largest-params and random picks find
such students in a few thousand uniform draws each.
"""

# ruff: noqa: I001  (studentnas must be imported before timm/torchvision: it installs the torchvision shim)
from __future__ import annotations

import studentnas as sn  # first: the torchvision shim, also in spawned workers

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import math
import multiprocessing
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from studentnas.core.arch import Arch
from studentnas.core.budget import Budget
from studentnas.core.cost import Cost
from studentnas.hardware.counting import measured_cost
from studentnas.data.images import calibration_batch, load_images
from studentnas.distill.teacher_train import train_teacher, versions
from studentnas.distill.trainer import Batches, TrainConfig, cached_teacher_logits, evaluate, train
from studentnas.core.errors import BadInputError
from studentnas.engine.evaluate import LocalEvaluator, build_student
from studentnas.core.console import Progress
from studentnas.core.proxy import ProxyContext
from studentnas.core.registry import PROXIES, SPACES
from studentnas.engine.search import check_budget_range, pick_space, static_budget
from studentnas.core.space import SearchSpace
from studentnas.data.teachers import Teacher, load_teacher

ROOT = Path(__file__).resolve().parents[1]
FORMAT = 1
JOURNAL = "journal.jsonl"
STUDY = "study.json"
PICKS = ("diswot", "classic", "largest_params", "random")
MODES = ("kd", "ce")  # a training with the KD recipe, or the same recipe with CE only
CE_BASELINES = ("best", "all", "none")
TARGET_MACS_SHARE, TARGET_POINTS = 0.25, 1.0  # issue 5: under 25 % of the teacher's MACs, within 1 point of it


# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the numbers (a rerun in the same --out must match; see ``IDENTITY_SKIP``)."""

    teacher: str = "resnet34"
    teacher_checkpoint: str | None = None
    data: str = "fashion-mnist"
    image_size: int = 32
    teacher_epochs: int = 4
    teacher_train_images: int = 12000
    budget: str = "25%macs"
    space: str = "resnet"
    classic_proxy: str = "meco"
    searcher: str = "evolution"
    candidates: int = 150
    calibration_batch: int = 16
    params_samples: int = 50000
    random_students: int = 4
    seeds: int = 3
    epochs: int = 6
    train_images: int = 8000
    test_images: int | None = None  # None: the whole test split
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    temperature: float = 4.0
    kd_weight: float = 0.9
    ce_weight: float = 0.1
    seed: int = 0
    quick: bool = False

    def train_config(self, seed: int, mode: str = "kd") -> TrainConfig:
        """The one distillation recipe every student gets (``kd``), or its CE-only twin (``ce``: no KD
        term, CE weight 1; everything else equal)."""
        if mode == "ce":
            return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                               weight_decay=self.weight_decay, ce_weight=1.0, seed=seed, losses=())
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, ce_weight=self.ce_weight, seed=seed,
                           losses=({"name": "kd", "weight": self.kd_weight, "T": self.temperature},))

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)


# --quick: a 2-3 minute smoke configuration; explicit flags still override it.
QUICK = {"teacher_epochs": 1, "teacher_train_images": 3000, "candidates": 12, "params_samples": 5000,
         "random_students": 2, "epochs": 2, "train_images": 1500, "test_images": 2000}
IDENTITY_SKIP = ()  # every Settings field must match on resume; --jobs/--threads/--out/--quiet are not settings


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (scripts/search_quality.py) for the method.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Settings()
    helps = {
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
    for f in fields(Settings):
        if f.name == "quick":
            continue
        kind = {int: int, float: float}.get(type(getattr(defaults, f.name)), str)
        if f.name == "test_images":
            kind = int
        quick = f"; --quick: {QUICK[f.name]}" if f.name in QUICK else ""
        default = f" (default: {getattr(defaults, f.name)}{quick})".replace("%", "%%")
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                            help=helps.get(f.name, "") + default)
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
    parser.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"),
                        help="the file --write-benchmarks appends to")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    values = {f.name: getattr(defaults, f.name) for f in fields(Settings)}
    if args.quick:
        values.update(QUICK, quick=True)
    values.update({k: v for k, v in vars(args).items() if k in values and v is not None})
    settings = Settings(**values)
    check_settings(settings, args)
    return settings, args


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
    Budget.parse(_budget_texts(s.budget))
    TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay,
                ce_weight=s.ce_weight, losses=({"name": "kd", "weight": s.kd_weight, "T": s.temperature},))


def _budget_texts(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# --------------------------------------------------------------------------------------- study folder


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Study:
    """The study folder: ``study.json`` (state, rewritten atomically) and the training journal."""

    def __init__(self, out: str | Path, settings: Settings):
        self.path = Path(out)
        self.settings = settings
        if self.path.exists() and not self.path.is_dir():
            raise BadInputError(f"--out '{out}' is a file; give a folder, e.g. --out runs/search_quality")
        file = self.path / STUDY
        if file.is_file():
            self.state = json.loads(file.read_text())
            old = self.state["settings"]
            diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in asdict(settings).items()
                     if k not in IDENTITY_SKIP and old.get(k) != v]
            if diffs:
                raise BadInputError(f"'{out}' holds a study with other settings ({'; '.join(diffs)}); rerun with the "
                                    "same flags to resume, or pass another --out")
        else:
            if self.path.is_dir() and any(self.path.iterdir()):
                raise BadInputError(f"--out '{out}' exists and holds no study; pass an empty or new folder")
            self.state = {"format": FORMAT, "settings": asdict(settings), "sessions": []}
            self.save()

    def save(self) -> None:
        write_atomic(self.path / STUDY, json.dumps(_clean(self.state), indent=2, sort_keys=True) + "\n")

    def journal(self) -> list[dict[str, Any]]:
        """Finished trainings; a torn last line (killed mid-write) is ignored."""
        file = self.path / JOURNAL
        rows = []
        if file.is_file():
            for line in file.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return rows

    def append(self, row: Mapping[str, Any]) -> None:
        with (self.path / JOURNAL).open("a") as fh:
            fh.write(json.dumps(_clean(row), sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# ----------------------------------------------------------------------------------------- the work


def _say(quiet: bool) -> Callable[[str], None]:
    return (lambda _m: None) if quiet else (lambda m: print(f"search_quality: {m}", file=sys.stderr, flush=True))


def get_teacher(study: Study, s: Settings, say: Callable[[str], None], threads: int | None) -> tuple[Path, dict]:
    """The teacher checkpoint (given, or trained into the study folder) and its training sidecar (or {})."""
    if s.teacher_checkpoint is not None:
        path = Path(s.teacher_checkpoint)
        if not path.is_file():
            raise BadInputError(f"--teacher-checkpoint '{path}' does not exist; train one with `studentnas teacher "
                                "train` or leave the flag out")
        sidecar = path.with_suffix(".json")
        return path, (json.loads(sidecar.read_text()) if sidecar.is_file() else {})
    path = study.path / "teacher.safetensors"
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        return path, json.loads(sidecar.read_text())
    say(f"training the teacher {s.teacher} ({s.teacher_epochs} epochs, {s.teacher_train_images} images, "
        f"{s.image_size} px)")
    meta = train_teacher(s.teacher, s.data, s.teacher_epochs, path, image_size=s.image_size,
                         train_images=s.teacher_train_images, test_images=s.test_images, seed=s.seed,
                         threads=threads, quiet=False)
    write_atomic(sidecar, json.dumps(_clean(meta), indent=2, sort_keys=True) + "\n")
    return path, meta


@lru_cache(maxsize=4)
def _datasets(data: str, train_images: int, test_images: int | None, seed: int):  # noqa: ANN202
    return (load_images(data, "train", limit=train_images, seed=seed),
            load_images(data, "test", limit=test_images, seed=seed))


@lru_cache(maxsize=2)
def _teacher(name: str, checkpoint: str) -> Teacher:
    return load_teacher(name, checkpoint)


def _logits(s: Settings, checkpoint: str, cache: str) -> torch.Tensor:
    teacher = _teacher(s.teacher, checkpoint)
    train_set, _ = _datasets(s.data, s.train_images, s.test_images, s.seed)
    batches = Batches(train_set, s.input_size, teacher.mean, teacher.std, 256)
    logits, _ = cached_teacher_logits(teacher.model, batches, cache, teacher_id=teacher.checkpoint_sha256,
                                      data_spec=s.data)
    return logits


def _fits(budget: Budget, space: SearchSpace, s: Settings, num_classes: int) -> Callable[[Arch], bool]:
    return lambda a: budget.satisfied(space.cost(a, s.input_size, num_classes))


def largest_params(space: SearchSpace, fits: Callable[[Arch], bool], cost: Callable[[Arch], Cost], samples: int,
                   rng: np.random.Generator) -> tuple[Arch, dict[str, Any]]:
    """The largest-params student that fits: best of ``samples`` uniform draws, then hill-climbing on
    single-gene changes (the change with the most params that still fits, until none adds params)."""
    best, drawn = None, 0
    for _ in range(samples):
        arch = space.sample(rng)
        if fits(arch) and (best is None or cost(arch).params > cost(best).params):
            best = arch
        drawn += 1
    if best is None:
        raise BadInputError(f"none of {samples} uniform draws from space '{space.name}' fits the budget; raise "
                            "--budget or --params-samples")
    start_params, steps = cost(best).params, 0
    low, high = space.bounds
    while True:
        vec = space.encode(best)
        neighbours = []
        for i in range(len(vec)):
            for value in range(int(low[i]), int(high[i]) + 1):
                if value != vec[i]:
                    changed = vec.copy()
                    changed[i] = value
                    neighbours.append(space.decode(changed))
        better = [a for a in neighbours if fits(a) and cost(a).params > cost(best).params]
        if not better:
            break
        best = max(better, key=lambda a: (cost(a).params, a.id))
        steps += 1
    return best, {"draws": drawn, "sampled_params": start_params, "hill_climb_steps": steps,
                  "params": cost(best).params}


def random_students(space: SearchSpace, fits: Callable[[Arch], bool], n: int, rng: np.random.Generator,
                    max_draws: int = 500_000) -> tuple[list[Arch], int]:
    """``n`` distinct uniform draws that fit the budget (rejection sampling), and the draws it took."""
    found: dict[str, Arch] = {}
    for draw in range(1, max_draws + 1):
        arch = space.sample(rng)
        if arch.id not in found and fits(arch):
            found[arch.id] = arch
            if len(found) == n:
                return list(found.values()), draw
    raise BadInputError(f"only {len(found)} of {n} random students fit the budget in {max_draws} draws; "
                        "raise --budget or lower --random-students")


def search_pick(s: Settings, proxy: str, out: Path, checkpoint: Path, say: Callable[[str], None],
                quiet: bool) -> dict[str, Any]:
    """Run (or resume) ``studentnas.search`` with ``proxy``; the pick is its best-scoring student."""
    t0 = time.perf_counter()
    say(f"search with {proxy}: {s.candidates} candidates ({s.searcher}) in {out}")
    run = sn.search(teacher=s.teacher, teacher_checkpoint=checkpoint, budget=_budget_texts(s.budget), space=s.space,
                    proxy=proxy, searcher=s.searcher, candidates=s.candidates, data=s.data,
                    image_size=s.image_size, batch_size=s.calibration_batch, seed=s.seed, out=out, resume=True,
                    quiet=quiet)
    ok = [c for c in run.candidates if c.ok]
    if not ok:
        raise BadInputError(f"the {proxy} search found no student under '{s.budget}' "
                            f"(stop reason: {run.config.get('stop_reason')}); raise --budget or use another --teacher")
    best = max(ok, key=lambda c: (c.score(proxy), -c.cost.macs))
    return {"proxy": proxy, "run_dir": str(out), "pick": best.id, "arch": best.arch.to_dict(),
            "pick_score": best.score(proxy), "candidates": len(run.candidates), "ok": len(ok),
            "stop_reason": run.config.get("stop_reason"), "searcher": s.searcher,
            "search_seconds": (run.config.get("timings") or {}).get("total"), "wall_seconds": time.perf_counter() - t0}


def choose_students(study: Study, s: Settings, checkpoint: Path, teacher: Teacher, space: SearchSpace,
                    budget: Budget, say: Callable[[str], None], quiet: bool) -> None:
    """Fill ``study.state['picks']`` and ``['students']`` (once; a rerun reuses them)."""
    if "picks" in study.state:
        return
    num_classes = teacher.num_classes
    fits = _fits(budget, space, s, num_classes)

    def cost(a: Arch) -> Cost:
        return space.cost(a, s.input_size, num_classes)

    searches = {name: search_pick(s, proxy, study.path / f"search-{proxy}", checkpoint, say, quiet)
                for name, proxy in (("diswot", "diswot"), ("classic", s.classic_proxy))}
    t0 = time.perf_counter()
    big, big_info = largest_params(space, fits, cost, s.params_samples, np.random.default_rng([s.seed, 2]))
    rand, draws = random_students(space, fits, s.random_students, np.random.default_rng([s.seed, 1]))
    picks = {"diswot": [searches["diswot"]["pick"]], "classic": [searches["classic"]["pick"]],
             "largest_params": [big.id], "random": [a.id for a in rand]}
    archs = {searches[k]["pick"]: Arch.from_dict(searches[k]["arch"]) for k in searches}
    archs.update({big.id: big, **{a.id: a for a in rand}})
    students = {}
    for arch_id, arch in archs.items():
        c = cost(arch)
        students[arch_id] = {"arch": arch.to_dict(), "label": space.format_arch(arch), "macs": c.macs,
                             "params": c.params, "roles": [k for k in PICKS if arch_id in picks[k]]}
    study.state.update(picks=picks, students=students, searches=searches,
                       sampling={"largest_params": big_info, "random_draws": draws,
                                 "seconds": time.perf_counter() - t0})
    study.save()
    for k in PICKS:
        for arch_id in picks[k]:
            say(f"pick {k}: {arch_id} {students[arch_id]['label']} ({students[arch_id]['macs'] / 1e6:.2f} MMACs, "
                f"{students[arch_id]['params'] / 1e6:.2f} M params)")


def score_students(study: Study, s: Settings, teacher: Teacher, space: SearchSpace, budget: Budget,
                   say: Callable[[str], None]) -> None:
    """Every student scored by diswot, the classic proxy and params, with the searches' calibration batch,
    seed and student initialisation (so a pick's score equals the one its search recorded)."""
    names = ["diswot", s.classic_proxy, "params"]
    scores = study.state.setdefault("scores", {})
    todo = [i for i in study.state["students"] if set(names) - set(scores.get(i, {}))]
    if not todo:
        return
    t0 = time.perf_counter()
    images = load_images(s.data, split="train", limit=s.calibration_batch, seed=s.seed)
    batch, labels = calibration_batch(images, s.calibration_batch, s.input_size, teacher.mean, teacher.std, s.seed)
    ctx = ProxyContext(images=batch.contiguous(memory_format=torch.channels_last), labels=labels,
                       num_classes=teacher.num_classes, teacher=teacher.model, teacher_trained=teacher.trained,
                       seed=s.seed)
    evaluator = LocalEvaluator(space, [PROXIES.get(n)() for n in names], ctx, budget, s.seed, teacher.num_classes)
    for arch_id in todo:
        arch = Arch.from_dict(study.state["students"][arch_id]["arch"])
        cand = evaluator.evaluate(arch, space.cost(arch, s.input_size, teacher.num_classes))
        if not cand.ok:
            raise RuntimeError(f"scoring student {arch_id} failed: {cand.reason}")
        scores[arch_id] = dict(cand.scores)
    study.state.setdefault("timings", {})["scoring"] = time.perf_counter() - t0
    study.save()
    say(f"scored {len(todo)} students with {', '.join(names)} in {time.perf_counter() - t0:.1f} s")


def mode_of(row: Mapping[str, Any]) -> str:
    """A journal line's training mode; lines written before the CE baseline existed are KD trainings."""
    return row.get("mode", "kd")


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one student with one seed, KD or CE only (runs in a worker process, or here with --jobs 1)."""
    t0 = time.perf_counter()
    s = Settings(**job["settings"])
    torch.set_num_threads(1)
    space = SPACES.get(job["space"]["name"]).from_config(job["space"])
    arch = Arch.from_dict(job["arch"])
    teacher = _teacher(s.teacher, job["checkpoint"])
    train_set, test_set = _datasets(s.data, s.train_images, s.test_images, s.seed)
    config = s.train_config(job["seed"], job["mode"])
    logits = _logits(s, job["checkpoint"], job["cache"]) if config.needs_teacher else None
    student = build_student(space, arch, job["seed"], teacher.num_classes, s.input_size[0])
    batches = Batches(train_set, s.input_size, teacher.mean, teacher.std, s.batch_size, shuffle=True,
                      seed=job["seed"], drop_last=True)
    result = train(student, batches, None, config, teacher_logits=logits, checkpoint_dir=job["ckpt"], threads=1)
    test = evaluate(student, Batches(test_set, s.input_size, teacher.mean, teacher.std, 256))
    shutil.rmtree(job["ckpt"], ignore_errors=True)
    return {"student": arch.id, "seed": job["seed"], "mode": job["mode"], "status": "ok", "test_top1": test["top1"],
            "test_top5": test["top5"], "test_loss": test["loss"], "train_images": batches.num_images,
            "test_images": len(test_set), "epochs": s.epochs, "resumed_from_epoch": result.resumed_from_epoch,
            "train_images_per_s": float(np.median([h["train_images_per_s"] for h in result.history])),
            "history": result.history, "seconds": time.perf_counter() - t0, "pid": os.getpid(),
            "finished_at": time.time()}


def ce_students(study: Study, s: Settings, which: str) -> list[str]:
    """The students ``--ce-baseline`` trains CE-only: ``best`` (highest mean KD test top-1 over the seeds
    trained; ties: all of them), ``all`` or ``none``."""
    if which == "none":
        return []
    ids = list(study.state["students"])
    if which == "all":
        return ids
    runs: dict[str, list[float]] = {}
    for row in study.journal():
        if row["status"] == "ok" and mode_of(row) == "kd" and row["seed"] < s.seeds:
            runs.setdefault(row["student"], []).append(row["test_top1"])
    means = {i: float(np.mean(v)) for i, v in runs.items() if i in study.state["students"]}
    top = max(means.values(), default=None)
    return [i for i in ids if i in means and means[i] == top]


def distil_all(study: Study, s: Settings, checkpoint: Path, space: SearchSpace, jobs: int, quiet: bool,
               say: Callable[[str], None], ids: Sequence[str] | None = None, mode: str = "kd") -> int:
    """Train every (student, seed) of ``ids`` (default: every student) in ``mode`` that the journal does not
    hold yet; returns how many were trained now."""
    done = {(r["student"], r["seed"]) for r in study.journal() if r["status"] == "ok" and mode_of(r) == mode}
    ids = list(study.state["students"]) if ids is None else list(ids)
    todo = [(i, seed) for seed in range(s.seeds) for i in ids if (i, seed) not in done]  # seed-major: balanced
    total = len(ids) * s.seeds
    what = "KD" if mode == "kd" else "CE-only baseline"
    if not todo:
        if ids:
            say(f"{what}: all {total} (student, seed) trainings are in the journal; none is trained again")
        return 0
    cache = str(study.path / "teacher_logits")
    if mode == "kd":
        t0 = time.perf_counter()
        _logits(s, str(checkpoint), cache)  # fill the cache once, before the workers read it
        say(f"teacher logits cached in {time.perf_counter() - t0:.1f} s")
    say(f"{what}: training {len(todo)} of {total} (student, seed) pairs ({total - len(todo)} already in the "
        f"journal) with {jobs} parallel job(s)")
    base = {"settings": asdict(s), "space": space.config(), "checkpoint": str(checkpoint), "cache": cache,
            "mode": mode}
    suffix = "" if mode == "kd" else f"-{mode}"
    work = [{**base, "arch": study.state["students"][i]["arch"], "seed": seed,
             "ckpt": str(study.path / "ckpt" / f"{i}-s{seed}{suffix}")} for i, seed in todo]
    trained = 0
    desc = "search_quality: distil" if mode == "kd" else "search_quality: CE baseline"
    with Progress(total=total, desc=desc, quiet=quiet, initial=total - len(todo)) as bar:
        def record(job: dict[str, Any], row: dict[str, Any] | None, err: BaseException | None) -> None:
            nonlocal trained
            if row is None:
                row = {"student": Arch.from_dict(job["arch"]).id, "seed": job["seed"], "mode": job["mode"],
                       "status": "failed", "reason": f"{type(err).__name__}: {err}", "finished_at": time.time()}
            study.append(row)
            trained += row["status"] == "ok"
            bar.update(1, **({"top1": row["test_top1"]} if row["status"] == "ok" else {"failed": row["student"]}))

        if jobs == 1:
            for job in work:
                try:
                    row, err = train_one(job), None
                except (FloatingPointError, RuntimeError) as e:  # a diverging student is recorded, not fatal
                    row, err = None, e
                record(job, row, err)
        else:
            with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(train_one, job): job for job in work}
                for fut in cf.as_completed(futures):
                    err = fut.exception()
                    if err is not None and not isinstance(err, (FloatingPointError, RuntimeError)):
                        raise err
                    record(futures[fut], None if err else fut.result(), err)
    return trained


def evaluate_teacher(study: Study, s: Settings, teacher: Teacher) -> dict[str, Any]:
    if "teacher_eval" not in study.state:
        _, test_set = _datasets(s.data, s.train_images, s.test_images, s.seed)
        t0 = time.perf_counter()
        test = evaluate(teacher.model, Batches(test_set, s.input_size, teacher.mean, teacher.std, 256))
        study.state["teacher_eval"] = {"test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                                       "test_images": len(test_set), "seconds": time.perf_counter() - t0}
        study.save()
    return study.state["teacher_eval"]


# ------------------------------------------------------------------------------------------- summary


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def kendall(xs: Sequence[float], ys: Sequence[float]) -> dict[str, Any]:
    """Kendall's tau-b (scipy) and its two-sided p-value; None where undefined (n < 2 or a constant)."""
    if len(xs) < 2:
        return {"tau": None, "p_value": None, "n": len(xs)}
    res = stats.kendalltau(xs, ys)
    return {"tau": res.statistic, "p_value": res.pvalue, "n": len(xs)}


def _runs(study: Study, s: Settings, mode: str) -> dict[str, dict[int, dict]]:
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
        ce_mean, ce_std = _mean_std([ce[k]["test_top1"] for k in sorted(ce)])
        seeds = sorted(set(kd) & set(ce))
        gains = [kd[k]["test_top1"] - ce[k]["test_top1"] for k in seeds]
        gain_mean, gain_std = _mean_std(gains)
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


def summarise(study: Study, s: Settings, ce_ids: Sequence[str] = (), ce_mode: str = "none",
              teacher_macs: float | None = None) -> dict[str, Any]:
    """Per-student and per-pick accuracies, Kendall tau per proxy, the verdict on DisWOT's pick, and the
    CE-only baseline of ``ce_ids`` (``ce_mode`` says how they were chosen)."""
    runs = _runs(study, s, "kd")
    students = {}
    for arch_id, info in study.state["students"].items():
        mine = [runs.get(arch_id, {})[k] for k in sorted(runs.get(arch_id, {}))]
        mean, std = _mean_std([r["test_top1"] for r in mine])
        students[arch_id] = {**info, "scores": study.state.get("scores", {}).get(arch_id, {}),
                             "runs": [{k: r[k] for k in ("seed", "test_top1", "test_top5", "test_loss", "seconds",
                                                         "train_images_per_s", "history")} for r in mine],
                             "kd_top1_mean": mean, "kd_top1_std": std}
    picks = {}
    for key in PICKS:
        ids = study.state["picks"][key]
        values = [r["test_top1"] for i in ids for r in students[i]["runs"]]
        mean, std = _mean_std(values)
        picks[key] = {"students": ids, "top1_values": values, "top1_mean": mean, "top1_std": std, "n_runs": len(values),
                      "student_means": [students[i]["kd_top1_mean"] for i in ids]}
    trained = [i for i in students if students[i]["runs"]]
    proxies = ["diswot", s.classic_proxy, "params"]
    taus = {p: kendall([students[i]["scores"][p] for i in trained], [students[i]["kd_top1_mean"] for i in trained])
            for p in proxies}
    searches = study.state["searches"]  # a pick's rescored value must equal what its search recorded
    search_check = {key: {"student": searches[key]["pick"], "proxy": searches[key]["proxy"],
                          "search_score": searches[key]["pick_score"],
                          "rescored": students[searches[key]["pick"]]["scores"].get(searches[key]["proxy"])}
                    for key in ("diswot", "classic")}
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
    verdict = {"ranking": ranking, "diswot_rank": ranking.index("diswot") + 1 if "diswot" in ranking else None,
               "best_pick": ranking[0] if ranking else None, "diswot_vs": versus}
    ce_runs = _runs(study, s, "ce")
    teacher_top1 = (study.state.get("teacher_eval") or {}).get("test_top1")
    ce = ce_baseline_summary(students, ce_runs, ce_mode, ce_ids, teacher_top1, teacher_macs)
    return {"students": students, "picks": picks, "kendall_tau": taus, "verdict": verdict,
            "search_score_check": search_check, "ce_baseline": ce,
            "complete": all(len(v["runs"]) == s.seeds for v in students.values())
            and all(len(ce_runs.get(i, {})) == s.seeds for i in ce_ids)}


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{mean:.2f} +- {std:.2f}" if std is not None and math.isfinite(std) else f"{mean:.2f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
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
        acc = _fmt(p["top1_mean"], p["top1_std"])
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
                     f"{info['params'] / 1e6:.2f} | {_num(sc.get('diswot'), 4)} | {_num(sc.get(classic), 4)} | "
                     f"{_num(sc.get('params'), 3)} | {_fmt(info['kd_top1_mean'], info['kd_top1_std'])} |")
    lines += ["", "Kendall tau-b between each proxy and the mean KD test top-1, over every student trained:", "",
              "| proxy | tau | p | students |", "|---|---|---|---|"]
    for proxy, t in summary["kendall_tau"].items():
        lines.append(f"| {proxy} | {_num(t['tau'])} | {_num(t['p_value'])} | {t['n']} |")
    v = summary["verdict"]
    parts = []
    for other, r in v["diswot_vs"].items():
        same = " (the same student)" if r["same_student"] else ""
        welch = f" (Welch p = {r['welch_p']:.2f})" if r["welch_p"] is not None else ""
        parts.append(f"{r['outcome']} against {names[other]} by {r['diff_points']:+.2f} points{welch}{same}")
    lines += ["", f"**Verdict: DisWOT's pick ranks {v['diswot_rank']} of {len(v['ranking'])}** "
                  f"(best: {names.get(v['best_pick'], v['best_pick'])}); it " + "; ".join(parts) + ".", ""]
    lines += _ce_markdown(summary["ce_baseline"], students, teacher["test_top1"])
    return "\n".join(lines)


def _ce_markdown(ce: dict[str, Any], students: Mapping[str, dict], teacher_top1: float) -> list[str]:
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
                     f"{_fmt(r['kd_top1_mean'], r['kd_top1_std'])} | {_fmt(r['ce_top1_mean'], r['ce_top1_std'])} | "
                     f"{_fmt(r['gain_mean'], r['gain_std'])} | {len(r['gain_seeds'])} |")
    target = (f"under {100 * ce['target']['macs_share']:g} % of the teacher's MACs, within "
              f"{ce['target']['points']:g} point of the teacher's top-1, above the same student without KD")
    for arch_id, r in ce["per_student"].items():
        c = r["checks"]
        met = "**met**" if r["target_met"] else "**not met**"
        gap = "-" if r["teacher_gap_points"] is None else f"{r['teacher_gap_points']:+.2f}"
        within = "within" if c["within_points_of_teacher"] else "not within"
        above = "above" if c["above_ce_only"] else "not above"
        lines += ["", f"Target (issue 5: {target}) for `{arch_id}`: {met}. KD "
                      f"{_fmt(r['kd_top1_mean'], r['kd_top1_std'])} % vs the teacher's {teacher_top1:.2f} % ({gap} "
                      f"points: {within}); vs CE only {_fmt(r['ce_top1_mean'], r['ce_top1_std'])} % (KD gain "
                      f"{_fmt(r['gain_mean'], r['gain_std'])} points: {above}); MACs "
                      f"{'under' if c['under_macs_share'] else 'not under'} the share."]
    return lines + [""]


# ---------------------------------------------------------------------------------------------- main


def command_line() -> str:
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    return f"{env + ' ' if env else ''}python {shlex.join(sys.argv)}"


def run_study(s: Settings, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    say = _say(args.quiet)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    study = Study(args.out, s)
    load_before = os.getloadavg()
    checkpoint, teacher_meta = get_teacher(study, s, say, args.threads)
    teacher = _teacher(s.teacher, str(checkpoint))
    space = pick_space(s.space, teacher)
    teacher_cost = measured_cost(teacher.model, s.input_size)
    budget = Budget.parse(_budget_texts(s.budget)).resolve(teacher_cost)
    check_budget_range(budget, space, s.input_size, teacher.num_classes, teacher_cost)
    static = static_budget(budget)
    if static is None:
        raise BadInputError(f"--budget {s.budget}: the study needs a MACs or params budget (picks are checked "
                            "analytically), e.g. --budget 25%macs")
    choose_students(study, s, checkpoint, teacher, space, static, say, args.quiet)
    score_students(study, s, teacher, space, static, say)
    teacher_eval = evaluate_teacher(study, s, teacher)
    t0 = time.perf_counter()
    trained = distil_all(study, s, checkpoint, space, args.jobs, args.quiet, say)
    ce_ids = ce_students(study, s, args.ce_baseline)  # chosen once every KD training is in the journal
    trained_ce = distil_all(study, s, checkpoint, space, args.jobs, args.quiet, say, ids=ce_ids, mode="ce")
    train_wall = time.perf_counter() - t0
    session = {"command": command_line(), "started_at": time.time() - (time.perf_counter() - started),
               "wall_s": time.perf_counter() - started, "trained": trained + trained_ce, "trained_kd": trained,
               "trained_ce": trained_ce, "ce_baseline": args.ce_baseline, "train_wall_s": train_wall,
               "jobs": args.jobs, "loadavg_before_after": [load_before, os.getloadavg()]}
    study.state["sessions"].append(session)
    study.save()
    journal = [r for r in study.journal() if r["status"] == "ok"]
    summary = summarise(study, s, ce_ids, args.ce_baseline, teacher_cost.macs)
    report = {
        "format": FORMAT, "command": session["command"], "sessions": study.state["sessions"],
        "config": {"settings": asdict(s), "jobs": args.jobs, "threads": args.threads, "out": str(study.path),
                   "recipe": s.train_config(0).to_dict(), "ce_baseline": args.ce_baseline,
                   "ce_recipe": s.train_config(0, "ce").to_dict() if ce_ids else None},
        "versions": versions(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads()},
        "teacher": {"model": s.teacher, "checkpoint": str(checkpoint), "sha256": teacher.checkpoint_sha256,
                    "origin": "given checkpoint" if s.teacher_checkpoint else
                    f"trained here: {s.teacher_epochs} epochs on {s.teacher_train_images} images",
                    "macs": teacher_cost.macs, "params": teacher_cost.params, **teacher_eval,
                    "train_meta": {k: v for k, v in teacher_meta.items() if k != "history"},
                    "train_history": teacher_meta.get("history")},
        "budget": {"text": s.budget, "resolved": budget.describe(),
                   "limits": {c.metric: c.limit for c in budget.constraints}},
        "space": space.config(), "searches": study.state["searches"], "sampling": study.state["sampling"],
        "picks": study.state["picks"], "test_images": teacher_eval["test_images"], "summary": summary,
        "timings": {"teacher_train_s": teacher_meta.get("seconds"), "teacher_eval_s": teacher_eval["seconds"],
                    "search_s": {k: v["wall_seconds"] for k, v in study.state["searches"].items()},
                    "sampling_s": study.state["sampling"]["seconds"],
                    "scoring_s": study.state.get("timings", {}).get("scoring"),
                    "training_s_sum": sum(r["seconds"] for r in journal),
                    "training_s_per_run_median": float(np.median([r["seconds"] for r in journal])) if journal else None,
                    "training_wall_s_sessions": sum(x["train_wall_s"] for x in study.state["sessions"]),
                    "wall_total_s": sum(x["wall_s"] for x in study.state["sessions"])},
    }
    report["markdown"] = markdown(report)
    write_atomic(study.path / "search_quality.json", json.dumps(_clean(report), indent=2, sort_keys=True) + "\n")
    write_atomic(study.path / "search_quality.md", report["markdown"] + "\n")
    if args.write_benchmarks:
        bench = Path(args.benchmarks)
        old = bench.read_text() if bench.is_file() else "# Benchmarks\n"
        write_atomic(bench, old.rstrip("\n") + "\n\n" + report["markdown"].rstrip("\n") + "\n")
        say(f"appended the section to {bench}")
    say(f"wrote {study.path / 'search_quality.json'} ({trained + trained_ce} trainings this session: {trained} KD, "
        f"{trained_ce} CE-only; "
        f"{time.perf_counter() - started:.0f} s)")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings, args = parse_settings(argv)
        report = run_study(settings, args)
    except BadInputError as err:
        print(f"search_quality: error: {err}", file=sys.stderr)
        return 2
    print(report["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
