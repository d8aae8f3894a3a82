"""The page of a real (tiny) run, built through lidplug.pipeline as ``lidplug evaluate`` does."""

import dataclasses
import re

import pytest

from lidplug.pipeline import dump_run
from lidplug.report import build_report, render_report

SECTIONS = ["summary", "numbers", "lesions", "maps", "recovery", "froc", "training", "protocol"]


def test_page_holds_every_section_in_order(tiny_run):
    html = tiny_run.html
    found = re.findall(r"<section id='([a-z]+)'>", html)
    assert found == SECTIONS
    report = build_report(tiny_run.spec, tiny_run.evaluation, tiny_run.held, tiny_run.arms,
                          description=dump_run(tiny_run.spec))
    assert [s.id for s in report.sections] == SECTIONS
    # Deterministic: the same run gives the same page.
    assert render_report(report) == html


def test_first_lines_say_what_was_shown_and_against_what(tiny_run):
    html = tiny_run.html
    summary = html.split("<section id='summary'>")[1].split("</section>")[0]
    assert "<b>LIDnet compared with the plain denoiser</b>" in summary
    assert "Lesion contrast:" in summary and "Detection by independent observers:" in summary
    assert re.search(r"badge (better|worse|ns)'", summary)
    assert "noise-free phantom" in summary and "excludes 0" in summary
    assert "Headroom:" in summary  # the untrained observers find nothing: no headroom
    assert "no denoiser could show a detection gain" in summary
    assert "Real anatomy" in summary  # a phantom result points to what real CT showed
    assert html.index("id='summary'") < html.index("id='numbers'")


def test_headline_table_rows_and_columns(tiny_run):
    table = tiny_run.html.split("<section id='numbers'>")[1].split("</table>")[0]
    for row in ("Low-dose input", "Plain denoiser (pixel loss)", "LIDnet (lesion-aware)",
                "Normal dose", "Noise-free reconstruction", "LIDnet \u2212 Plain denoiser"):
        assert f"<td>{row}" in table
    for column in ("RMSE in body (HU)", "PSNR (dB)", "SSIM", "Lesion contrast recovery",
                   "Lesion RMSE (HU)", "Lesion CNR", "Observer CPM", "CHO d\u2032",
                   "Co-trained detector CPM"):
        assert f"{column}<" in table
    assert "W400/L40" in table


def test_model_observer_not_computed_on_few_slices(tiny_run_few):
    html = tiny_run_few.html
    assert "CHO d\u2032</th>" not in html
    assert "not computed: 10 test lesions" in html
    assert "badge na'>not computed" in html


def test_crops_maps_and_plots(tiny_run):
    html = tiny_run.html
    lesions = html.split("<section id='lesions'>")[1].split("</section>")[0]
    rows = lesions.count("<h3>Lesion ")
    assert rows == 6
    # Per lesion: the truth, then low dose, both arms, normal dose, noise-free reconstruction.
    assert lesions.count("<img ") == rows * 6
    assert "true outline" in lesions and "lesion_fcos" in lesions
    maps = html.split("<section id='maps'>")[1].split("</section>")[0]
    assert maps.count("<h3>Test slice") == 2 and "class=\"colourbar\"" in maps
    assert "LIDnet minus Plain denoiser" in maps
    recovery = html.split("<section id='recovery'>")[1].split("</section>")[0]
    assert recovery.count("<svg") == 2 and "lesion diameter (mm)" in recovery
    froc = html.split("<section id='froc'>")[1].split("</section>")[0]
    assert froc.count("FROC, observer") >= 2 and "Headroom:" in froc
    training = html.split("<section id='training'>")[1].split("</section>")[0]
    assert training.count("<svg") == 2 and "denoiser updates" in training
    protocol = html.split("<section id='protocol'>")[1].split("</section>")[0]
    assert protocol.count("<details>") == 2 and "&quot;hit_rule&quot;" in protocol


def test_page_is_self_contained_small_and_described(tiny_run):
    html = tiny_run.html
    assert "<script" not in html
    assert not re.search(r"(src|href)=['\"](https?:|//)", html)
    images = re.findall(r"<img [^>]*>", html)
    assert images and all(re.search(r"alt='[^']+'", i) for i in images)
    assert all("role=\"img\"" in s for s in re.findall(r"<svg [^>]*>", html))
    assert tiny_run.page.stat().st_size < 3_000_000


def _without_phantom(run):
    """The tiny run as real data would leave it: no truth, no masks, no lesion metrics."""
    held = dataclasses.replace(run.held, truth=None, noise_free=None, background=None,
                               regions=[], lesion_free_low=None)
    drop = ("lesion_contrast_recovery", "lesion_rmse_hu", "lesion_cnr", "rmse_hu_vs_noise_free",
            "model_observer_dprime", "model_observer_auc")
    metrics = {name: ({k: v for k, v in row.items() if k not in drop}
                      if name != "protocol" else {**row, "reference": "normal-dose slice"})
               for name, row in run.evaluation.metrics.items() if name != "noise_free"}
    images = {k: v for k, v in run.evaluation.images.items() if k != "noise_free"}
    evaluation = dataclasses.replace(run.evaluation, metrics=metrics, images=images, lesions={})
    return evaluation, held


def test_real_data_page_uses_boxes_and_the_normal_dose_reference(tiny_run):
    evaluation, held = _without_phantom(tiny_run)
    html = render_report(build_report(tiny_run.spec, evaluation, held, tiny_run.arms))
    assert "normal-dose image is the only reference" in html
    assert "true box" in html and "No lesion metrics" in html
    assert "normal dose (itself noisy)" in html
    assert "No per-lesion values" in html
    assert "synthetic phantoms" not in html


def test_a_run_without_a_plain_arm_says_nothing_was_tested(tiny_run):
    metrics = {k: v for k, v in tiny_run.evaluation.metrics.items() if "_minus_" not in k}
    metrics["protocol"] = {**metrics["protocol"], "comparator": None}
    evaluation = dataclasses.replace(tiny_run.evaluation, metrics=metrics)
    html = render_report(build_report(tiny_run.spec, evaluation, tiny_run.held, tiny_run.arms))
    assert "No paired difference" in html and "paired difference</small>" not in html


def test_build_report_checks_the_held_out_slices(tiny_run, tiny_run_few):
    with pytest.raises(ValueError, match=r"expected the held-out slices the evaluation scored "
                                         r"\(24\), got 6"):
        build_report(tiny_run.spec, tiny_run.evaluation, tiny_run_few.held, tiny_run.arms)
