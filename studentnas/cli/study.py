"""The ``bench study`` subcommands of the ``studentnas`` CLI (registered from :mod:`studentnas.cli.bench`): the
studies that judge the tool on real distillations. Their flags and help come from :mod:`studentnas.studies`,
which ``scripts/search_quality.py`` and ``scripts/kd_vs_ce.py`` run with the same flags."""

from __future__ import annotations

import argparse

FORMATTER = argparse.RawDescriptionHelpFormatter

STUDY_HELP = """\
Studies that judge the tool on real distillations (they train a teacher and students; see each study's --help).

  studentnas bench study search-quality ...   does the search pick students that distil better?
  studentnas bench study kd-vs-ce ...         KD against CE only for one student, per seed

Each writes a resumable folder (--out): rerunning the same command continues it.
"""


def add_study(kinds: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser]) -> None:
    """Register ``bench study search-quality`` and ``bench study kd-vs-ce`` under ``bench``'s subcommands."""
    from studentnas.studies.kd_vs_ce import options as kd_vs_ce
    from studentnas.studies.search_quality import options as search_quality

    p = kinds.add_parser("study", help="studies with real distillations: search quality, KD vs CE only",
                         description=STUDY_HELP, formatter_class=FORMATTER)
    studies = p.add_subparsers(dest="study", required=True, metavar="STUDY", parser_class=parser_class)
    q = studies.add_parser("search-quality", help="does the search pick students that distil better?",
                           description=search_quality.HELP, formatter_class=FORMATTER)
    search_quality.add_arguments(q)
    k = studies.add_parser("kd-vs-ce", help="KD against CE only for one student",
                           description=kd_vs_ce.HELP, formatter_class=FORMATTER)
    kd_vs_ce.add_arguments(k)


def run_study(args: argparse.Namespace) -> int:
    """Run the chosen study and print its markdown table (bad input raises ``BadInputError``: exit status 2)."""
    if args.study == "search-quality":
        from studentnas.studies.search_quality.driver import run_from_args

        report = run_from_args(args)
    else:
        from studentnas.studies.kd_vs_ce.driver import run

        report = run(args)
    print(report["markdown"])
    return 0
