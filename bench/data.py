"""`bench data prepare NAME ARGS...`: the slow, once-only preparation a task family needs (tokenise and BPE,
stream a 45 M-line file into memory maps, index a million image files), into a cache its task then reads.

Each preparer is `prepare(argv: list[str]) -> int` in its task family's own module, parses its own arguments,
and raises `tasks.base.DataError` for bad input (one `error:` line, exit 2)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from bench.errors import UsageError

# name -> "module:function"
PREPARERS: dict[str, str] = {
    "iwslt14": "tasks.nmt.prepare:prepare_iwslt14",
    "wmt14": "tasks.nmt.prepare_wmt14:prepare_wmt14",
    "multi30k": "tasks.nmt.prepare_multi30k:prepare_multi30k",
    "criteo_dlrm": "tasks.dlrm.prepare:prepare_criteo",
    "imagenet": "tasks.imagenet.layout:prepare",
    "wikitext103": "tasks.lm.corpus:prepare_wikitext",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the data sets that have a preparation step")
    prepare = sub.add_parser("prepare", help="prepare a data set into its cache: bench data prepare NAME ARGS...")
    prepare.add_argument("name", help="one of: " + (", ".join(sorted(PREPARERS)) or "(none yet)"))
    prepare.add_argument("args", nargs=argparse.REMAINDER, help="the preparer's own arguments (NAME --help)")


def preparer(name: str) -> Callable[[list[str]], int]:
    if name not in PREPARERS:
        raise UsageError(f"unknown data set '{name}' for bench data prepare; available: "
                         f"{', '.join(sorted(PREPARERS)) or 'none'} (see `bench data list`)")
    module, function = PREPARERS[name].split(":")
    return getattr(importlib.import_module(module), function)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, target in sorted(PREPARERS.items()):
            print(f"{name:16s} {target}")
        return 0
    prepare = preparer(args.name)
    try:
        return prepare(args.args)
    except ValueError as exc:  # tasks.base.DataError: a user's data problem, one line
        raise UsageError(str(exc)) from None
