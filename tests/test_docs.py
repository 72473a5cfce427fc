"""The manual cannot rot: every `bench` command, relative link and table config key in README.md and docs/*.md
is checked against the code and conf/ it describes.

- A fenced code line that starts with `bench` or `.venv/bin/bench` (after optional `VAR=value` prefixes; `\\`
  continues a line, `&&` separates commands) is a command. `bench run` lines are checked the way `bench run`
  checks them before it starts anything (`bench.launch.validate`: the first value of every key, then each further
  value of each swept key), over the command line's sweep and the experiment's own `hydra.sweeper.params`; a
  non-sweep line also goes through `bench run ... --cfg job` in this process. `$VARS` are expanded as the shell
  would (`~` is not: bash leaves `key=~/x` alone and Hydra's grammar rejects it). Other subcommands are parsed
  by the CLI's own argument parser (task and optimizer names, `bench status` overrides, `--set` keys and
  `--baseline` files checked too); `bench data prepare NAME` runs `NAME --help`.
- A line that ends with the comment `# illustrative` is only a shape to adapt and is skipped (see
  docs/getting-started.md).
- Every relative link `[text](path#anchor)` resolves to a file in the repository and, with an anchor, to a
  heading of that Markdown file (GitHub's slug rules).
- Every backticked dotted config key in a table cell (`task.data_dir`, `trainer.schedule.name=...`) whose first
  part is a top-level config key exists in a composed config (for `task.*`: a task the page names, if any).

No task reads its data while the config is composed, so no stand-in data folder is needed here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from bench import cli
from bench.config import choices, compose_config, register_resolvers
from bench.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ILLUSTRATIVE = "# illustrative"
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
BENCH_LINE = re.compile(r"^\s*([A-Z_][A-Z0-9_]*=\S*\s+)*(\S*/)?bench(\s|$)")
KEY = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z0-9_{},]+)+$")


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fenced_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, logical line) of every fenced code block, `\\` continuations joined."""
    out: list[tuple[int, str]] = []
    inside, pending, start = False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def split_command(text: str) -> tuple[dict[str, str], list[str]] | None:
    """Environment prefixes and argv after `bench`, or None when the line is not a bench command."""
    if not BENCH_LINE.match(text):
        return None
    words = shlex.split(text, comments=True)
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words or Path(words[0]).name != "bench":
        return None
    return env, [os.path.expandvars(w) for w in words[1:]]  # as the shell expands $HOME


def commands(pages: list[Path] = PAGES) -> list[Command]:
    found = []
    for page in pages:
        for number, line in fenced_lines(page):
            if line.rstrip().endswith(ILLUSTRATIVE):
                continue
            for part in line.split("&&"):
                if split_command(part) is not None:
                    found.append(Command(rel(page) if page.is_relative_to(ROOT) else page.name, number, part.strip()))
    return found


# ---- bench run -----------------------------------------------------------------------------------------

def experiment_sweep(overrides: list[str]) -> list[str]:
    """The experiment's own `hydra.sweeper.params` as sweep overrides, minus keys the command line sets."""
    from hydra import compose, initialize_config_dir

    from bench.config import CONF_DIR

    first = [o if "[" in o else o.split(",")[0] for o in overrides if not o.startswith("hydra.")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=first, return_hydra_config=True)
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    given = {o.split("=")[0].lstrip("+~") for o in overrides}
    return [f"{key}={value}" for key, value in params.items() if key not in given]


def check_run(args: list[str]) -> None:
    from bench.launch import validate

    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        swept = experiment_sweep(overrides)
    except HydraException:
        swept = []  # validate() names the mistake in the CLI's own words
    validate([*overrides, *swept])
    if "-m" in args or "--multirun" in args:
        return  # Hydra takes --cfg only for single runs; validate() composed every job of the sweep
    out, argv = io.StringIO(), sys.argv
    try:
        with contextlib.redirect_stdout(out):
            code = cli.main(["run", *args, "--cfg", "job"])
    finally:
        sys.argv = argv  # bench run hands its arguments to Hydra through sys.argv
    cfg = OmegaConf.create(out.getvalue())
    assert code == 0 and isinstance(cfg, DictConfig) and "task" in cfg, f"--cfg job printed no config:\n{out}"


# ---- other subcommands ---------------------------------------------------------------------------------

def check_tool(args: list[str]) -> None:
    if args[:2] == ["data", "prepare"] and len(args) > 2:
        from bench.data import preparer

        with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(io.StringIO()):
            preparer(args[2])(["--help"])
        assert done.value.code == 0
        return
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parsed = cli.parse_tool_args(args)
    except SystemExit:
        raise UsageError(err.getvalue().strip().splitlines()[-1]) from None
    task = getattr(parsed, "task", None)
    if task is not None and task not in choices("task"):
        raise UsageError(f"unknown task '{task}'")
    for name in (getattr(parsed, "optimizers", None) or "").split(","):
        if name and name not in choices("optimizer"):
            raise UsageError(f"unknown optimizer '{name}'")
    if getattr(parsed, "overrides", None):  # bench status RUNS experiment=...: the sweep it plans must compose
        from bench.launch import validate

        validate(parsed.overrides)
    baseline = getattr(parsed, "baseline", None)
    if baseline and not (ROOT / baseline).is_file():
        raise UsageError(f"no baseline file {baseline}")
    for override in getattr(parsed, "set", None) or []:
        key = override.split("=")[0]
        if not key_exists(key, (task,) if task else ()):
            raise UsageError(f"unknown config key '{key}' in --set")


