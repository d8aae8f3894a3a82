"""Seeded percentile bootstrap over images."""

import math

import numpy as np
import pytest
import torch

from lidplug.metrics import (
    BootstrapInterval,
    bootstrap,
    bootstrap_mean,
    froc_from_matches,
    lesion_mean_statistic,
    match_detections,
)


def values(n, seed=0):
    return np.random.default_rng(seed).normal(30.0, 2.0, size=n)


def test_interval_contains_the_mean():
    v = values(50)
    ci = bootstrap_mean(v, n_resamples=500)
    assert ci.mean == pytest.approx(v.mean())
    assert ci.low < ci.mean < ci.high
    assert ci.confidence == 0.95 and ci.n_resamples == 500
    assert ci.as_dict() == {"mean": ci.mean, "low": ci.low, "high": ci.high}


def test_reproducible_with_the_seed():
    v = values(40)
    assert bootstrap_mean(v, n_resamples=200, seed=3) == bootstrap_mean(v, n_resamples=200, seed=3)
    assert bootstrap_mean(v, n_resamples=200, seed=3) != bootstrap_mean(v, n_resamples=200, seed=4)


def test_shrinks_with_more_images():
    small = bootstrap_mean(values(20), n_resamples=500)
    large = bootstrap_mean(values(2000), n_resamples=500)
    assert large.high - large.low < 0.3 * (small.high - small.low)


def test_width_matches_the_normal_approximation():
    v = values(400)
    ci = bootstrap_mean(v, n_resamples=2000)
    expected = 2 * 1.96 * v.std() / math.sqrt(v.size)
    assert ci.high - ci.low == pytest.approx(expected, rel=0.15)


def test_confidence_level_orders_the_intervals():
    v = values(60)
    narrow = bootstrap_mean(v, n_resamples=500, confidence=0.5)
    wide = bootstrap_mean(v, n_resamples=500, confidence=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_tensor_input_and_same_resamples_as_generic_bootstrap():
    v = values(30)
    generic = bootstrap(lambda idx: v[idx].mean(), v.size, n_resamples=100, seed=7)
    assert bootstrap_mean(torch.from_numpy(v), n_resamples=100, seed=7) == generic
    assert isinstance(generic, BootstrapInterval)


def test_mapping_statistic_shares_resamples():
    a, b = values(30, seed=1), values(30, seed=2)

    def stat(idx):
        return {"a": a[idx].mean(), "b": b[idx].mean(), "a-b": (a[idx] - b[idx]).mean()}

    ci = bootstrap(stat, 30, n_resamples=300, seed=0)
    assert set(ci) == {"a", "b", "a-b"}
    assert ci["a"] == bootstrap_mean(a, n_resamples=300, seed=0)
    assert ci["a-b"].mean == pytest.approx(a.mean() - b.mean())


def test_froc_bootstrap_drops_resamples_without_lesions():
    # Image 1 has no lesion: a resample of only image 1 has no sensitivity (NaN) and is dropped.
    detections = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9])},
        {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.8])},
    ]
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]])}, {"boxes": torch.zeros(0, 4)}]
    matches = match_detections(detections, targets)
    with pytest.warns(RuntimeWarning, match=r"dropped NaN replicates .* 200: \{.0\.125.: \d+"):
        ci = bootstrap(lambda idx: froc_from_matches([matches[i] for i in idx]).as_dict(),
                       2, n_resamples=200, seed=0)
    assert ci["cpm"].mean == pytest.approx(froc_from_matches(matches).cpm)
    assert 100 < ci["cpm"].n_resamples < 200  # about a quarter of the resamples are [1, 1]
    assert 0.0 <= ci["0.125"].low <= ci["0.125"].high <= 1.0


