"""Channelized Hotelling observer: Laguerre-Gauss channels and d' against closed forms.

Tolerances. With white noise the channel outputs are Gaussian and, for a template known exactly,
the estimate d^ from N present and N absent ROIs has standard error about
sqrt(2 / N + d^2 / (4 N)) (the mean difference, plus the pooled standard deviation's own
error). The holdout template, fitted on N / 2 ROIs per class, loses O(C / N) of d^2 on top.
Tests compare within 4 standard errors (plus that bias), at fixed seeds.
"""

import math

import numpy as np
import pytest
import torch

from lidplug.metrics import (
    bootstrap,
    channelized_hotelling,
    laguerre_gauss_channels,
    observer_statistic,
    split_hotelling,
)

SIZE = 32


def blob(amplitude=1.0, sigma=2.0, size=SIZE):
    """A Gaussian signal centred on the ROI centre, [H, W] float64."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return amplitude * torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))


def rois(signal, n, sigma, seed):
    """n signal-present and n signal-absent ROIs in white Gaussian noise of std sigma."""
    g = torch.Generator().manual_seed(seed)
    noise = sigma * torch.randn(2, n, *signal.shape, generator=g, dtype=torch.float64)
    return signal + noise[0], noise[1]


def closed_form_d_prime(signal, sigma, channels):
    """d'^2 = (U s)' (sigma^2 U U')^-1 (U s): the CHO in white noise, known statistics."""
    u = channels.flatten(1)
    us = u @ signal.flatten()
    return math.sqrt(float(us @ torch.linalg.solve(sigma**2 * u @ u.T, us)))


def standard_error(d, n):
    return math.sqrt(2 / n + d**2 / (4 * n))


def test_channels_are_orthonormal_and_rotationally_symmetric():
    u = laguerre_gauss_channels(48, n_channels=10, width=6.0)
    assert u.shape == (10, 48, 48) and u.dtype == torch.float64
    gram = u.flatten(1) @ u.flatten(1).T
    torch.testing.assert_close(gram, torch.eye(10, dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(u, u.transpose(1, 2))
    torch.testing.assert_close(u, u.flip(1))
    torch.testing.assert_close(u, u.flip(2))
    odd = laguerre_gauss_channels((33, 41), n_channels=3, width=5.0)
    assert odd.shape == (3, 33, 41)
    assert odd[:, 16, 20].tolist() == pytest.approx([math.sqrt(2) / 5.0] * 3)  # L_p(0) = 1
    assert odd[0].argmax().item() == 16 * 41 + 20


def test_d_prime_matches_the_closed_form():
    channels = laguerre_gauss_channels(SIZE)
    signal, sigma, n = blob(3.0), 5.0, 2000
    expected = closed_form_d_prime(signal, sigma, channels)
    assert 1.5 < expected < 2.5
    result = channelized_hotelling(*rois(signal, n, sigma, seed=0), channels)
    tolerance = 4 * standard_error(expected, n) + 10 * 2 / n  # plus the holdout's O(C / N)
    assert result.d_prime == pytest.approx(expected, abs=tolerance)
    assert result.auc_gaussian == pytest.approx(0.5 * math.erfc(-result.d_prime / 2))
    assert result.auc == pytest.approx(result.auc_gaussian, abs=0.02)  # Gaussian statistics
    assert result.statistics_present.shape == (n,) and result.template.shape == (10,)


def test_spanned_signal_reaches_the_ideal_observer():
    channels = laguerre_gauss_channels(SIZE)
    signal = 40.0 * (channels[0] - 0.5 * channels[1] + 0.25 * channels[3])
    sigma, n = 5.0, 2000
    ideal = float(signal.norm()) / sigma
    assert closed_form_d_prime(signal, sigma, channels) == pytest.approx(ideal, rel=1e-9)
    result = channelized_hotelling(*rois(signal, n, sigma, seed=1), channels)
    assert result.d_prime == pytest.approx(ideal, abs=4 * standard_error(ideal, n) + 0.01)


def test_no_signal_gives_zero_and_resubstitution_is_biased():
    channels = laguerre_gauss_channels(SIZE)
    zero, sigma, n, c, reps = torch.zeros(SIZE, SIZE, dtype=torch.float64), 5.0, 60, 10, 60
    holdout, resub = [], []
    for seed in range(reps):
        present, absent = rois(zero, n, sigma, seed)
        holdout.append(channelized_hotelling(present, absent, channels).d_prime)
        resub.append(channelized_hotelling(present, absent, channels,
                                           method="resubstitution").d_prime)
    # Holdout: unbiased under the null; its spread (~0.27 at n = 60) includes the template's.
    assert abs(np.mean(holdout)) < 4 * 0.27 / math.sqrt(reps)
    # Resubstitution: E[d'^2] = (2n - 2) / (2n - C - 3) * C * 2 / n (relative s.e. ~ 0.47/sqrt 60).
    expected = (2 * n - 2) / (2 * n - c - 3) * c * 2 / n
    assert np.mean(np.square(resub)) == pytest.approx(expected, rel=4 * 0.47 / math.sqrt(reps))
    big = channelized_hotelling(*rois(zero, 1000, sigma, seed=0), channels)
    assert abs(big.d_prime) < 4 * standard_error(0.0, 1000) and abs(big.auc - 0.5) < 0.04


def test_d_prime_grows_with_the_amplitude():
    channels = laguerre_gauss_channels(SIZE)
    noise_p, noise_a = rois(torch.zeros(SIZE, SIZE, dtype=torch.float64), 300, 5.0, seed=2)
    d = [channelized_hotelling(noise_p + blob(a), noise_a, channels).d_prime
         for a in (1.0, 2.0, 4.0)]
    assert d[0] < d[1] < d[2]


def test_auc_is_the_empirical_one():
    channels = laguerre_gauss_channels(SIZE, n_channels=4)
    result = channelized_hotelling(*rois(blob(2.0), 50, 5.0, seed=3), channels)
    tp, ta = result.statistics_present, result.statistics_absent
    wins = (tp[:, None] > ta[None, :]).mean() + 0.5 * (tp[:, None] == ta[None, :]).mean()
    assert result.auc == pytest.approx(wins)


def test_bootstrap_over_pairs():
    channels = laguerre_gauss_channels(SIZE, n_channels=4)
    present, absent = rois(blob(2.0), 80, 5.0, seed=4)
    stat = observer_statistic(present, absent, channels)
    point = channelized_hotelling(present, absent, channels, paired=True)
    assert stat(np.arange(80)) == pytest.approx(point.as_dict())
    ci = bootstrap(stat, 80, n_resamples=50, seed=0)
    assert ci["d_prime"].low < point.d_prime < ci["d_prime"].high
    assert ci["auc"].low < point.auc < ci["auc"].high
    assert all(math.isnan(v) for v in stat(np.zeros(80, dtype=np.int64)).values())  # 1 pair


def test_holdout_is_seeded():
    channels = laguerre_gauss_channels(SIZE, n_channels=4)
    data = rois(blob(2.0), 40, 5.0, seed=5)
    a = channelized_hotelling(*data, channels, seed=1)
    assert a.d_prime == channelized_hotelling(*data, channels, seed=1).d_prime
    assert a.d_prime != channelized_hotelling(*data, channels, seed=2).d_prime


def _roi(n, size=SIZE):
    return torch.randn(n, size, size, generator=torch.Generator().manual_seed(n))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((_roi(30), _roi(30, 31)), {}, ValueError, "one ROI size"),
        ((_roi(30)[0], _roi(30)), {}, ValueError, r"present of shape \[\*, H, W\]"),
        ((_roi(21), _roi(30)), {}, ValueError, "at least 22 present and 22 absent ROIs for 10"),
        ((_roi(10), _roi(11)), {"method": "resubstitution"}, ValueError, "at least 11"),
        ((_roi(30).masked_fill(torch.eye(SIZE, dtype=torch.bool), math.nan), _roi(30)), {},
         ValueError, "finite present"),
        ((_roi(30), _roi(30) > 0), {}, TypeError, "real Tensor absent"),
        ((_roi(30), _roi(30)), {"method": "loo"}, ValueError, "method in"),
        ((_roi(30), _roi(31)), {"paired": True}, ValueError, "as many present as absent"),
        ((torch.zeros(30, SIZE, SIZE), torch.zeros(30, SIZE, SIZE)), {}, ValueError,
         "invertible channel covariance"),
    ],
)
def test_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        channelized_hotelling(*args, laguerre_gauss_channels(SIZE), **kwargs)


def test_bad_channels():
    with pytest.raises(ValueError, match="positive width"):
        laguerre_gauss_channels(32, width=0.0)
    with pytest.raises(ValueError, match="positive int size"):
        laguerre_gauss_channels(0)
    with pytest.raises(ValueError, match="as many present as absent ROIs"):
        observer_statistic(_roi(30), _roi(31), laguerre_gauss_channels(SIZE))


def _toolbox_reader(present, absent, channels, train_p, train_a):
    """The FDA LCD-CT toolbox's reader written out (its LG_CHO.calculate_metrics algebra):
    unscaled template s' pinv(K) from the training ROIs, raw scores of the test ROIs."""
    u = channels.flatten(1).numpy().T
    vp, va = present.flatten(1).numpy() @ u, absent.flatten(1).numpy() @ u
    test_p = np.setdiff1d(np.arange(len(vp)), train_p)
    test_a = np.setdiff1d(np.arange(len(va)), train_a)
    k = (np.cov(vp[train_p], rowvar=False) + np.cov(va[train_a], rowvar=False)) / 2
    w = (vp[train_p].mean(0) - va[train_a].mean(0)) @ np.linalg.pinv(k)
    tp, ta = vp[test_p] @ w, va[test_a] @ w
    d = (tp.mean() - ta.mean()) / math.sqrt((tp.var(ddof=1) + ta.var(ddof=1)) / 2)
    auc = (tp[:, None] > ta[None, :]).mean() + 0.5 * (tp[:, None] == ta[None, :]).mean()
    return d, auc


def test_split_is_the_toolboxs_reader():
    channels = laguerre_gauss_channels(SIZE, n_channels=5, width=4.0)
    present, absent = rois(blob(1.5), 40, 5.0, seed=6)
    absent = absent[:30]
    rng = np.random.default_rng(0)
    train_p, train_a = rng.permutation(40)[:20], rng.permutation(30)[:15]
    result = split_hotelling(present, absent, channels, train_p, train_a)
    d, auc = _toolbox_reader(present, absent, channels, train_p, train_a)
    assert result.method == "split"
    assert result.d_prime == pytest.approx(d, rel=1e-9) and result.auc == pytest.approx(auc)
    assert result.statistics_present.shape == (20,) and result.statistics_absent.shape == (15,)
    # Boolean masks select the same split; the test ROIs never shape the template.
    mask_p = np.isin(np.arange(40), train_p)
    same = split_hotelling(present, absent, channels, mask_p, np.isin(np.arange(30), train_a))
    assert same.d_prime == result.d_prime
    changed = present.clone()
    changed[~torch.from_numpy(mask_p)] += 100.0
    other = split_hotelling(changed, absent, channels, train_p, train_a)
    np.testing.assert_allclose(other.template, result.template)
    assert other.auc == 1.0


def test_split_d_prime_matches_the_closed_form():
    channels = laguerre_gauss_channels(SIZE)
    signal, sigma, n = blob(3.0), 5.0, 2000
    expected = closed_form_d_prime(signal, sigma, channels)
    half = np.arange(n // 2)
    result = split_hotelling(*rois(signal, n, sigma, seed=7), channels, half, half)
    assert result.d_prime == pytest.approx(expected, abs=4 * standard_error(expected, n // 2)
                                           + 10 * 2 / n)


@pytest.mark.parametrize(("train_p", "train_a", "error", "message"), [
    (np.ones(5, dtype=bool), np.arange(10), ValueError, r"boolean train_present of shape \(30,\)"),
    (np.arange(10) + 25, np.arange(10), ValueError, r"distinct train_present indices in \[0, 30\)"),
    (np.zeros(10, dtype=np.int64), np.arange(10), ValueError, "distinct train_present"),
    (np.arange(10.0), np.arange(10), TypeError, "train_present as 1-D int indices"),
    (np.arange(29), np.arange(10), ValueError, "2 ROIs per class to train and to test"),
    (np.arange(3), np.arange(3), ValueError, "12 training ROIs in all for 10 channels"),
])
def test_split_bad_input(train_p, train_a, error, message):
    with pytest.raises(error, match=message):
        split_hotelling(_roi(30), _roi(30), laguerre_gauss_channels(SIZE), train_p, train_a)


def test_bootstrap_interval_contains_the_estimate():
    """Regression: the CHO refits its template per replicate, and replicates drawn with
    repeats are biased against the full-sample fit: d' 2.42 came with [1.47, 2.40]."""
    channels = laguerre_gauss_channels(SIZE)
    present, absent = rois(blob(3.0), 32, 5.0, seed=10)  # a draw where it happened
    with pytest.warns(RuntimeWarning):  # resamples with too few distinct pairs: dropped
        ci = bootstrap(observer_statistic(present, absent, channels), 32, n_resamples=100)
    for key in ("d_prime", "auc"):
        assert ci[key].low <= ci[key].mean <= ci[key].high, (key, ci[key])
