"""The ``studentnas puzzle`` command line: flags, help text and the printed summary."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from studentnas.core.errors import BadInputError

FORMATTER = argparse.RawDescriptionHelpFormatter

PUZZLE_HELP = """\
Puzzle (NVIDIA, arXiv 2411.19146) for timm ResNets and ViTs and the project's GPT language models:
compress the teacher block by block.

  1. library   every parent layer (ResNet block; transformer attention or FFN sub-block) gets cheaper
               replacements: pruned widths, fewer heads / KV heads, a basic block, a linear layer, a no-op,
               and replacements spanning 2 consecutive layers. Blocks the library does not understand are
               named and kept as they are.
  2. BLD       each replacement is trained alone to reproduce its parent layers' output from the teacher's
               own input activations (normalised MSE; --bld-loss cosine|kl). The activations are cached on
               disk in RUN/puzzle/acts; replacements train in parallel as Ray tasks (--workers, --ray-address).
  3. scoring   the teacher with only that replacement substituted: KL to the teacher on held-out samples
               (and accuracy), plus params, MACs, CPU latency and memory of the block.
  4. MIP       scipy's HiGHS milp picks one replacement per layer span, minimising summed KL (--metric)
               under --budget; the student is then built and measured, and a broken budget is tightened and
               re-solved (the iteration log is kept). Block scores add up only approximately, so the
               --mip-candidates best diverse solutions are realised and measured on the score set, and
               the best measured one is kept. Greedy and random selections under the same budget are
               scored the same way.
  5. realise   the student is assembled from the BLD weights, its BatchNorm statistics recalibrated, and
               evaluated on the test split. The MIP, greedy and random selections are written as a run
               directory, RUN/puzzle/candidates/<budget>/, that `studentnas distill` reads (the `puzzle`
               search space builds them with their BLD weights). The short global KD of image students is
               one fixed-recipe trial of `studentnas distill` there (--gkd-epochs); LMs get --gkd-steps of
               next-byte KL. The student is evaluated again and exported to
               RUN/puzzle/students/<budget>.safetensors + .json.

Budgets (--budget, repeatable; all must hold): 50%macs, 60%params, 5GMACs, 20Mparams, 3ms (summed block
latency at batch 1, re-checked on the real student), 100MB (weights + KV cache + peak activation).

Every stage resumes: rerun the same command after a crash or Ctrl-C and finished work is kept (--fresh
starts over). --mip-only re-solves a new --budget from RUN/puzzle/library.json in about a second, with
no BLD, scoring or training.

examples:
  studentnas teacher train --model resnet26 --data fashion-mnist --epochs 3 --image-size 32 --out t.safetensors
  studentnas puzzle --teacher resnet26 --teacher-checkpoint t.safetensors --data fashion-mnist \\
      --budget 50%macs --out runs/p1
  studentnas distill runs/p1/puzzle/candidates/50pctmacs --top 2 --data fashion-mnist --trials 8 --baseline
  studentnas puzzle --out runs/p1 --mip-only --budget 30%macs --budget 60%params
  studentnas lm train --model gpt_tiny --data fortunes --steps 750 --out lm.safetensors
  studentnas puzzle --teacher gpt_tiny --teacher-checkpoint lm.safetensors --data fortunes --budget 50%params \\
      --out runs/lm1 --workers 2
