"""The setup ledger: what the AdaHessian paper states for each table (results/paper/setup.csv), where a paper_* study
departs from it (deviations.csv) and which tables each study reproduces (studies.csv).

A ledger row names a public config key (`optimizer.lr`, `trainer.epochs`, ...) and the paper's value, with its quote
and page. A row applies to a run of a study when its table is one the study reproduces and its task and optimizer
patterns match the run's; where two tables of one study set the same key (Table 6 scales Table 3's lr), the later
table's row wins. Values are YAML scalars or lists, or `=EXPR`: arithmetic over numbers and config keys
(`=5e-4/optimizer.lr`). Scope `study` rows hold for the study as a whole: `runs` is the number of seeds per cell, any
other key the sorted set of values its runs take. A row without a key records a setting the config cannot express;
its `basis` says where it lives. A deviation applies to a run when its task and optimizer match and, if it names a
key, the run's value equals the deviation's: `bench report` lists them under each paper table.
"""

from __future__ import annotations

import ast
import csv
import fnmatch
import itertools
import json
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from bench.errors import UsageError

PAPER_DIR = Path(__file__).resolve().parents[1] / "results" / "paper"
TABLES = ("table2", "table3", "table4", "table5", "table6", "table7", "table8", "fig6")
SCOPES = ("run", "study")
RUNS = "runs"  # the study-scope key counting seeds per cell
ROW_COLUMNS = ("id", "table", "task", "optimizer", "key", "scope", "value", "quote", "page", "where", "basis")
DEVIATION_COLUMNS = ("id", "task", "optimizer", "key", "value", "ledger", "variant", "reason", "source")
STUDY_COLUMNS = ("study", "tables", "note")
CELL_FREE = ("seed", "+lm_run", "task", "optimizer")  # swept keys that do not split a study into cells
_MISSING = object()
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Row:
    """One setting the paper states."""

    id: str
    table: str
    task: str
    optimizer: str
    key: str
    scope: str
    value: Any
    quote: str
    page: int
    where: str
    basis: str


@dataclass(frozen=True)
class Deviation:
    """One declared departure of a paper_* study (or a labelled variant of one) from the ledger."""

    id: str
    task: str
    optimizer: str
    key: str
    value: Any
    ledger: tuple[str, ...]
    variant: str
    reason: str
    source: str


@dataclass(frozen=True)
class Ledger:
    rows: tuple[Row, ...]
    deviations: tuple[Deviation, ...]
    studies: dict[str, tuple[str, ...]]


