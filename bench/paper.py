"""The paper's tables: their layouts, the published numbers (results/paper/), and ours beside them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from bench.config import CONF_DIR
from bench.fingerprint import flat
from bench.recordset import label_of

PAPER_CSV = Path(__file__).resolve().parents[1] / "results" / "paper" / "adahessian.csv"
PINN_CSV = PAPER_CSV.with_name("pinn.csv")  # published PINN numbers (other papers than AdaHessian's)
PINN = "pinn"
GLUE_TASKS = ("glue_rte", "glue_mrpc", "glue_stsb", "glue_sst2", "glue_qnli", "glue_qqp", "glue_mnli_m",
              "glue_mnli_mm")
DELAYED_TASKS = ("cifar10_resnet20", "cifar10_resnet32")
DELAYED_EVERY = (1, 2, 3, 4, 5)
FALLBACK_BASELINES = ("adam", "adamw", "sgd")  # for tasks the paper does not have
# Tasks whose published value is the best test score over epochs, not the final one: the authors' CIFAR script
# (amirgholami/adahessian image_classification/main.py) prints `Best Acc`, the maximum over epochs. For these the
# paper layouts and the reproduction verdict use each run's metric.best, like with like.
BEST_OF_EPOCHS = frozenset(DELAYED_TASKS)
# The reproduction verdict's equivalence margin: this many of the paper's std where the paper gives one ...
MARGIN_STDS = 2.0
# ... else this per-metric default, in the metric's units (single published runs: ImageNet, WMT14, WikiText-103,
# GLUE, DLRM, Table 8): about the run-to-run spread the paper reports for the same metric elsewhere, or what its
# text calls a difference worth reporting.
METRIC_MARGINS = {"top1": 0.5, "bleu": 0.3, "ppl": 2.0, "glue": 1.0, "glue_avg": 0.5, "accuracy": 0.02}


def margin_for(metric: str, paper_std: float) -> tuple[float, str]:
    """The equivalence margin of one paper cell and where it comes from."""
    if paper_std == paper_std and paper_std > 0:  # not NaN
        return MARGIN_STDS * paper_std, f"{MARGIN_STDS:g}× paper std"
    if metric in METRIC_MARGINS:
        return METRIC_MARGINS[metric], f"{metric} default (bench/paper.METRIC_MARGINS)"
    return float("nan"), f"no margin for {metric} (add it to bench/paper.METRIC_MARGINS)"


def value_of(task: str) -> str:
    """Which of a run's results a paper cell of `task` is compared with: `best` (over epochs) or `final`."""
    return "best" if task in BEST_OF_EPOCHS else "final"


@dataclass(frozen=True)
class Layout:
    """One paper table: rows are optimizers, columns are `tasks`, deltas are against `baseline`."""

    name: str
    title: str
    table: str  # the `table` column of the reference CSV
    tasks: tuple[str, ...]
    baseline: str
    metric: str
    mode: str = "max"
    average: str | None = None  # a column that is the mean of the other columns (GLUE's avg)


# Adam, not AdamW, is the vision baseline: the paper's headline vision gaps (+1.80/+1.45/+5.55) are vs Adam.
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("cifar10", "Table 2: CIFAR-10 top-1 (%)", "table2", DELAYED_TASKS, "adam", "top1"),
    Layout("imagenet", "Table 2: ImageNet top-1 (%)", "table2", ("imagenet_resnet18",), "adam", "top1"),
    Layout("nmt", "Table 3: translation BLEU", "table3", ("iwslt14_transformer", "wmt14_transformer"),
           "adamw", "bleu"),
    Layout("lm", "Table 4: language-model perplexity", "table4",
           ("ptb_transformer_lm", "wikitext103_transformer_lm"), "adamw", "ppl", "min"),
    Layout("glue", "Table 5: SqueezeBERT on GLUE dev", "table5", (*GLUE_TASKS, "glue_avg"), "adamw", "glue",
           average="glue_avg"),
    Layout("dlrm", "DLRM on Criteo: test accuracy (%) (text and Fig. 6)", "fig6", ("criteo_dlrm",), "adagrad",
           "accuracy"),
)}
DELAYED = "delayed"
# Paper table numbers as names for one or more layouts.
ALIASES: dict[str, tuple[str, ...]] = {"table2": ("cifar10", "imagenet"), "table3": ("nmt",),
                                       "table4": ("lm",), "table5": ("glue",), "fig6": ("dlrm",),
                                       "table8": (DELAYED,)}


