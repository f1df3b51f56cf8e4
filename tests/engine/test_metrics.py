"""Metrics against hand computations and scikit-learn's definitions."""

import numpy as np
import pytest

from aigi.evaluate.metrics import binary_metrics, eer, evaluate_scores


def test_accuracies_at_threshold():
    m = binary_metrics([0, 0, 0, 1, 1], [0.1, 0.6, 0.2, 0.9, 0.4], threshold=0.5)
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["r_acc"] == pytest.approx(2 / 3) and m["f_acc"] == pytest.approx(1 / 2)
    assert m["n_real"] == 3 and m["n_fake"] == 2


def test_perfect_separation():
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert m["ap"] == 1.0 and m["auroc"] == 1.0 and m["eer"] == 0.0
    assert m["tpr_at_fpr_1"] == 1.0 and m["tpr_at_fpr_5"] == 1.0


def test_random_scores_are_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20000)
    s = rng.random(20000)
    m = binary_metrics(y, s)
    assert abs(m["auroc"] - 0.5) < 0.02 and abs(m["eer"] - 0.5) < 0.02
    assert abs(m["tpr_at_fpr_5"] - 0.05) < 0.02


def test_eer_on_a_known_case():
    # reals 0.1..0.4, fakes 0.3..0.6 -> equal error where one real and one fake are misranked
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.45, 0.35, 0.5, 0.55, 0.6]
    assert eer(y, s) == pytest.approx(0.25)


def test_single_class_subset_has_no_threshold_free_metrics():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert m["ap"] is None and m["auroc"] is None and m["r_acc"] is None
    assert m["f_acc"] == pytest.approx(2 / 3)


def test_mean_is_over_subsets_not_images():
    out = evaluate_scores([0, 1, 0, 0, 0, 1], [0.1, 0.9, 0.9, 0.9, 0.9, 0.9], ["a", "a", "b", "b", "b", "b"])
    assert out["subsets"]["a"]["acc"] == 1.0 and out["subsets"]["b"]["acc"] == 0.25
    assert out["mean"]["acc"] == pytest.approx(0.625)
    assert out["mean"]["n_real"] == 4


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="shape"):
        binary_metrics([0, 1], [0.1])
