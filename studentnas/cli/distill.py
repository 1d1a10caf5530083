"""The ``teacher train`` and ``distill`` subcommands of the ``studentnas`` CLI (registered in
:mod:`studentnas.cli.main`; their Python twins are :func:`studentnas.distill.train_teacher` and
:func:`studentnas.distill.distill`)."""

from __future__ import annotations

import argparse
from typing import Any

FORMATTER = argparse.RawDescriptionHelpFormatter

TEACHER_HELP = """\
Teachers: studentnas teacher train trains or fine-tunes a timm model on your data.
"""

TEACHER_TRAIN_HELP = """\
Train (or, with --pretrained, fine-tune) a timm teacher on your data, for users without a checkpoint.

The training split is divided into a training part and a stratified held-out validation part
(--val-fraction); the model is trained with SGD (Nesterov momentum 0.9), a cosine learning rate and
random crop + flip (unless --no-augment), then evaluated on the test split. Writes

  OUT.safetensors   the weights; use them anywhere as --teacher-checkpoint OUT.safetensors (the class
                    count and input channels are read from the weights)
  OUT.json          model, classes, image size, data, epochs, test top-1/top-5, per-epoch history

A checkpoint is kept in OUT.safetensors.ckpt/ after every epoch: rerun the same command after an
interruption to continue from it (it is removed once the teacher is written).

data (--data): fashion-mnist (Debian's dataset-fashion-mnist), fashion-mnist:DIR, cifar10:PATH,
cifar100:PATH, or an ImageFolder directory with train/ and test/ (or val/) class folders. Images are
converted to the model's channels and to --image-size.

examples:
  studentnas teacher train --model resnet18 --data fashion-mnist --epochs 5 --image-size 32 \\
      --out teacher.safetensors
  studentnas teacher train --model resnet50 --data cifar10:~/data --epochs 3 --pretrained --lr 0.01 \\
      --image-size 64 --out r50-cifar10.safetensors
  studentnas search --teacher resnet18 --teacher-checkpoint teacher.safetensors --image-size 32 \\
      --space nb201 --budget 25%MACs --out runs/fmnist
"""

DISTILL_HELP = """\
Distil the students of a search into trained networks: knowledge distillation from the run's
teacher, with hyper-parameter search on Ray Tune (on this machine, or a cluster with --ray-address).

For each chosen student (--top K of the run's Pareto front, or --ids), Ray Tune runs --trials
trials of --epochs epochs each: Optuna's TPE proposes the hyper-parameters from --search-space, ASHA
(--scheduler asha) stops trials that lag on validation top-1 early, a failing trial is retried from
its last checkpoint (--max-failures). Trials are ranked on a held-out share of the training split
(--val-fraction); the best one is evaluated on the test split and exported. --baseline also trains
every student with cross-entropy only, with the same epochs, trials and ranges, so each result shows
what KD gained.

The teacher is the run's (--teacher-checkpoint overrides it); its head must have as many classes as
--data. Its logits on the training images are computed once and cached in RUN/distill/teacher_logits/
(keyed by the teacher's hash, the data and the transforms), so trials only run the student (unless a
feature loss needs the teacher's features, or --augment is on).

writes:
  RUN/students/<id>.safetensors (+ .json)      the best KD student: test top-1/top-5, params, MACs,
                                               batch-1 latency, best config; studentnas.load_student()
  RUN/students/<id>-ce.safetensors (+ .json)   the best CE-only student (--baseline)
  RUN/distill/results.json                     every student, the teacher's accuracy, the KD gain
  RUN/distill/trials.jsonl                     one line per finished trial (the resume journal)
  RUN/distill/tune/                            Ray Tune's experiments and checkpoints

search space (--search-space FILE, YAML or JSON; every key optional):
  lr: [0.01, 0.2]            peak SGD learning rate, log-uniform range (cosine decay to 0)
  weight_decay: [1e-5, 1e-3] log-uniform
  momentum: 0.9              a single number fixes a value
  label_smoothing: [0, 0.1]  of the cross-entropy term
  temperature: [1, 8]        T of the logit losses that take one (kd, dkd)
  ce_weight: [0.1, 1.0]      weight of the cross-entropy term
  loss: [kd, dkd, kd+at]     KD loss, a choice of them; a+b combines (see `studentnas list losses`)
  loss_weights: {at: [100, 1000]}   weight per loss (default 1)
A range may also be {low: 0.01, high: 0.2, log: true}. Defaults: the values above, loss kd.

resume: the run directory is the source of truth. Kill the driver at any time and rerun with
--resume: finished trials are kept (never rerun), the searcher is told their results, and only the
missing trials run; a trial that was running starts again. On a multi-node cluster RUN must be on a
file system every node sees (checkpoints are written there by the trials).

examples:
  studentnas distill runs/fmnist --top 2 --data fashion-mnist --epochs 10 --trials 8 --baseline
  studentnas distill runs/fmnist --ids e3393681b104 --data fashion-mnist --search-space space.yaml
  studentnas distill runs/fmnist --top 3 --data fashion-mnist --ray-address auto --resources-per-trial cpu=4
  studentnas distill runs/fmnist --top 2 --data fashion-mnist --resume      # after a crash or kill
"""


