"""The first lines of the page, from hand-made metrics: verdict sentences, headroom, tables."""

import pytest

from lidplug.report import MIN_HEADROOM, findings, headroom
from lidplug.report.labels import difference_of, image_sets, number, shown_digits
from lidplug.report.summary import summary_html
from lidplug.report.table import headline_table

MINUS = "\u2212"


def iv(mean, low, high):
    return {"mean": mean, "low": low, "high": high}


def _row(cpm=0.5, **extra):
    row = {"rmse_hu": iv(20.0, 19.0, 21.0), "psnr": iv(30.0, 29.5, 30.5),
           "ssim": iv(0.9, 0.89, 0.91), "lesion_contrast_recovery": iv(0.8, 0.7, 0.9),
           "lesion_rmse_hu": iv(15.0, 14.0, 16.0), "lesion_cnr": iv(1.2, 1.0, 1.4),
           "observer_cpm": iv(cpm, cpm - 0.05, cpm + 0.05),
           "observers": {"obs_a": {"cpm": iv(cpm, cpm - 0.05, cpm + 0.05)},
                         "obs_b": {"cpm": iv(cpm, cpm - 0.05, cpm + 0.05)}}}
    row.update(extra)
    return row


def _metrics(difference=None, *, normal_cpm=0.6, low_cpm=0.3, arms=("baseline", "lidnet"),
             model_observer="channelized Hotelling, ..."):
    metrics = {"low_dose": _row(low_cpm)}
    for arm in arms:
        metrics[arm] = _row(0.4)
    metrics["normal_dose"] = _row(normal_cpm)
    metrics["noise_free"] = _row(0.7)
    for arm in arms[1:]:
        metrics[f"{arm}_minus_{arms[0]}"] = dict(difference or {})
    metrics["protocol"] = {
        "comparator": arms[0], "observers": ["obs_a", "obs_b"], "model_observer": model_observer,
        "window": {"lo_hu": -160.0, "hi_hu": 240.0, "data_range_hu": 400.0,
                   "psnr": "inside the body", "ssim": "whole slice"},
        "bootstrap": {"resamples": 1000, "interval": "95% percentile"},
        "n_slices": 96, "n_lesions": 150, "fp_rates": [0.125, 8.0], "hit_rule": "centre rule",
        "reference": "noise-free phantom"}
    return metrics


def test_findings_word_shown_better_worse_and_not_shown():
    metrics = _metrics({"lesion_contrast_recovery": iv(0.04, 0.03, 0.05),
                        "rmse_hu": iv(1.5, 0.5, 2.5),
                        "observer_cpm": iv(0.01, -0.02, 0.04),
                        "lesion_cnr": iv(-0.2, -0.3, -0.1)})
    found = {f.metric: f for f in findings(metrics, ["baseline", "lidnet"])}
    assert [f.metric for f in findings(metrics)][:2] == ["lesion_contrast_recovery", "lesion_cnr"]
    contrast = found["lesion_contrast_recovery"]
    assert contrast.verdict == "better"
    assert contrast.text == ("Lesion contrast: LIDnet keeps more of each lesion's contrast than "
                             "the plain denoiser: +0.040 (95% interval +0.030 to +0.050), shown.")
    assert found["rmse_hu"].verdict == "worse"  # lower is better: a positive RMSE gap is worse
    assert "further from the truth than the plain denoiser's" in found["rmse_hu"].text
    assert "+1.5 HU" in found["rmse_hu"].text
    assert found["observer_cpm"].verdict == "not shown"
    assert found["observer_cpm"].text == (
        f"Detection by independent observers: no difference shown (+0.010, interval "
        f"{MINUS}0.020 to +0.040).")
    assert found["lesion_cnr"].verdict == "worse"  # judged here: pipeline.verdicts skips CNR


def test_an_error_in_hu_is_set_beside_the_plain_arms_own():
    metrics = _metrics({"rmse_hu": iv(0.06, 0.04, 0.07)})
    metrics["baseline"] = {"rmse_hu": iv(23.1, 22.7, 23.5)}
    (f,) = findings(metrics)
    assert "+0.3% of the plain denoiser's 23.1 HU" in f.text


def test_a_tiny_shown_difference_keeps_the_digits_that_show_it():
    metrics = _metrics({"rmse_hu": iv(-0.0004, -0.0006, -0.0002)})
    (f,) = findings(metrics)
    assert f.verdict == "better"
    assert f"{MINUS}0.0004 HU (95% interval {MINUS}0.0006 to {MINUS}0.0002, " in f.text
    assert shown_digits((0.0, -1.0, 1.0), 1) == 1  # not shown: the usual digits


