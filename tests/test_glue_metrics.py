"""GLUE metrics on examples worked by hand, and against scikit-learn / scipy on random ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from tasks.glue import metrics

PRED = [1, 1, 0, 0, 1]
GOLD = [1, 0, 0, 1, 1]  # tp 2, fp 1, fn 1, tn 1


def test_classification_metrics_by_hand() -> None:
    assert metrics.accuracy(PRED, GOLD) == pytest.approx(60.0)
    assert metrics.f1(PRED, GOLD) == pytest.approx(100 * 2 / 3)  # precision = recall = 2/3
    assert metrics.mcc(PRED, GOLD) == pytest.approx(100 * (2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))  # 1/6


def test_correlations_by_hand() -> None:
    # x = [1, 2, 3], y = [1, 2, 4]: sum dxdy = 3, sum dx^2 = 2, sum dy^2 = 42/9
    assert metrics.pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(100 * 3 / math.sqrt(2 * 42 / 9))
    assert metrics.spearman([1, 2, 3], [1, 2, 4]) == pytest.approx(100.0)  # same order
    assert metrics.spearman([3, 2, 1], [1, 2, 4]) == pytest.approx(-100.0)
    assert metrics.pearson([2, 2, 2], [1, 2, 4]) == 0.0  # a constant prediction has no correlation


def test_against_sklearn_and_scipy() -> None:
    rng = np.random.default_rng(0)
    pred, gold = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert metrics.f1(pred, gold) == pytest.approx(100 * f1_score(gold, pred))
    assert metrics.mcc(pred, gold) == pytest.approx(100 * matthews_corrcoef(gold, pred))
    x, y = rng.normal(size=100), rng.normal(size=100)
    assert metrics.pearson(x, y) == pytest.approx(100 * pearsonr(x, y)[0])
    assert metrics.spearman(x, y) == pytest.approx(100 * spearmanr(x, y)[0])
    assert metrics.score(("f1", "accuracy"), PRED, GOLD) == pytest.approx({"f1": 100 * 2 / 3, "accuracy": 60.0})
