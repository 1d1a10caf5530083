"""The ``lm train`` and ``lm eval`` subcommands of the ``studentnas`` CLI (registered in :mod:`studentnas.cli.main`;
their Python twins are :func:`studentnas.lm.train.train_lm` and :func:`studentnas.lm.train.eval_lm`)."""

from __future__ import annotations

import argparse
import json

FORMATTER = argparse.RawDescriptionHelpFormatter

LM_HELP = """\
The project's small decoder-only language model (a byte-level GPT): train it on a text corpus
(lm train) and measure a trained one (lm eval). Puzzle uses a trained one as a teacher.

models (--model): gpt_tiny (dim 128, 4 layers, 4 heads, FFN 512, context 128, 0.88 M params),
gpt_small (dim 256, 6 layers, 8 heads, FFN 1024, context 256, 4.9 M params).

examples:
  studentnas lm train --model gpt_tiny --data fortunes --steps 750 --out lm.safetensors
  studentnas lm eval --model gpt_tiny --checkpoint lm.safetensors --data fortunes
"""

DATA_HELP = """\
data (--data): fortunes (Debian's fortunes package, 2.6 MB of English quotations, jokes and poems;
BSD licence; apt-get install fortunes), fortunes:DIR (the same files elsewhere), or text:PATH (a
UTF-8 file, or a folder whose .txt files are read). Tokens are bytes (vocabulary 256). Each file is
split into contiguous 90/5/5 % slices (train/validation/test) at record boundaries, the same for
every run.
"""

LM_TRAIN_HELP = f"""\
Train a byte-level GPT on a text corpus: random windows of the training split, next-byte
cross-entropy, AdamW (betas 0.9/0.95), linear warm-up then cosine decay to 10 % of --lr, gradient
clipping at 1. Validation loss and top-1 are measured every --eval-every steps on --eval-windows
fixed windows, and on the whole validation and test splits at the end. The same --seed gives the
same weights. Writes

  OUT.safetensors   the weights (the model config is in its metadata); load with
                    studentnas.lm.load_lm(MODEL, OUT) or `studentnas lm eval`
  OUT.json          config, steps, tokens seen, val/test loss (nats/byte), perplexity (per byte),
                    bits per byte, top-1 byte accuracy, eval history, tokens/s, corpus, versions

A checkpoint is written to OUT.safetensors.ckpt/ every --checkpoint-every steps; after an
interruption rerun the same command with --resume to continue (the result equals an uninterrupted
run). It is removed once OUT is written.

{DATA_HELP}
examples:
  studentnas lm train --model gpt_tiny --data fortunes --steps 750 --batch-size 32 --lr 2e-3 \\
      --seed 0 --out lm.safetensors
  studentnas lm train --model gpt_tiny --data fortunes --steps 750 --out lm.safetensors --resume
  studentnas lm train --model gpt_small --data text:~/books --steps 2000 --out books.safetensors --quiet
"""

LM_EVAL_HELP = f"""\
Measure a trained LM on a corpus's validation and test splits: loss (nats/byte), perplexity (per
byte), bits per byte and top-1 byte accuracy, on non-overlapping windows of the model's context.

{DATA_HELP}
examples:
  studentnas lm eval --model gpt_tiny --checkpoint lm.safetensors --data fortunes
  studentnas lm eval --model gpt_tiny --checkpoint lm.safetensors --data text:notes.txt --json
"""


def add_lm(sub: argparse._SubParsersAction, parser_class: type) -> None:
    p = sub.add_parser("lm", help="train or evaluate the small byte-level language model (lm train|eval)",
                       description=LM_HELP, formatter_class=FORMATTER)
    kinds = p.add_subparsers(dest="lm_command", required=True, metavar="ACTION", parser_class=parser_class)
    t = kinds.add_parser("train", help="train a byte-level GPT on a text corpus, write safetensors + JSON",
                         description=LM_TRAIN_HELP, formatter_class=FORMATTER)
    t.add_argument("--model", default="gpt_tiny", help="gpt_tiny or gpt_small (default: gpt_tiny)")
    t.add_argument("--data", default="fortunes", help="fortunes, fortunes:DIR or text:PATH (default: fortunes)")
    t.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: 1000)")
    t.add_argument("--batch-size", type=int, default=32, help="windows per step (default: 32)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: 2e-3)")
    t.add_argument("--warmup", type=int, metavar="STEPS", help="linear warm-up steps (default: 5 %% of --steps, "
                                                                "at most 100)")
    t.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay of matrices (default: 0.1)")
    t.add_argument("--context", type=int, metavar="TOKENS", help="window length (default: the model's, e.g. 128)")
    t.add_argument("--seed", type=int, default=0, help="seeds the init and the windows (default: 0)")
    t.add_argument("--eval-every", type=int, default=200, metavar="STEPS",
                   help="validate every STEPS steps (default: 200; 0: only at the end)")
    t.add_argument("--eval-windows", type=int, default=64, metavar="N",
                   help="windows of the validation split used by the periodic validation (default: 64)")
    t.add_argument("--checkpoint-every", type=int, default=200, metavar="STEPS",
                   help="write the resume checkpoint every STEPS steps (default: 200)")
    t.add_argument("--out", required=True, help="output .safetensors path (a .json sidecar is written beside it)")
    t.add_argument("--resume", action="store_true", help="continue from OUT.safetensors.ckpt/")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    e = kinds.add_parser("eval", help="loss, perplexity and top-1 of a trained LM on a corpus",
                         description=LM_EVAL_HELP, formatter_class=FORMATTER)
    e.add_argument("--model", default="gpt_tiny", help="the preset it was trained as (default: gpt_tiny)")
    e.add_argument("--checkpoint", required=True, help="trained weights (.safetensors from lm train, or .pth)")
    e.add_argument("--data", default="fortunes", help="fortunes, fortunes:DIR or text:PATH (default: fortunes)")
    e.add_argument("--max-windows", type=int, metavar="N", help="score at most N windows per split (default: all)")
    e.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _line(name: str, stats: dict) -> str:
    return (f"{name}: loss {stats['loss']:.4f} nats/byte ({stats['bits_per_byte']:.3f} bits/byte), perplexity "
            f"{stats['perplexity']:.3f}, top-1 {stats['top1']:.2f} % on {stats['tokens']:,} bytes")


def run_lm(args: argparse.Namespace) -> int:
    from studentnas.core.errors import BadInputError
    from studentnas.lm.train import eval_lm, train_lm

    if args.lm_command == "train":
        meta = train_lm(args.out, model=args.model, data=args.data, steps=args.steps, batch_size=args.batch_size,
                        lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay, context=args.context,
                        seed=args.seed, eval_every=args.eval_every, eval_windows=args.eval_windows,
                        checkpoint_every=args.checkpoint_every, resume=args.resume, quiet=args.quiet)
        print(f"wrote {args.out} and its .json: {meta['model']} ({meta['params'] / 1e6:.2f} M params), "
              f"{meta['steps']} steps, {meta['tokens_seen']:,} tokens at {meta['tokens_per_s']:,.0f} tokens/s "
              f"on {meta['corpus']['source']}")
        print(_line("validation", meta["val"]))
        print(_line("test", meta["test"]))
        return 0
    if args.max_windows is not None and args.max_windows < 1:
        raise BadInputError(f"--max-windows {args.max_windows}: must be >= 1, e.g. --max-windows 100")
    result = eval_lm(args.model, args.checkpoint, args.data, args.max_windows)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"{args.model} from {args.checkpoint} on {result['corpus']['source']}")
        print(_line("validation", result["val"]))
        print(_line("test", result["test"]))
    return 0