def add_teacher(sub: argparse._SubParsersAction, parser_class: type) -> None:
    p = sub.add_parser("teacher", help="train a teacher on your data (teacher train)", description=TEACHER_HELP,
                       formatter_class=FORMATTER)
    kinds = p.add_subparsers(dest="teacher_command", required=True, metavar="ACTION", parser_class=parser_class)
    q = kinds.add_parser("train", help="train or fine-tune a timm teacher, write safetensors + JSON",
                         description=TEACHER_TRAIN_HELP, formatter_class=FORMATTER)
    q.add_argument("--model", required=True, help="timm model name, e.g. resnet18 (see `studentnas list teachers`)")
    q.add_argument("--data", required=True, help="fashion-mnist, cifar10:PATH, cifar100:PATH or an ImageFolder "
                                                 "with train/ and test/")
    q.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10)")
    q.add_argument("--out", required=True, help="output .safetensors path (a .json sidecar is written beside it)")
    q.add_argument("--image-size", type=int, metavar="PX", help="training resolution (default: the model's own, "
                                                                 "e.g. 224; use 32 for Fashion-MNIST on a CPU)")
    q.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    q.add_argument("--lr", type=float, default=0.05, help="peak learning rate, cosine to 0 (default: 0.05)")
    q.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 5e-4)")
    q.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (default: 0)")
    q.add_argument("--seed", type=int, default=0, help="seeds the init, the image pick, the order (default: 0)")
    q.add_argument("--pretrained", action="store_true", help="start from timm's hub weights (needs network)")
    q.add_argument("--train-images", type=int, metavar="N", help="use N training images (stratified; default: all)")
    q.add_argument("--test-images", type=int, metavar="N", help="use N test images (stratified; default: all)")
    q.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training images held out for validation (default: 0.1; 0: none)")
    q.add_argument("--no-augment", dest="augment", action="store_false", help="no random crop + flip")
    q.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: one per core; on a busy "
                                                            "machine fewer can be much faster)")
    q.add_argument("--quiet", action="store_true", help="no progress output")


def run_teacher(args: argparse.Namespace) -> int:
    from studentnas.distill.teacher_train import train_teacher
    from studentnas.runfiles.paths import check_writable_file

    check_writable_file(args.out, "--out", example="teacher.safetensors")
    meta = train_teacher(args.model, args.data, args.epochs, args.out, image_size=args.image_size,
                         batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                         pretrained=args.pretrained, train_images=args.train_images, test_images=args.test_images,
                         val_fraction=args.val_fraction, augment=args.augment, label_smoothing=args.label_smoothing,
                         threads=args.threads, quiet=args.quiet)
    size = meta["image_size"][0]
    print(f"wrote {args.out} and its .json: {meta['model']}, {meta['num_classes']} classes, {meta['epochs']} epochs "
          f"at {size}px on {meta['train_images']} images; test top-1 {meta['test_top1']:.2f} %, top-5 "
          f"{meta['test_top5']:.2f} % ({meta['test_images']} test images)")
    print(f"use it: studentnas search --teacher {meta['model']} --teacher-checkpoint {args.out} --image-size {size} "
          "--budget ...")
    return 0