def test_headroom_below_the_gap_says_no_detection_gain_could_show():
    metrics = _metrics({"observer_cpm": iv(0.0, -0.01, 0.01)}, normal_cpm=0.35, low_cpm=0.3)
    room = headroom(metrics)
    assert room is not None and not room.enough
    assert room.gap == pytest.approx(0.05)
    assert "no denoiser could show a detection gain on this task" in room.sentence()
    assert "obs_a 0.35 vs 0.30" in room.sentence()
    (f,) = findings(metrics)
    assert f"below {MIN_HEADROOM}" in f.text
    page = summary_html(metrics, ["baseline", "lidnet"], phantom=True)
    assert "class='headroom warn'" in page and "noise-free phantom" in page


def test_headroom_of_exactly_the_gap_is_enough():
    room = headroom(_metrics(normal_cpm=0.6, low_cpm=0.5))
    assert room.enough and "room to show a detection gain" in room.sentence()
    metrics = _metrics()
    for name in ("low_dose", "normal_dose"):
        del metrics[name]["observer_cpm"]
    assert headroom(metrics) is None
    assert "headroom is unknown" in summary_html(metrics, ["baseline", "lidnet"], phantom=True)


def test_model_observer_not_computed_is_said_and_its_column_dropped():
    note = "not computed: 10 test lesions, the CHO needs at least 22"
    metrics = _metrics({"ssim": iv(0.0, -0.01, 0.01)}, model_observer=note)
    found = findings(metrics)
    assert [f.verdict for f in found] == ["not computed", "not shown"]  # detection before pixels
    assert found[0].text == f"Detectability for the model observer (CHO d\u2032): {note}."
    table = headline_table(metrics, ["baseline", "lidnet"])
    assert "CHO d\u2032</th>" not in table and note in table
    computed = _metrics({"model_observer_dprime": iv(0.3, 0.1, 0.5)})
    computed["lidnet"]["model_observer_dprime"] = iv(1.3, 1.0, 1.6)
    assert "CHO d\u2032</th>" in headline_table(computed, ["baseline", "lidnet"])
    assert findings(computed)[0].verdict == "better"


def test_any_number_of_arms_with_underscores_in_their_names():
    arms = ["baseline", "lidnet", "lidnet_no_roi", "my_arm"]
    diff = {"lesion_contrast_recovery": iv(0.02, -0.01, 0.05)}
    metrics = _metrics(diff, arms=tuple(arms))
    assert difference_of("lidnet_no_roi_minus_baseline", arms, "baseline") == (
        "lidnet_no_roi", "baseline")
    assert image_sets(list(metrics), arms) == ["low_dose", *arms, "normal_dose", "noise_free"]
    found = findings(metrics, arms)
    assert {f.difference for f in found} == {f"{a}_minus_baseline" for a in arms[1:]}
    page = summary_html(metrics, arms, phantom=False)
    assert "<b>lidnet_no_roi compared with the plain denoiser</b>" in page
    assert "normal-dose image is the only reference" in page
    table = headline_table(metrics, arms)
    assert "<td>my_arm</td>" in table and "my_arm \u2212 Plain denoiser" in table
    assert table.count("paired difference") == 3


def test_headline_table_marks_differences_and_keeps_the_cotrained_detector_apart():
    metrics = _metrics({"observer_cpm": iv(0.05, 0.02, 0.08)})
    metrics["lidnet"]["cotrained_cpm"] = iv(0.9, 0.85, 0.95)
    table = headline_table(metrics, ["baseline", "lidnet"])
    assert "W400/L40" in table and f"{MINUS}160 to 240 HU, data range 400 HU" in table
    assert "<th class=secondary>Co-trained detector CPM</th>" in table
    assert "<td class='secondary'>0.900" in table
    assert "+0.050<br><small>[+0.020, +0.080]</small><br><span class='badge better'>" in table


def test_number_writes_a_true_minus_and_no_negative_zero():
    assert number(-1.26, 1) == f"{MINUS}1.3"
    assert number(-0.0001, 3) == "0.000" and number(0.0001, 3, signed=True) == "0.000"
    assert number(2.0, 2, signed=True) == "+2.00"
    assert number(float("nan"), 2) == "\u2013" and number(None, 2) == "\u2013"
