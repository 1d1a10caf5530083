"""The ``studentnas`` command line. Every subcommand has a Python twin in :mod:`studentnas`.

Exit codes: 0 ok, 2 bad input (one line on stderr, no traceback), 1 unexpected failure (the
traceback is shown with ``--debug``), 130 interrupted (resume with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from studentnas.cli.search import (
    add_export,
    add_pick,
    add_report,
    add_search,
    run_export,
    run_pick,
    run_report,
    run_search,
)
from studentnas.core.errors import BadInputError, StudentNASError

FORMATTER = argparse.RawDescriptionHelpFormatter


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from studentnas.cli.bench import add_bench

    add_bench(sub, _Parser)


def _run_bench(args: argparse.Namespace) -> int:
    from studentnas.cli.bench import run_bench

    return run_bench(args)


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
    from studentnas.core.registry import PROXIES, SEARCHERS, SPACES

    if args.what == "teachers":
        import timm

        SPACES.load()  # space plugins register timm models too (cifar_resnet20 ...)
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


def _add_teacher(sub: argparse._SubParsersAction) -> None:
    from studentnas.cli.distill import add_teacher

    add_teacher(sub, _Parser)


def _run_teacher(args: argparse.Namespace) -> int:
    from studentnas.cli.distill import run_teacher

    return run_teacher(args)


def _add_distill(sub: argparse._SubParsersAction) -> None:
    from studentnas.cli.distill import add_distill

    add_distill(sub)


def _run_distill(args: argparse.Namespace) -> int:
    from studentnas.cli.distill import run_distill

    return run_distill(args)


def _add_lm(sub: argparse._SubParsersAction) -> None:
    from studentnas.cli.lm import add_lm

    add_lm(sub, _Parser)


def _run_lm(args: argparse.Namespace) -> int:
    from studentnas.cli.lm import run_lm

    return run_lm(args)


def _add_puzzle(sub: argparse._SubParsersAction) -> None:
    from studentnas.cli.puzzle import add_puzzle

    add_puzzle(sub, _Parser)


def _run_puzzle(args: argparse.Namespace) -> int:
    from studentnas.cli.puzzle import run_puzzle

    return run_puzzle(args)


COMMANDS = {"search": (add_search, run_search), "pick": (add_pick, run_pick),
            "export": (add_export, run_export), "teacher": (_add_teacher, _run_teacher),
            "distill": (_add_distill, _run_distill), "lm": (_add_lm, _run_lm),
            "puzzle": (_add_puzzle, _run_puzzle),
            "bench": (_add_bench, _run_bench), "report": (add_report, run_report),
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
        "  studentnas puzzle --teacher resnet26 --teacher-checkpoint t.safetensors --data fashion-mnist "
        "--budget 50%macs --out runs/p1\n"
        "  studentnas lm train --model gpt_tiny --data fortunes --steps 750 --out lm.safetensors  # byte-level GPT\n"
        "  studentnas bench proxies --ground-truth nats_bench.csv --json bench.json    # proxies vs NB201\n"
        "  studentnas bench search --ground-truth nats_bench.csv --proxy zc_ensemble --json s.json\n"
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
