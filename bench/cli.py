"""`bench`: run (a Hydra app over conf/), list, status, report, check, perf, data, studies.

User mistakes end in one line on stderr and exit code 2; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bench.config import choices, register_resolvers
from bench.errors import UsageError, print_error


def cmd_list(_: argparse.Namespace) -> int:
    for group in ("task", "optimizer", "experiment", "launcher", "logger", "recipe"):
        print(f"{group + 's':12s} {' '.join(choices(group))}")
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    from bench import check, data, perf, report, status, studies

    for name, module, help_text in (
        ("data", data, "prepare a data set once into the cache its task reads"),
        ("report", report, "rebuild the paper's tables from run records"),
        ("check", check, "compare a study with a committed baseline (exit 1 on regression)"),
        ("perf", perf, "measured step-time ratios in one process"),
        ("status", status, "where each run of a study stands: running, interrupted, completed, ..."),
        ("studies", studies, "run the shipped studies into results/studies/ and regenerate the README table"),
    ):
        parser = sub.add_parser(name, help=help_text)
        module.add_arguments(parser)
        parser.set_defaults(handler=module.run)


def parse_tool_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="train: bench run task=T optimizer=O seed=S [overrides] [-m for sweeps]")
    sub.add_parser("list", help="the tasks, optimizers and experiments in conf/").set_defaults(handler=cmd_list)
    add_report(sub)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    register_resolvers()
    if argv and argv[0] == "run":
        from bench.launch import run_command

        return run_command(argv[1:])
    args = parse_tool_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        print_error(str(exc))
        return UsageError.exit_code

