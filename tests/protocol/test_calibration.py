"""Calibrated thresholds, ECE, and bootstrap intervals (checked against scikit-learn and by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from aigi.evaluate.calibration import (
    accuracy_at,
    auroc_rows,
    average_precision_rows,
    bootstrap_intervals,
    expected_calibration_error,
    threshold_at_fpr,
)


@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("n", [1, 7, 20, 100, 333])
def test_threshold_meets_its_fpr(fpr, n):
    rng = np.random.default_rng(n)
    reals = rng.beta(2, 5, n)
    t = threshold_at_fpr(reals, fpr)
    achieved = np.mean(reals >= t)
    assert achieved <= fpr + 1e-12
    # and it is the tightest such threshold: every real score just above the boundary
    # is flagged, so exactly floor(fpr * n) false positives when there are no ties
    assert np.sum(reals >= t) == int(np.floor(fpr * n + 1e-9))


def test_threshold_tie_rule_counts_ties_as_real():
    # 10 reals, 5% target -> 0 false positives allowed; 20% -> 2 allowed, but the 2nd and
    # 3rd largest are tied, so only the single largest may be flagged
    reals = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8, 0.9]
    assert threshold_at_fpr(reals, 0.05) > 0.9
    t = threshold_at_fpr(reals, 0.2)
    assert 0.8 < t <= 0.9
    assert np.mean(np.asarray(reals) >= t) == pytest.approx(0.1)
    # all scores equal: nothing may be flagged below 100%
    assert np.mean(np.full(50, 0.7) >= threshold_at_fpr(np.full(50, 0.7), 0.5)) == 0.0


def test_threshold_bad_input():
    with pytest.raises(ValueError, match="at least one real"):
        threshold_at_fpr([], 0.05)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        threshold_at_fpr([0.1], 1.0)


def test_accuracy_at_threshold():
    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.4, 0.6, 0.6, 0.9]
    m = accuracy_at(y, s, 0.5)
    assert m == {"acc": pytest.approx(0.8), "r_acc": pytest.approx(2 / 3), "f_acc": 1.0, "fpr": pytest.approx(1 / 3)}
    assert accuracy_at(y, s, 0.6)["fpr"] == pytest.approx(1 / 3)  # >= threshold is fake
    assert accuracy_at(y, s, 0.61)["f_acc"] == 0.5


def test_ece_by_hand():
    # bins of width 0.5 (n_bins=2): [0, .5) holds 0.2, 0.4 (labels 0, 1); [.5, 1] holds 0.9, 1.0 (1, 1)
    y = [0, 1, 1, 1]
    s = [0.2, 0.4, 0.9, 1.0]
    expected = 0.5 * abs(0.5 - 0.3) + 0.5 * abs(1.0 - 0.95)
    assert expected_calibration_error(y, s, n_bins=2) == pytest.approx(expected)
    # a perfectly calibrated constant predictor has ECE 0
    assert expected_calibration_error([0, 1, 0, 1], [0.5] * 4) == pytest.approx(0.0)
    # fully confident and always wrong: ECE 1
    assert expected_calibration_error([0, 1], [1.0, 0.0]) == pytest.approx(1.0)


def test_vectorised_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 60))
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        # coarse scores so that ties are frequent
        s = np.round(rng.random((4, n)), 1 if trial % 2 else 3)
        ap = average_precision_rows(s, y)
        auc = auroc_rows(s, y)
        for r in range(4):
            assert ap[r] == pytest.approx(average_precision_score(y, s[r]), abs=1e-12)
            assert auc[r] == pytest.approx(roc_auc_score(y, s[r]), abs=1e-12)


def test_bootstrap_contains_point_estimate_and_is_seeded():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(80, int), np.ones(60, int)]
    s = np.clip(np.r_[rng.normal(0.35, 0.2, 80), rng.normal(0.65, 0.2, 60)], 0, 1)
    ci = bootstrap_intervals(y, s, n_resamples=1000, seed=7)
    assert ci["ap"]["value"] == pytest.approx(average_precision_score(y, s))
    assert ci["auroc"]["value"] == pytest.approx(roc_auc_score(y, s))
    assert ci["acc"]["value"] == pytest.approx(np.mean((s >= 0.5) == (y == 1)))
    for key in ("acc", "ap", "auroc"):
        lo, v, hi = ci[key]["low"], ci[key]["value"], ci[key]["high"]
        assert lo <= v <= hi, key
        assert 0.0 < hi - lo < 0.3, key  # a real interval, not a point and not everything
    assert bootstrap_intervals(y, s, n_resamples=1000, seed=7) == ci
    assert bootstrap_intervals(y, s, n_resamples=1000, seed=8) != ci
    # a wider confidence gives a wider interval
    wide = bootstrap_intervals(y, s, n_resamples=1000, seed=7, confidence=0.99)
    assert wide["auroc"]["low"] <= ci["auroc"]["low"] and wide["auroc"]["high"] >= ci["auroc"]["high"]


def test_bootstrap_single_class_subset():
    ci = bootstrap_intervals([1, 1, 1, 1], [0.9, 0.8, 0.4, 0.7], n_resamples=200)
    assert ci["ap"] == {"value": None, "low": None, "high": None}
    assert ci["acc"]["low"] <= ci["acc"]["value"] == 0.75 <= ci["acc"]["high"]
