"""GLUE's official metrics, in percent as GLUE and the paper print them, computed by scikit-learn and scipy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    return 100.0 * float(accuracy_score(gold, pred))


def f1(pred: Sequence[int], gold: Sequence[int]) -> float:
    """F1 of the positive class (label 1: paraphrase / duplicate), as GLUE scores MRPC and QQP."""
    return 100.0 * float(f1_score(gold, pred, pos_label=1, zero_division=0))


def mcc(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Matthews correlation (CoLA); 0 when the predictions are constant."""
    return 100.0 * float(matthews_corrcoef(gold, pred))


def _correlation(fn: Callable, pred: Sequence[float], gold: Sequence[float]) -> float:
    pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if np.ptp(pred) == 0 or np.ptp(gold) == 0:
        return 0.0  # undefined for a constant vector; a model that predicts one value has no correlation
    return 100.0 * float(fn(pred, gold)[0])


def pearson(pred: Sequence[float], gold: Sequence[float]) -> float:
    return _correlation(pearsonr, pred, gold)


def spearman(pred: Sequence[float], gold: Sequence[float]) -> float:
    return _correlation(spearmanr, pred, gold)


METRICS: dict[str, Callable[[Sequence, Sequence], float]] = {
    "accuracy": accuracy, "f1": f1, "mcc": mcc, "pearson": pearson, "spearman": spearman}


def score(names: Sequence[str], pred: Sequence, gold: Sequence) -> dict[str, float]:
    """Each named metric of predictions against gold labels (class ids, or scores for STS-B)."""
    return {name: METRICS[name](pred, gold) for name in names}