"""


def _library_options(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise BadInputError(f"--library-options '{text}' is not JSON; e.g. --library-options "
                            "'{\"widths\": [0.5], \"merge\": false}'") from None
    if not isinstance(value, dict):
        raise BadInputError(f"--library-options must be a JSON object, got {type(value).__name__}")
    return value


def add_puzzle(sub: argparse._SubParsersAction, parser_class: type) -> None:
    p = sub.add_parser("puzzle", help="blockwise local distillation + MIP: compress the teacher block by block",
                       description=PUZZLE_HELP, formatter_class=FORMATTER)
    p.add_argument("--teacher", help="timm ResNet/ViT name (resnet26, resnet50, vit_tiny_patch16_224, ...) or a "
                                     "project LM (gpt_tiny, gpt_small); not needed with --mip-only")
    p.add_argument("--teacher-checkpoint", metavar="PATH", help="teacher weights (`studentnas teacher train` or "
                                                                 "`studentnas lm train`); default: random init")
    p.add_argument("--budget", action="append", required=True, metavar="BUDGET",
                   help="hardware budget, repeatable (50%%macs, 60%%params, 5GMACs, 3ms, 100MB)")
    p.add_argument("--data", help="images: fashion-mnist, cifar10:PATH, cifar100:PATH, an ImageFolder; text: "
                                  "fortunes (Debian's fortunes package, the default for LMs) or text:PATH")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory (Puzzle works in RUN/puzzle)")
    p.add_argument("--image-size", type=int, metavar="PX", help="input size (default: the checkpoint's, else 224)")
    p.add_argument("--library-options", metavar="JSON", help="narrow the library, e.g. '{\"widths\": [0.5], "
                                                              "\"merge\": false, \"noop\": true}'")
    p.add_argument("--bld-budget", type=int, default=4096, metavar="N",
                   help="samples each replacement trains on: images, or LM sequences (tokens = N x context) "
                        "(default: 4096)")
    p.add_argument("--bld-samples", type=int, default=1024, metavar="N",
                   help="distinct training samples whose teacher activations are cached (default: 1024)")
    p.add_argument("--bld-batch-size", type=int, default=32, help="BLD batch size (default: 32)")
    p.add_argument("--bld-lr", type=float, default=1e-3, help="BLD AdamW learning rate (default: 1e-3)")
    p.add_argument("--bld-loss", default="nmse", choices=["nmse", "cosine", "kl"],
                   help="BLD loss; kl applies at the head to spans ending at the last layer (default: nmse)")
    p.add_argument("--score-samples", type=int, default=500, metavar="N",
                   help="held-out training samples for replace-one-block scoring (default: 500)")
    p.add_argument("--test-samples", type=int, default=2000, metavar="N",
                   help="test samples for the final report (default: 2000)")
    p.add_argument("--metric", default="kl", choices=["kl", "acc", "loss"],
                   help="block quality the MIP optimises (default: kl, KL divergence to the teacher)")
    p.add_argument("--max-noops", type=int, metavar="N", help="at most N no-op replacements")
    p.add_argument("--mip-candidates", type=int, default=5, metavar="K",
                   help="re-score the K best diverse MIP solutions as whole students on the score set and keep "
                        "the best measured (block scores add up only approximately); 1: the plain optimum "
                        "(default: 5)")
    p.add_argument("--mip-diversity", type=float, default=0.1, metavar="A",
                   help="each re-scored solution differs from the earlier ones in >= ceil(A x layers) layers "
                        "(default: 0.1)")
    p.add_argument("--random-baselines", type=int, default=5, metavar="N",
                   help="random feasible selections scored as a baseline (default: 5)")
    p.add_argument("--gkd-epochs", type=int, default=1,
                   help="epochs of the global KD of image students: one fixed-recipe trial of `studentnas distill` "
                        "(Hinton KD T=1 + 0.5 CE) on --bld-samples training images; needs --teacher-checkpoint "
                        "(default: 1)")
    p.add_argument("--gkd-steps", type=int, default=200, help="global KD steps for LMs (default: 200)")
    p.add_argument("--workers", type=int, default=1, help="parallel BLD workers on a local Ray (default: 1: in "
                                                          "this process)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="run BLD and the global KD on this Ray cluster (auto, HOST:PORT)")
    p.add_argument("--mip-only", action="store_true", help="re-solve a new --budget from the cached library")
    p.add_argument("--fresh", action="store_true", help="delete RUN/puzzle and start over")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="seeds the samples, BLD and baselines (default: 0)")
    p.add_argument("--json", metavar="FILE", help="also write the summary to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _line(name: str, quality: dict[str, Any] | None) -> str:
    quality = quality or {}
    return f"  {name:<18} KL {quality.get('kl', math.nan):.4f}   top-1 {_pct(quality.get('acc'))}"


def run_puzzle(args: argparse.Namespace) -> int:
    import torch

    from studentnas.puzzle.bld import BLDConfig
    from studentnas.puzzle.options import PuzzleOptions
    from studentnas.puzzle.pipeline import PuzzleRun
    from studentnas.runfiles.atomic import write_json_atomic
    from studentnas.runfiles.paths import check_writable_dir, check_writable_file

    if args.threads is not None:
        if args.threads < 1:
            raise BadInputError(f"--threads {args.threads}: must be >= 1, e.g. --threads 1")
        torch.set_num_threads(args.threads)
    if not args.mip_only and not args.teacher:
        raise BadInputError("--teacher is required (or --mip-only to re-solve an existing run)")
    if not 0 < args.mip_diversity <= 1:
        raise BadInputError(f"--mip-diversity {args.mip_diversity}: must be in (0, 1], e.g. 0.1")
    for flag in ("bld_samples", "score_samples", "test_samples", "workers", "gkd_epochs", "gkd_steps",
                 "mip_candidates"):
        if getattr(args, flag) < 1:
            raise BadInputError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    if args.random_baselines < 0:
        raise BadInputError(f"--random-baselines {args.random_baselines}: must be >= 0 (0: no random baseline)")
    check_writable_dir(args.out, "--out", example="runs/p1")
    if args.json:
        check_writable_file(args.json, "--json", example="puzzle.json")
    opts = PuzzleOptions(
        teacher=args.teacher or "", budget=args.budget, out=args.out, data=args.data,
        teacher_checkpoint=args.teacher_checkpoint, image_size=args.image_size,
        library=_library_options(args.library_options), bld_samples=args.bld_samples,
        score_samples=args.score_samples, test_samples=args.test_samples,
        bld=BLDConfig(budget=args.bld_budget, batch_size=args.bld_batch_size, lr=args.bld_lr, loss=args.bld_loss,
                      seed=args.seed),
        metric=args.metric, max_noops=args.max_noops, random_baselines=args.random_baselines,
        mip_candidates=args.mip_candidates, mip_diversity=args.mip_diversity,
        gkd_epochs=args.gkd_epochs, gkd_steps=args.gkd_steps, workers=args.workers, ray_address=args.ray_address,
        mip_only=args.mip_only, fresh=args.fresh, seed=args.seed, quiet=args.quiet)
    summary = PuzzleRun(opts).run()
    row = summary["solutions"][summary["last"]]
    print(f"Puzzle: {summary['teacher']['name']} ({summary['family']}, {summary['layers']} layers, "
          f"{summary['entries']} replacements, {summary['failed_entries']} failed) under {' and '.join(row['budget'])}")
    teacher = summary["teacher_costs"]
    measured = row["measured"]
    print(f"  student: {measured['params'] / 1e6:.3g} M params ({measured['params'] / teacher['params']:.0%} of the "
          f"teacher), {measured['macs'] / 1e6:.4g} MMACs ({measured['macs'] / teacher['macs']:.0%})")
    print(f"  summed block {row['metric']}: MIP optimum {row['mip_objective']:.4f} (re-scored pick "
          f"{row.get('chosen_objective', row['mip_objective']):.4f}), greedy {row['greedy_objective']:.4f}, "
          f"random {min(row['random_objectives'], default=math.nan):.4f} (best of {len(row['random_objectives'])})")
    evaluation = row.get("evaluation")
    if evaluation:
        print("  measured on the test split:")
        print(_line("teacher", evaluation.get("teacher")))
        print(_line("MIP", evaluation.get("mip")))
        gkd = evaluation.get("mip_after_gkd")
        print(_line("MIP + global KD", gkd) if gkd else f"  {'MIP + global KD':<18} {evaluation.get('gkd_skipped')}")
        print(_line("greedy", evaluation.get("greedy")))
        for i, r in enumerate(evaluation.get("random", [])):
            print(_line(f"random {i + 1}", r))
        print(f"  student: {evaluation.get('file')}")
        if evaluation.get("candidates_run"):
            print(f"  every selection as a run directory; tune and distil them with: studentnas distill "
                  f"{evaluation['candidates_run']} --top K --data {opts.data} --trials 8")
    if args.json:
        from pathlib import Path

        write_json_atomic(Path(args.json), summary)
    return 0
