"""A hyperparameter chosen on tuning seeds and judged on seeds the choice never saw.

Choosing the best of several lrs on seeds 0-1 and then comparing optimizers on those same seeds reports the lucky
draw, not the optimizer (the winner's curse: up to about 1.8 points on digits, issue 20). A study declares the seeds
that choose (`tuning_seeds`, conf/config.yaml; experiment=zoo_lr_sweep uses 100 and 101); every other seed only
evaluates. A run is a tuning run when its seed is among its own config's `tuning_seeds` (recordset's `tuning`).
Runs are grouped by optimizer `name` (recordset), not by config label, which tells the swept values apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.section import Section

# The value of a run that does not set the key: lr_scale defaults to 1 in every recipe (`oc.select:lr_scale,1.0`), so
# experiment=paper_glue's runs are lr_scale=1 evaluation runs.
ABSENT = {"lr_scale": 1.0}
COLUMNS = ["task", "optimizer", "value", "tuning_seeds", "tuning_mean", "tuning_std", "tuning_n", "eval_seeds",
           "eval_mean", "eval_std", "eval_n", "eval_diverged", "reused_seeds", "ineligible"]


def swept(runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """The runs that carry `key` (a run-frame column such as lr or lr_scale), with its value in `value`; a run
    without it takes its ABSENT value, or is left out where the key has none."""
    value = runs[key].fillna(ABSENT[key]) if key in ABSENT else runs[key]
    return runs.assign(value=value).dropna(subset=["value"])


def _choose(tune: pd.DataFrame) -> tuple[float, list[float]]:
    """The value whose tuning runs all completed with the best mean final metric; values with a diverged, failed or
    unfinished tuning run are not eligible (returned second)."""
    sign = -1.0 if (tune["mode"] == "min").any() else 1.0
    eligible = tune.groupby("value")["status"].agg(lambda s: bool((s == "completed").all()))
    means = (sign * tune[tune["status"] == "completed"].groupby("value")["final"].mean()).reindex(eligible.index)
    ranked = means[eligible & means.notna()]
    chosen = float(ranked.idxmax()) if len(ranked) else np.nan
    return chosen, sorted(float(v) for v in eligible.index[~eligible])


def select(runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per (task, optimizer name) with tuning runs: the value of `key` chosen on the tuning seeds, its tuning
    result, and its result on evaluation runs at that value. An evaluation run on a tuning seed is not independent
    of the choice: it is left out of the evaluation and its seed listed in `reused_seeds`."""
    mine = swept(runs, key)
    rows = []
    for (task, name), group in mine.groupby(["task", "name"], sort=True):
        tune = group[group["tuning"]]
        if tune.empty:
            continue
        chosen, ineligible = _choose(tune)
        tuning_seeds = sorted(set(tune["seed"]))
        at_tune = tune.loc[(tune["value"] == chosen) & (tune["status"] == "completed"), "final"]
        evaluation = group[~group["tuning"] & (group["value"] == chosen)]
        reused = evaluation["seed"].isin(tuning_seeds)
        fresh = evaluation[~reused]
        finals = fresh.loc[fresh["status"] == "completed"].groupby("seed")["final"].mean()
        rows.append({"task": task, "optimizer": name, "value": chosen, "tuning_seeds": tuning_seeds,
                     "tuning_mean": at_tune.mean(), "tuning_std": at_tune.std(ddof=1), "tuning_n": len(at_tune),
                     "eval_seeds": sorted(finals.index), "eval_mean": finals.mean(), "eval_std": finals.std(ddof=1),
                     "eval_n": len(finals), "eval_diverged": int((fresh["status"] == "diverged").sum()),
                     "reused_seeds": sorted(set(evaluation.loc[reused, "seed"])), "ineligible": ineligible})
    return pd.DataFrame(rows, columns=COLUMNS)


def undeclared(runs: pd.DataFrame, key: str) -> list[str]:
    """(task, optimizer) pairs that ran several values of `key` with no tuning seed declared: any choice among them
    would be judged on the seeds that made it."""
    mine = swept(runs, key)
    counts = mine.groupby(["task", "name"]).agg(values=("value", "nunique"), tuning=("tuning", "any"))
    return [f"{task} {name}" for (task, name), r in counts.iterrows() if r["values"] > 1 and not r["tuning"]]


def _seeds(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds)) or "none"


def _mean_std(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "–"
    return f"{mean:.4g}" + ("" if np.isnan(std) else f" ± {std:.2g}") + f" (n={n})"


def selection_section(runs: pd.DataFrame, key: str) -> Section:
    """The report's companion to a sweep table: the value chosen on tuning seeds and how it does on the others."""
    table = select(runs, key)
    rows = []
    for r in table.itertuples():
        flags = [f"evaluation reuses tuning seed(s) {_seeds(r.reused_seeds)}: left out"] if r.reused_seeds else []
        flags += [f"{r.eval_diverged} evaluation run(s) diverged"] if r.eval_diverged else []
        flags += ["no evaluation run at the chosen value yet"] if r.eval_n == 0 and not np.isnan(r.value) else []
        flags += [f"not eligible ({key}={', '.join(f'{v:g}' for v in r.ineligible)}): a tuning run diverged, "
                  "failed or is unfinished"] if r.ineligible else []
        rows.append([r.task, r.optimizer, "–" if np.isnan(r.value) else f"{r.value:g}", _seeds(r.tuning_seeds),
                     _mean_std(r.tuning_mean, r.tuning_std, r.tuning_n), _seeds(r.eval_seeds),
                     _mean_std(r.eval_mean, r.eval_std, r.eval_n), "; ".join(flags)])
    notes = [f"{key} chosen per task and optimizer on the tuning seeds only (a run whose seed is in its config's "
             "tuning_seeds): the best mean final metric among values whose tuning runs all completed. Evaluation: "
             f"completed runs at the chosen {key} on every other seed (mean ± std over seeds); an evaluation run on "
             "a tuning seed is flagged and left out, since the choice saw it."]
    if table.empty:
        notes.append("No run is on a declared tuning seed: declare them with tuning_seeds=[100,101] (see "
                     "experiment=zoo_lr_sweep), then run the chosen value on other seeds.")
    lumped = undeclared(runs, key)
    if lumped:
        notes.append(f"Swept without declared tuning seeds (a choice would reuse its seeds): {', '.join(lumped)}.")
    return Section(f"{key} chosen on tuning seeds, evaluated on the others",
                   ["task", "optimizer", f"chosen {key}", "tuning seeds", "tuning result", "evaluation seeds",
                    "evaluation result", "flags"], rows, notes, align="llrlrlrl")
