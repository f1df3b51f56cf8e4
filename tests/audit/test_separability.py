"""AUROC with intervals, the best single rule, the metadata model, verdict thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aigi.audit.separability import Separation, Thresholds, auroc_bootstrap, best_rule, metadata_model, verdict


def test_auroc_equals_scikit_learn_with_ties_and_the_interval_holds_it():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30, int), np.ones(45, int)]
    s = np.round(rng.normal(size=75) + 0.8 * y, 1)  # rounded: many ties
    auc, lo, hi = auroc_bootstrap(y, s, n_resamples=300)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert lo < auc < hi and hi - lo < 0.35
    assert auroc_bootstrap(y, s, n_resamples=300) == (auc, lo, hi)  # seeded
    with pytest.raises(ValueError, match="both real"):
        auroc_bootstrap([1, 1], [0.2, 0.3])


def test_best_rule_finds_thresholds_exact_values_and_missing_values():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(30, int), np.ones(30, int)]
    size = np.r_[rng.choice([300, 400, 640, 800, 200], 30), np.full(30, 512)].astype(float)
    scores, rule = best_rule(y, size, "number", "width")  # 512 sits inside the reals' range: not a threshold
    assert roc_auc_score(y, scores) == 1.0 and rule.startswith("width = 512")
    q = np.r_[np.full(30, np.nan), rng.integers(70, 100, 30)].astype(float)  # JPEG quality: PNG reals, JPEG fakes
    scores, rule = best_rule(y, q, "number", "jpeg_quality")
    assert roc_auc_score(y, scores) == 1.0 and "missing" in rule
    noise = rng.random(60)
    scores, _ = best_rule(y, noise, "number", "noise")
    assert roc_auc_score(y, scores) < 0.75
    unique_ids = [f"id{i}" for i in range(60)]  # one value per file tells nothing out of fold
    scores, _ = best_rule(y, unique_ids, "category", "camera_model")
    assert roc_auc_score(y, scores) == 0.5
    with pytest.raises(ValueError, match="kind"):
        best_rule(y, noise, "text", "noise")


def test_metadata_model_combines_attributes_out_of_fold():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    a = rng.integers(0, 2, 80)
    b = np.where(y == 1, a, 1 - a)  # y = (a == b): neither alone tells anything
    kinds = {"a": "category", "b": "category"}
    both = metadata_model(y, {"a": a.tolist(), "b": b.tolist()}, kinds)
    assert roc_auc_score(y, both) > 0.95
    assert roc_auc_score(y, best_rule(y, a.tolist(), "category", "a")[0]) < 0.7
    assert metadata_model([0, 1, 1], {"a": [1, 2, 3]}, {"a": "number"}) is None  # one real: no folds
    empty = metadata_model(y, {"q": [float("nan")] * 80, "f": ["PNG"] * 80}, {"q": "number", "f": "category"})
    assert (empty == 0.5).all()  # nothing to learn from: every file scores the same


def test_verdict_levels_and_thresholds():
    t = Thresholds()
    row = lambda auc, lo, counts=True: Separation("s", "x", auc, lo, 1.0, "", 10, 10, counts)  # noqa: E731
    assert verdict([row(1.0, 1.0)], t) == "shortcut"
    assert verdict([row(0.95, 0.7), row(0.6, 0.5)], t) == "suspicious"
    assert verdict([row(0.8, 0.55)], t) == "clean"
    assert verdict([row(1.0, 1.0, counts=False), row(0.6, 0.5)], t) == "clean"  # a row that does not count
    assert verdict([], t) == "n/a"
    with pytest.raises(ValueError, match="must lie in"):
        Thresholds(shortcut=1.2)
    with pytest.raises(ValueError, match="must not exceed"):
        Thresholds(shortcut=0.8, suspicious=0.85)
    assert "0.9" in t.text()