@dataclass(frozen=True)
class Sweep:
    """A table over one hyperparameter: rows are (task, optimizer), columns the swept values. A paper table fixes
    its task, values and optimizers; a harness sweep (`task=None`, empty tuples) takes them from the runs."""

    name: str
    title: str
    task: str | None
    key: str  # a column of the run frame (bench.recordset)
    values: tuple[float, ...]
    optimizers: tuple[str, ...]
    metric: str = "bleu"
    source: str | None = None  # where the reference values come from; None: no paper has them
    absent: float | None = None  # the value of a run that does not set `key` (None: such a run is not in the table)


# The reference CSV names a swept cell's optimizer `adamw@lr_scale=2`, `adahessian@block_size=32`.
SWEEPS: dict[str, Sweep] = {sweep.name: sweep for sweep in (
    Sweep("table6", "Table 6: IWSLT14 test BLEU with the recipe lr scaled (lr_scale)", "iwslt14_transformer",
          "lr_scale", (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0), ("adamw", "adahessian"),
          source="arXiv 2006.00719v2 Table 6", absent=1.0),
    Sweep("table7", "Table 7: IWSLT14 test BLEU by AdaHessian block size", "iwslt14_transformer", "block_size",
          (1, 2, 4, 8, 16, 32, 64, 128), ("adahessian",), source="arXiv 2006.00719v2 Table 7"),
    Sweep("lr", "Learning-rate sweep: the task's metric by optimizer.lr (e.g. experiment=zoo_lr_sweep)", None, "lr",
          (), (), metric=""),
    Sweep("lr_scale", "lr-scale sweep: the task's metric by lr_scale, the multiplier of each recipe's lr "
          "(experiment=paper_glue_tune)", None, "lr_scale", (), (), metric=""),
)}


def sweep_label(optimizer: str, key: str, value: float) -> str:
    return f"{optimizer}@{key}={value:g}"


def sweep(table: Sweep, runs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, optimizer, value): completed runs, mean ± std of their result, diverged count, the
    paper's value and ours minus it (a reference row with no value whose source says "Diverge" is a run the paper
    reports as diverged). Rows are run labels (`adam→lbfgs` apart from `adam`). Values that ran but the paper
    lacks are added; a run without the key takes `table.absent`, or is left out when there is none."""
    mine = runs if table.task is None else runs[runs["task"] == table.task]
    mine = mine.assign(value=mine[table.key] if table.absent is None else mine[table.key].fillna(table.absent))
    mine = mine.dropna(subset=["value"])
    if table.optimizers:
        mine = mine[mine["name"].isin(table.optimizers)]
    values = sorted(set(table.values) | set(mine["value"]))
    ref = reference[reference["table"] == table.name].set_index("optimizer")
    diverged = set(ref.index[ref["mean"].isna() & ref["source"].str.contains("Diverge")])  # the paper's "Diverge"
    tasks = [table.task] if table.task else list(dict.fromkeys(mine["task"]))
    rows = []
    for task in tasks:
        here = mine[mine["task"] == task]
        metric = table.metric or (str(here["metric"].iloc[0]) if len(here) else "")
        for opt in table.optimizers or list(dict.fromkeys(here["name"])):
            for value in values:
                group = here[(here["name"] == opt) & (here["value"] == value)]
                done = group.loc[group["status"] == "completed", "final"].dropna()
                label = sweep_label(opt, table.key, value)
                rows.append({"task": task, "optimizer": opt, "value": value, "n": len(done), "mean": done.mean(),
                             "std": done.std(ddof=1), "n_diverged": int((group["status"] == "diverged").sum()),
                             "paper": ref["mean"].get(label, float("nan")),
                             "paper_std": ref["std"].get(label, float("nan")),
                             "paper_n": ref["n_runs"].get(label, float("nan")), "metric": metric,
                             "paper_diverged": label in diverged})
    out = pd.DataFrame(rows, columns=["task", "optimizer", "value", "n", "mean", "std", "n_diverged", "paper",
                                      "paper_std", "paper_n", "metric", "paper_diverged"])
    out["diff"] = out["mean"] - out["paper"]
    return out


def model_notes(tasks: Iterable[str]) -> dict[str, str]:
    """Each task's `model_note` from its conf/task yaml: how our model differs from the paper's, if it does."""
    notes = {}
    for task in tasks:
        path = CONF_DIR / "task" / f"{task}.yaml"
        note = OmegaConf.select(OmegaConf.load(path), "task.model_note") if path.is_file() else None
        if note:
            notes[task] = str(note)
    return notes


def load_reference(path: Path = PAPER_CSV) -> pd.DataFrame:
    """The published numbers, one row per (table, task, optimizer, metric)."""
    return pd.read_csv(path)


def baseline_for(task: str, labels: Iterable[str]) -> str | None:
    """What deltas are taken against: the paper table's baseline, else the first of Adam/AdamW/SGD run."""
    for layout in LAYOUTS.values():
        if task in layout.tasks:
            return layout.baseline
    ran = set(labels)
    return next((b for b in FALLBACK_BASELINES if b in ran), None)