def test_statistic_with_changing_keys_is_rejected():
    calls = iter(range(10))
    with pytest.raises(ValueError, match="return the keys"):
        bootstrap(lambda idx: {f"k{next(calls)}": 1.0}, 3, n_resamples=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_resamples": 0}, "n_resamples >= 1"),
        ({"confidence": 1.0}, "0 < confidence < 1"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_mean(values(5), **kwargs)


def test_bad_values():
    with pytest.raises(ValueError, match="non-empty 1D"):
        bootstrap_mean(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n >= 1"):
        bootstrap(lambda idx: 0.0, 0)
    with pytest.raises(ValueError, match="scalar or a dict"):
        bootstrap(lambda idx: torch.zeros(2), 3, n_resamples=2)


def lesions_per_image():
    # image 0: lesions 1 and 3; image 1: none; image 2: lesion 5.
    return np.array([1.0, 3.0, 5.0]), np.array([0, 0, 2])


def test_lesion_mean_statistic_resamples_images():
    values, images = lesions_per_image()
    stat = lesion_mean_statistic(values, images, 3)
    assert stat(np.arange(3)) == pytest.approx(3.0)
    assert stat(np.array([0, 0, 1])) == pytest.approx(2.0)
    assert stat(np.array([2, 2, 0])) == pytest.approx((5 + 5 + 1 + 3) / 4)
    assert math.isnan(stat(np.array([1, 1, 1])))
    weighted = lesion_mean_statistic(values, images, 3, weights=np.array([1.0, 0.0, 2.0]))
    assert weighted(np.arange(3)) == pytest.approx((1 + 10) / 3)
    both = lesion_mean_statistic({"a": values, "b": 2 * values}, torch.tensor(images), 3)
    assert both(np.arange(3)) == pytest.approx({"a": 3.0, "b": 6.0})


def test_lesion_mean_statistic_with_bootstrap():
    rng = np.random.default_rng(0)
    images = np.repeat(np.arange(30), 2)  # 30 images with 2 lesions each, 10 without
    values = rng.normal(1.0, 0.1, images.size)
    ci = bootstrap(lesion_mean_statistic(values, images, 40), 40, n_resamples=200, seed=0)
    assert ci.mean == pytest.approx(values.mean()) and ci.low < ci.mean < ci.high


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((np.array([1.0, math.nan]), np.array([0, 1]), 2), {}, "finite 'values'"),
        ((np.ones(3), np.array([0, 1]), 2), {}, r"shape \(2,\)"),
        ((np.ones(2), np.array([0, 2]), 2), {}, r"in \[0, 2\)"),
        ((np.ones(2), np.array([0, 1]), 0), {}, "n_images >= 1"),
        ((np.ones(2), np.array([0, 1]), 2), {"weights": -np.ones(2)}, "weights >= 0"),
    ],
)
def test_lesion_mean_statistic_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lesion_mean_statistic(*args, **kwargs)


def test_an_interval_always_contains_its_estimate():
    """Regression: a statistic whose replicates are biased against the full-sample value (as
    the model observer's, which refits per replicate) got an interval excluding its estimate."""
    n = 30
    # Distinct images drawn: n on all images, about 0.63 n on any resample.
    ci = bootstrap(lambda idx: np.unique(idx).size / n, n, n_resamples=200)
    assert ci.mean == 1.0 and ci.low <= ci.mean <= ci.high
    assert ci.method == "recentred"
    # Recentring shifts the percentile interval so the replicates' median sits on the estimate.
    plain = bootstrap_mean(values(50), n_resamples=300)
    assert plain.method == "percentile"
    forced = bootstrap(lambda idx: {"m": float(values(50)[idx].mean())}, 50, n_resamples=300,
                       recentre=["m"])["m"]
    assert forced.method == "recentred" and forced.low <= forced.mean <= forced.high
    assert forced.high - forced.low == pytest.approx(plain.high - plain.low)


def test_too_few_slices_or_lesions_get_no_verdict():
    """Regression: one test slice gave point intervals (+0.016 [+0.016, +0.016]) and the
    report called the difference shown."""
    from lidplug.metrics import MIN_LESIONS, MIN_SLICES, judge_metric

    shown = (0.016, 0.01, 0.02)
    assert judge_metric(shown, True, {"n_slices": 1, "n_lesions_scored": 50}, "rmse_hu") == (
        "too few to tell")
    assert judge_metric(shown, True, {"n_slices": MIN_SLICES, "n_lesions_scored": 0},
                        "rmse_hu") == "better"
    for key in ("lesion_contrast_recovery", "observer_cpm", "model_observer_dprime"):
        assert judge_metric(shown, True, {"n_slices": 100, "n_lesions_scored": MIN_LESIONS - 1,
                                          "n_lesions": MIN_LESIONS - 1}, key) == "too few to tell"
        assert judge_metric(shown, True, {"n_slices": 100, "n_lesions_scored": MIN_LESIONS,
                                          "n_lesions": MIN_LESIONS}, key) == "better"