def _read(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != columns:
                raise UsageError(f"{path}: columns {reader.fieldnames}, expected {','.join(columns)}")
            return list(reader)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the ledger ({exc.strerror}); restore it from git") from None


def parse_value(text: str, where: str) -> Any:
    """A cell's value: `=EXPR` stays an expression (checked here), anything else is YAML."""
    if text.startswith("="):
        try:
            _check_expr(ast.parse(text[1:], mode="eval").body)
        except (SyntaxError, ValueError) as exc:
            raise UsageError(f"{where}: value {text!r} is not arithmetic over numbers and config keys ({exc})") \
                from None
        return text
    return _number(yaml.safe_load(text)) if text else None


def _number(value: Any) -> Any:
    """YAML 1.1 reads `1e-07` (no dot) as a string; the ledger means the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_expr(node: ast.AST) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        _check_expr(node.left)
        _check_expr(node.right)
    elif not (isinstance(node, (ast.Name, ast.Attribute)) or
              (isinstance(node, ast.Constant) and isinstance(node.value, (int, float)))):
        raise ValueError(f"unsupported {type(node).__name__}")


def _dotted(node: ast.AST) -> str:
    return f"{_dotted(node.value)}.{node.attr}" if isinstance(node, ast.Attribute) else node.id  # type: ignore


def _evaluate(node: ast.AST, cfg: DictConfig) -> float:
    if isinstance(node, ast.BinOp):
        return _OPS[type(node.op)](_evaluate(node.left, cfg), _evaluate(node.right, cfg))
    if isinstance(node, ast.Constant):
        return float(node.value)
    value = OmegaConf.select(cfg, _dotted(node), default=_MISSING)
    if value is _MISSING or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise KeyError(_dotted(node))
    return float(value)


def resolve(value: Any, cfg: DictConfig) -> Any:
    """The ledger's value for this run: an `=EXPR` is computed from the run's config."""
    if isinstance(value, str) and value.startswith("="):
        return _evaluate(ast.parse(value[1:], mode="eval").body, cfg)
    return value


def same(a: Any, b: Any) -> bool:
    """Config value equality as a reader means it: numbers to 1e-9 relative, lists element-wise."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    numeric = (int, float)
    if isinstance(a, numeric) and isinstance(b, numeric) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def matches(patterns: str, name: str) -> bool:
    """`glue_*`, `*`, or several patterns separated by `;`."""
    return any(fnmatch.fnmatchcase(name, p.strip()) for p in patterns.split(";"))


def load(folder: Path = PAPER_DIR) -> Ledger:
    """Read and validate the three files; a mistake is a one-line error naming the file and row."""
    rows, deviations, studies = [], [], {}
    path = folder / "setup.csv"
    for n, r in enumerate(_read(path, ROW_COLUMNS), start=2):
        where = f"{path}:{n} ({r['id']})"
        if r["table"] not in TABLES or r["scope"] not in SCOPES or not r["page"].isdigit():
            raise UsageError(f"{where}: table/scope/page {r['table']}/{r['scope']}/{r['page']}: expected one of "
                             f"{', '.join(TABLES)} / {' or '.join(SCOPES)} / a page number")
        if not (r["id"] and r["task"] and r["optimizer"] and r["quote"] and r["where"]):
            raise UsageError(f"{where}: id, task, optimizer, quote and where must all be filled in")
        if not r["key"] and (r["scope"] != "run" or not r["basis"] or r["basis"] == "paper"):
            raise UsageError(f"{where}: a row without a key needs scope run and a basis saying where it lives")
        rows.append(Row(**{**r, "value": parse_value(r["value"], where), "page": int(r["page"])}))
    ids = [row.id for row in rows]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{path}: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    seen = {(row.table, row.task, row.optimizer, row.key) for row in rows if row.key}
    if len(seen) != sum(1 for row in rows if row.key):
        raise UsageError(f"{path}: two rows set the same key for the same table, task and optimizer")
    path = folder / "deviations.csv"
    for n, r in enumerate(_read(path, DEVIATION_COLUMNS), start=2):
        where = f"{path}:{n} ({r['id']})"
        refs = tuple(x for x in r["ledger"].split(";") if x)
        unknown = [x for x in refs if x not in ids]
        if unknown or not (r["id"] and r["task"] and r["optimizer"] and r["variant"] and r["reason"] and r["source"]):
            raise UsageError(f"{where}: unknown ledger ids {unknown} or an empty id/task/optimizer/variant/reason/"
                             "source")
        deviations.append(Deviation(**{**r, "value": parse_value(r["value"], where), "ledger": refs}))
    path = folder / "studies.csv"
    for n, r in enumerate(_read(path, STUDY_COLUMNS), start=2):
        tables = tuple(r["tables"].split(";"))
        if not set(tables) <= set(TABLES):
            raise UsageError(f"{path}:{n}: tables {r['tables']}: expected ';'-separated names of {', '.join(TABLES)}")
        studies[r["study"]] = tables
    return Ledger(tuple(rows), tuple(deviations), studies)


def _names(cfg: DictConfig) -> tuple[str, str]:
    return str(cfg.task.name), str(cfg.optimizer.name)


def rows_for(ledger: Ledger, study: str, cfg: DictConfig) -> list[Row]:
    """The ledger rows that apply to one run of `study`; a later table's row replaces an earlier one's key."""
    task, opt = _names(cfg)
    chosen: dict[str, Row] = {}
    for table in ledger.studies.get(study, ()):
        for row in ledger.rows:
            if row.table == table and matches(row.task, task) and matches(row.optimizer, opt):
                chosen[row.key or row.id] = row
    return list(chosen.values())


def deviations_for(ledger: Ledger, cfg: DictConfig) -> list[Deviation]:
    """The declared deviations one run's config shows."""
    task, opt = _names(cfg)
    found = []
    for dev in ledger.deviations:
        if not (matches(dev.task, task) and matches(dev.optimizer, opt)):
            continue
        if dev.key:
            value = OmegaConf.select(cfg, dev.key, default=_MISSING)
            if value is _MISSING or not same(_plain(value), resolve(dev.value, cfg)):
                continue
        found.append(dev)
    return found


def applies(cfg: DictConfig, ledger: Ledger | None = None) -> tuple[list[Row], list[Deviation]]:
    """For one run's composed config: the ledger rows of its study's tables, and the deviations it shows."""
    ledger = ledger or load()
    return rows_for(ledger, str(cfg.get("study", "")), cfg), deviations_for(ledger, cfg)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _covered(ledger: Ledger, cfg: DictConfig, key: str, value: Any) -> bool:
    task, opt = _names(cfg)
    return any(dev.key == key and matches(dev.task, task) and matches(dev.optimizer, opt)
               and same(value, resolve(dev.value, cfg)) for dev in ledger.deviations)


def check_run(ledger: Ledger, study: str, cfg: DictConfig) -> list[str]:
    """Problems of one run against its run-scope rows: a key gone from the config, or a value the ledger does
    not have and no deviation declares."""
    problems = []
    task, opt = _names(cfg)
    for row in rows_for(ledger, study, cfg):
        if row.scope != "run" or not row.key:
            continue
        value = OmegaConf.select(cfg, row.key, default=_MISSING)
        if value is _MISSING:
            problems.append(f"{study} {task}/{opt}: ledger row {row.id} names {row.key}, which the config no "
                            "longer has")
            continue
        value, expected = _plain(value), resolve(row.value, cfg)
        if not same(value, expected) and not _covered(ledger, cfg, row.key, value):
            problems.append(f"{study} {task}/{opt}: {row.key}={value!r} but the paper's is {expected!r} (ledger "
                            f"{row.id}, {row.where} p. {row.page}) and no deviation declares it")
    for dev in ledger.deviations:
        if dev.key and matches(dev.task, task) and matches(dev.optimizer, opt) \
                and OmegaConf.select(cfg, dev.key, default=_MISSING) is _MISSING:
            problems.append(f"{study} {task}/{opt}: deviation {dev.id} names {dev.key}, which the config no "
                            "longer has")
    return problems


def check_study(ledger: Ledger, study: str, runs: list[tuple[dict[str, str], DictConfig]]) -> list[str]:
    """Problems of a whole study: every run's, then the study-scope rows (`runs` per cell, swept values)."""
    problems = [p for _, cfg in runs for p in check_run(ledger, study, cfg)]
    for table in ledger.studies.get(study, ()):
        for row in (r for r in ledger.rows if r.table == table and r.scope == "study"):
            picked = [(o, c) for o, c in runs if matches(row.task, _names(c)[0]) and matches(row.optimizer,
                                                                                            _names(c)[1])]
            if not picked or _replaced(ledger, study, row):
                continue
            if row.key == RUNS:
                cells: dict[tuple[Any, ...], set[int]] = {}
                for overrides, cfg in picked:
                    cell = (*_names(cfg), *sorted((k, v) for k, v in overrides.items() if k not in CELL_FREE))
                    cells.setdefault(cell, set()).add(int(cfg.seed))
                counts = sorted({len(seeds) for seeds in cells.values()})
                if counts != [row.value]:
                    problems.append(f"{study}: {row.task}/{row.optimizer} runs {counts} seeds per cell, the paper "
                                    f"{row.value} (ledger {row.id}, {row.where} p. {row.page})")
                continue
            values = sorted({json.dumps(_plain(OmegaConf.select(c, row.key, default=None))) for _, c in picked},
                            key=lambda v: json.loads(v))
            found = [json.loads(v) for v in values]
            if not same(found, row.value):
                problems.append(f"{study}: {row.key} takes {found}, the paper {row.value} (ledger {row.id})")
    return problems


def _replaced(ledger: Ledger, study: str, row: Row) -> bool:
    """A study-scope row that a later table of the study overrides for the same task, optimizer and key."""
    tables = ledger.studies[study]
    later = tables[tables.index(row.table) + 1:]
    return any(r.table in later and r.key == row.key and r.task == row.task and r.optimizer == row.optimizer
               for r in ledger.rows)


def study_runs(experiment: str) -> list[tuple[dict[str, str], DictConfig]]:
    """Every run of `experiment=NAME` as `bench run -m` would compose it: (its sweep overrides, its resolved config).
    Hydra composes once per choice of config groups; plain keys (seed, lr_scale, ...) are then set on a copy, as
    Hydra applies command-line key overrides after composition, which keeps a 100-run study to seconds."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bench.config import CONF_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        base = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        params = OmegaConf.to_container(base.hydra.sweeper.params) or {}
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        axes = [[(f"+{o.key_or_group}" if o.is_add() else o.key_or_group, str(v))
                 for v in (o.sweep_string_iterator() if o.is_sweep_override() else [o.get_value_element_as_str()])]
                for o in parsed]
        composed: dict[tuple[tuple[str, str], ...], DictConfig] = {}
        runs = []
        for combo in itertools.product(*axes):
            groups = tuple((k, v) for k, v in combo if (CONF_DIR / k.lstrip("+")).is_dir())
            if groups not in composed:
                composed[groups] = compose("config", overrides=[f"experiment={experiment}",
                                                                *(f"{k}={v}" for k, v in groups)])
            cfg = composed[groups].copy()
            for key, value in combo:
                if (key, value) not in groups:
                    OmegaConf.update(cfg, key, _number(yaml.safe_load(value)), force_add=False)
            OmegaConf.resolve(cfg)
            runs.append((dict(combo), cfg))
    return runs


def report_notes(configs: Iterable[dict[str, Any]], ledger: Ledger | None = None) -> list[str]:
    """One note per declared deviation that any of these runs (record configs) shows, with its run count."""
    ledger = ledger or load()
    counts: dict[str, int] = {}
    for config in configs:
        for dev in deviations_for(ledger, OmegaConf.create(config)):
            counts[dev.id] = counts.get(dev.id, 0) + 1
    notes = []
    for dev in ledger.deviations:
        if dev.id in counts:
            setting = f"{dev.key}={dev.value}" if dev.key else "not a config key"
            runs = f"{counts[dev.id]} run{'s' if counts[dev.id] != 1 else ''}"
            notes.append(f"Deviation from the paper [{dev.id}] ({runs}; {setting}; {dev.variant}): "
                         f"{dev.reason}. Source: {dev.source}.")
    if notes:
        notes.insert(0, "Declared deviations (results/paper/deviations.csv; the paper's setup: setup.csv):")
    return notes


def section_notes(title: str, runs: Any) -> list[str]:
    """The deviation notes for one `bench report` section: the runs of the paper table it shows (by its title; a
    section that is no paper table gets none). `runs` is bench.recordset's run frame (its `task`, `config`)."""
    from bench import paper

    tasks: tuple[str, ...] = ()
    for layout in paper.LAYOUTS.values():
        tasks = layout.tasks if layout.title == title else tasks
    for sweep in paper.SWEEPS.values():
        tasks = (sweep.task,) if sweep.title == title and sweep.task else tasks
    if title.startswith("Table 8"):
        tasks = paper.DELAYED_TASKS
    configs = runs.loc[runs["task"].isin(tasks), "config"] if tasks and len(runs) else []
    return report_notes(c for c in configs if c.get("task") and c.get("optimizer"))