@pytest.mark.parametrize("command", commands(), ids=str)
def test_bench_command(command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    register_resolvers()
    env, args = split_command(command.text)  # type: ignore[misc]
    for name, value in env.items():
        monkeypatch.setenv(name, os.path.expanduser(value))
    try:
        check_run(args[1:]) if args[0] == "run" else check_tool(args)
    except UsageError as exc:
        shown = " ".join(shlex.split(command.text, comments=True))
        pytest.fail(f"{command}: `{shown}`: {exc}", pytrace=False)


# ---- links ---------------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (hyphens and underscores kept), spaces to -."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    inside = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            inside = not inside
        match = None if inside else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
    return frozenset(f"{b}-{i}" if i else b for b, n in seen.items() for i in range(n))


def links() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        inside = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if FENCE.match(line):
                inside = not inside
            if inside:
                continue
            for match in LINK.finditer(CODE_SPAN.sub("", line)):
                target = match.group(1) or match.group(2)
                if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    found.append((rel(page), number, target))
    return found


def test_links_resolve() -> None:
    dead = []
    for page, number, target in links():
        path, _, anchor = target.partition("#")
        file = (ROOT / page).parent / path if path else ROOT / page
        if not file.resolve().exists():
            dead.append(f"{page}:{number}: {target}: no file {rel(file.resolve())}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.resolve()):
            dead.append(f"{page}:{number}: {target}: no heading #{anchor} in {rel(file.resolve())}")
    assert not dead, "dead links:\n" + "\n".join(dead)


# ---- config keys in tables -----------------------------------------------------------------------------

@cache
def composed(group: str, option: str | None) -> DictConfig:
    register_resolvers()
    return compose_config([f"{group}={option}"] if option else [])


def key_exists(key: str, tasks: tuple[str, ...] = ()) -> bool:
    """Whether `key` is in a composed config; `task.*` keys in one of `tasks` (any task when none), other
    group keys in any option of their group."""
    root = key.split(".")[0]
    groups = {"task": tasks or tuple(choices("task")), "optimizer": tuple(choices("optimizer")),
              "logger": tuple(choices("logger")), "launcher": tuple(choices("launcher"))}
    options = groups.get(root, (None,))
    return any(OmegaConf.select(composed(root, o), key, default=KeyError) is not KeyError for o in options)


def table_keys(text: str) -> list[str]:
    """Dotted config keys in backticks in one table cell: `a.b=x` names `a.b`, `a.{b,c}` names `a.b` and `a.c`,
    a placeholder part (`task.routes.NAME`) ends the key there."""
    keys = []
    for span in CODE_SPAN.findall(text):
        for word in span.replace("\\|", "|").split():
            word = word.split("=")[0].rstrip(",")
            if not KEY.match(word):
                continue
            parts = []
            for part in word.split("."):
                if part.isupper():
                    break
                parts.append(part)
            head, _, tail = ".".join(parts).partition("{")
            keys += [head + leaf for leaf in tail.rstrip("}").split(",")] if tail else [head]
    return keys


def test_table_keys_exist() -> None:
    register_resolvers()
    top = set(composed("task", None).keys())
    task_names = choices("task")
    missing = []
    for page in PAGES:
        text = page.read_text()
        named = tuple(t for t in task_names if re.search(rf"`(task=)?{t}`", text))
        for number, line in enumerate(text.splitlines(), 1):
            if not line.startswith("|"):
                continue
            for key in table_keys(line):
                if key.split(".")[0] in top and not key_exists(key, named):
                    missing.append(f"{rel(page)}:{number}: `{key}` is in no composed config"
                                   + (f" of {', '.join(named)}" if named else ""))
    assert not missing, "config keys named in tables but absent:\n" + "\n".join(missing)


def test_commands_found() -> None:
    """The collector itself: the README's sweep and report lines are among the commands it checks."""
    texts = [c.text for c in commands() if c.page == "README.md"]
    assert any(t.startswith("bench run -m") for t in texts) and any(t.startswith("bench report") for t in texts)


def test_collector_reads_fences_and_skips_illustrative(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("bench run outside=a_fence\n```bash\nbench run task=digits \\\n    seed=1  # one run\n"
                    "bench run task=NAME optimizer=NAME  # illustrative\nFOO=1 .venv/bin/bench list && echo\n```\n")
    assert [(c.line, c.text) for c in commands([page])] == [
        (3, "bench run task=digits      seed=1  # one run"), (6, "FOO=1 .venv/bin/bench list")]