def add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="KD training + HPO of a run's students on Ray Tune", description=DISTILL_HELP,
                       formatter_class=FORMATTER)
    p.add_argument("run", help="run directory of a `studentnas search`")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, metavar="K", help="the K best students of the run's front (default: 1)")
    which.add_argument("--ids", metavar="ID,ID", help="comma list of candidate ids (see candidates.jsonl)")
    p.add_argument("--data", required=True, help="fashion-mnist, cifar10:PATH, cifar100:PATH or an ImageFolder with "
                                                 "train/ and test/; its classes must be the teacher's")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial (default: 10)")
    p.add_argument("--trials", type=int, default=8, help="trials per student and mode (default: 8)")
    p.add_argument("--search-space", metavar="FILE", help="YAML/JSON of tunable ranges (see above; default: lr, "
                                                           "weight_decay, temperature, ce_weight with loss kd)")
    p.add_argument("--scheduler", default="asha", choices=["asha", "fifo"],
                   help="asha: stop lagging trials early; fifo: run every trial to the end (default: asha)")
    p.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster: auto, HOST:PORT or "
                                                          "ray://HOST:10001 (default: a local Ray)")
    p.add_argument("--resources-per-trial", default="cpu=1", metavar="SPEC",
                   help="resources of one trial: cpu=N (default: cpu=1; a trial uses N torch threads; the "
                        "trainer runs on CPU)")
    p.add_argument("--cpus", type=int, metavar="N", help="CPUs of the local Ray (default: all of this machine's)")
    p.add_argument("--resume", action="store_true", help="continue the distillation in RUN/distill (or start it)")
    p.add_argument("--baseline", action="store_true", help="also train each student with cross-entropy only "
                                                           "(same epochs, trials and ranges)")
    p.add_argument("--teacher-checkpoint", metavar="PATH", help="teacher weights (default: the run's)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--train-images", type=int, metavar="N", help="use N training images (stratified; default: all)")
    p.add_argument("--test-images", type=int, metavar="N", help="use N test images (stratified; default: all)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training images held out to rank trials (default: 0.1)")
    p.add_argument("--augment", action="store_true", help="random crop + flip (turns the teacher cache off)")
    p.add_argument("--no-teacher-cache", dest="teacher_cache", action="store_false",
                   help="run the teacher in every trial instead of caching its logits")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="seeds the image pick, init, order and Optuna (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _pct(entry: dict[str, Any] | None, key: str = "test_top1") -> str:
    return f"{entry[key]:.2f}" if entry and entry.get(key) is not None else "-"


def run_distill(args: argparse.Namespace) -> int:
    from studentnas.distill.tune import distill

    result = distill(args.run, args.data, top=args.top, ids=args.ids, epochs=args.epochs, trials=args.trials,
                     search_space=args.search_space, scheduler=args.scheduler, ray_address=args.ray_address,
                     resources_per_trial=args.resources_per_trial, resume=args.resume, baseline=args.baseline,
                     teacher_checkpoint=args.teacher_checkpoint, batch_size=args.batch_size,
                     train_images=args.train_images, test_images=args.test_images, val_fraction=args.val_fraction,
                     seed=args.seed, teacher_cache=args.teacher_cache, augment=args.augment, cpus=args.cpus,
                     max_failures=args.max_failures, quiet=args.quiet)
    res = result.results
    teacher = res["teacher"]
    print(f"teacher {teacher['name']}: test top-1 {teacher['test_top1']:.2f} % ({res['test_images']} test images); "
          f"{res['trials']} trials x {res['epochs']} epochs per student and mode. Results: {result.path}")
    header = f"{'id':>12}  {'GMACs':>7}  {'Mparams':>7}  {'ms':>6}  {'KD top-1':>8}"
    if "ce" in res["modes"]:
        header += f"  {'CE top-1':>8}  {'gain':>6}"
    print(header + "  file")
    for s in res["students"]:
        line = (f"{s['id']:>12}  {s['macs'] / 1e9:7.3f}  {s['params'] / 1e6:7.2f}  {s['latency_ms']:6.2f}  "
                f"{_pct(s.get('kd')):>8}")
        if "ce" in res["modes"]:
            gain = f"{s['kd_gain']:+.2f}" if s.get("kd_gain") is not None else "-"
            line += f"  {_pct(s.get('ce')):>8}  {gain:>6}"
        print(line + f"  {(s.get('kd') or {}).get('file', '-')}")
    return 0