def _ordered(first: Iterable[str], more: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *sorted(more)]))


def compare(layout: Layout, summary: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (optimizer, task): our mean ± std and n, the paper's value, std and n, both deltas to the
    baseline. Ours is the final metric, or the best over epochs where the paper's is (BEST_OF_EPOCHS; `value`).

    Every task of the layout is present, with NaN where nothing ran; `diff` is ours minus the paper.
    """
    ref = reference[(reference["table"] == layout.table) & reference["task"].isin(layout.tasks)]
    ours = summary[summary["task"].isin(layout.tasks)]
    optimizers = _ordered([*ref["optimizer"], layout.baseline], set(ours["label"]) - set(ref["optimizer"]))
    grid = pd.MultiIndex.from_product([optimizers, layout.tasks], names=["optimizer", "task"])
    mine = ours.set_index(["label", "task"]).reindex(grid)
    best = grid.get_level_values("task").isin(list(BEST_OF_EPOCHS))
    out = pd.DataFrame({"n": mine["n_done"].fillna(0).astype(int),
                        "mean": mine["best_mean"].where(best, mine["mean"]),
                        "std": mine["best_std"].where(best, mine["std"]),
                        "value": ["best" if b else "final" for b in best]}, index=grid)
    theirs = ref.set_index(["optimizer", "task"]).reindex(grid)
    out["paper"], out["paper_std"], out["paper_n"] = theirs["mean"], theirs["std"], theirs["n_runs"]
    if layout.average is not None:
        _fill_average(out, layout.average)
    out["diff"] = out["mean"] - out["paper"]
    tasks = grid.get_level_values("task")
    for col, delta in (("mean", "delta"), ("paper", "paper_delta")):
        out[delta] = out[col] - out.loc[layout.baseline, col].reindex(tasks).to_numpy()
    return out.reset_index()


def _fill_average(out: pd.DataFrame, average: str) -> None:
    """An optimizer with no run of the average column gets the mean of the other columns it ran. When the tasks
    that ran (for any optimizer) are not all of them, the paper's averages are recomputed over those tasks, the
    same set for every optimizer, so the paper's Δ between optimizers stays like for like."""
    means = out["mean"].unstack("task").drop(columns=average)
    papers = out["paper"].unstack("task").drop(columns=average)
    ran = means.columns[means.notna().any(axis=0)]
    if 0 < len(ran) < len(means.columns):
        for opt in papers.index:
            out.loc[(opt, average), "paper"] = papers.loc[opt, ran].mean()
    for opt in means.index:
        if pd.isna(out.loc[(opt, average), "mean"]) and means.loc[opt].notna().any():
            out.loc[(opt, average), "mean"] = means.loc[opt].mean()


def delayed(summary: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Table 8: AdaHessian with the Hessian refreshed every N steps; accuracy, and cost relative to SGD/Adam.

    One row per (N, fraction, task) for N = 1..5 with the full batch, and every other (N, curvature batch
    fraction) that ran (`trainer.hessian_batch_fraction`), on the paper's two tasks and every task with
    AdaHessian runs. Cost ratios divide mean seconds per step over completed runs of the same task.
    """
    ada = summary[summary["optimizer"] == "adahessian"]
    every = sorted(set(DELAYED_EVERY) | set(ada["update_each"]))
    ran = set(zip(ada["update_each"], ada.get("hessian_batch_fraction", pd.Series(1.0, index=ada.index)),
                  strict=True))
    rows = sorted({(n, 1.0) for n in every} | ran, key=lambda nf: (nf[0], -nf[1]))
    tasks = _ordered(DELAYED_TASKS, set(ada["task"]) - set(DELAYED_TASKS))
    out = pd.DataFrame([(n, f, task) for n, f in rows for task in tasks], columns=["every", "fraction", "task"])
    labels = [label_of("adahessian", n, f) for n, f in zip(out["every"], out["fraction"], strict=True)]
    by_label = summary.set_index(["task", "label"])
    mine = by_label.reindex(list(zip(out["task"], labels, strict=True)))
    out["metric"] = out["task"].map(summary.groupby("task")["metric"].first()).fillna("top1")
    out["n"] = mine["n_done"].fillna(0).astype(int).to_numpy()
    best = out["task"].isin(list(BEST_OF_EPOCHS)).to_numpy()  # Table 8 comes from the same CIFAR script
    out["mean"] = np.where(best, mine["best_mean"], mine["mean"])
    out["std"] = np.where(best, mine["best_std"], mine["std"])
    out["hvp_count"] = mine["hvp_count"].to_numpy()
    for first_order, col in (("sgd", "x_sgd"), ("adam", "x_adam")):
        base = by_label["s_per_step"].reindex([(t, first_order) for t in out["task"]])
        out[col] = mine["s_per_step"].to_numpy() / base.to_numpy()
    ref = reference[reference["table"] == "table8"].set_index(["task", "optimizer", "metric"])
    for metric, col in (("top1", "paper"), ("cost_x_sgd", "paper_x_sgd"), ("cost_x_adam", "paper_x_adam")):
        keys = [(t, f"adahessian@{n}" if f == 1 else "", metric)  # the paper estimates from the full batch
                for t, n, f in zip(out["task"], out["every"], out["fraction"], strict=True)]
        out[col] = ref["mean"].reindex(keys).to_numpy()
        if metric == "top1":
            out["paper_std"] = ref["std"].reindex(keys).to_numpy()
    out["diff"] = out["mean"] - out["paper"]
    return out


# A PINN row's rel-L2 spans four decades across setups, so its reproduction is judged on log10 rel-L2 within a
# factor of 2 (results/paper/pinn.csv gives no std); a published best-of-sweep row is compared with our geometric mean.
PINN_LOG_MARGIN = math.log10(2.0)


def _same(value: object, wanted: str) -> bool:
    try:
        return math.isclose(float(value), float(wanted))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value) == wanted


def pinn_conditions(config: str) -> dict[str, str]:
    """A published row's `config` column (`key=value;key=value`): the setup a run must have to be compared."""
    return dict(item.split("=", 1) for item in config.split(";") if item) if isinstance(config, str) else {}


def pinn_matches(runs: pd.DataFrame, optimizer: str, conditions: dict[str, str]) -> pd.DataFrame:
    """Our completed PINN runs of `optimizer` (its name, e.g. `adam→lbfgs`) whose config has every condition."""
    mine = runs[runs["task"].str.startswith("pinn_") & (runs["name"] == optimizer) & (runs["status"] == "completed")]
    keep = [i for i, config in mine["config"].items()
            if all(_same(flat(config).get(key), value) for key, value in conditions.items())]
    return mine.loc[keep].dropna(subset=["final"])


def pinn(runs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """PINN tasks: per (task, optimizer label), rel-L2 median and spread (min, max) over completed seeds, median
    wall time, diverged and failed counts; then the published rows of `results/paper/pinn.csv` for those tasks.
    A label such as `adam→lbfgs` is a run whose `trainer.switch_to` took over at `trainer.switch_at`."""
    mine = runs[runs["task"].str.startswith("pinn_")]
    rows = []
    for (task, label), g in mine.groupby(["task", "label"], sort=True):
        done = g[g["status"] == "completed"].dropna(subset=["final"])
        rows.append({"task": task, "optimizer": label, "n": len(done), "median": done["final"].median(),
                     "lo": done["final"].min(), "hi": done["final"].max(), "wall_s": done["wall_s"].median(),
                     "diverged": int((g["status"] == "diverged").sum()), "failed": int((g["status"] == "failed").sum()),
                     "source": "ours"})
    rows += [{"task": r.task, "optimizer": r.optimizer, "n": r.n_runs, "median": r.mean, "lo": math.nan,
              "hi": math.nan, "wall_s": math.nan, "diverged": math.nan, "failed": math.nan, "source": r.source,
              "conditions": pinn_conditions(r.config)}
             for r in reference.itertuples()]
    columns = ["task", "optimizer", "n", "median", "lo", "hi", "wall_s", "diverged", "failed", "source", "conditions"]
    return pd.DataFrame(rows, columns=columns).sort_values(["task", "source", "optimizer"], kind="stable")
