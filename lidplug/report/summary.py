"""The page's first lines: what was shown and what was not, in words, and the detection headroom.

Verdicts come from :func:`lidplug.metrics.judge`, the one rule of every comparison (a
difference is *shown* when its 95% paired interval excludes 0); this module only words them.
The headroom rule is that of ``EVALUATION.md``: unless the observers find clearly more lesions
on normal-dose than on low-dose slices (:data:`MIN_HEADROOM`), no denoiser can show a detection gain on the task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from lidplug.metrics import judge_metric
from lidplug.report.html import badge
from lidplug.report.labels import (
    METRIC,
    Metric,
    difference_of,
    interval,
    number,
    shown_digits,
    subject,
)

__all__ = ["MIN_HEADROOM", "Finding", "Headroom", "findings", "headroom", "summary_html"]

#: The observers' CPM gap (normal dose - low dose) below which no detection gain can show.
MIN_HEADROOM = 0.1
#: The order of the sentences: the lesion claim first, then detection, then pixels.
_ORDER = ("lesion_contrast_recovery", "lesion_rmse_hu", "lesion_cnr", "observer_cpm",
          "model_observer_dprime", "rmse_hu", "psnr", "ssim")


@dataclass(frozen=True)
class Finding:
    """One sentence of the summary.

    Attributes:
        difference: the ``metrics.json`` key of the paired difference (``lidnet_minus_baseline``).
        metric: the metric's key.
        verdict: ``"better"``, ``"worse"``, ``"not shown"``, ``"too few to tell"`` or
            ``"not computed"``.
        text: the sentence.
    """

    difference: str
    metric: str
    verdict: str
    text: str


def _sentence(metric: Metric, verdict: str, value: tuple[float, float, float], a: str,
              b: str, reference: float | None = None) -> str:
    digits = shown_digits(value, metric.digits)
    mean, low, high = (number(v, digits, signed=True) for v in value)
    # An error in HU reads better beside its size: +0.06 HU is 0.3% of 23 HU.
    relative = ("" if reference is None or not reference > 0 or metric.unit.strip() != "HU" else
                f", {number(100 * value[0] / reference, 1, signed=True)}% of {b}'s "
                f"{number(reference, 1)} HU")
    if verdict == "not shown":
        return (f"{metric.topic}: no difference shown ({mean}{metric.unit}, interval {low} to "
                f"{high}{relative}).")
    if verdict == "too few to tell":
        return (f"{metric.topic}: too few to tell ({mean}{metric.unit}, interval {low} to "
                f"{high}{relative}): too few slices or lesions for a verdict (see below).")
    phrase = (metric.better if verdict == "better" else metric.worse).format(a=a, b=b)
    return (f"{metric.topic}: {phrase}: {mean}{metric.unit} (95% interval {low} to {high}"
            f"{relative}), shown.")


def findings(metrics: Mapping[str, Any], arms: Sequence[str] = (),
             comparator: str | None = None) -> list[Finding]:
    """Every paired difference of ``metrics`` in sentences, lesion metrics first.

    Args:
        metrics: the ``metrics.json`` object (differences are its ``*_minus_*`` entries).
        arms: the run's arm names (to split difference keys whose names hold underscores).
        comparator: the plain arm (``metrics["protocol"]["comparator"]`` when None).

    Returns:
        One :class:`Finding` per difference and metric present; a model observer that was not
        computed gets a ``"not computed"`` finding with the protocol's reason.
    """
    protocol = metrics.get("protocol", {})
    comparator = comparator or protocol.get("comparator")
    observer_note = str(protocol.get("model_observer", ""))
    room = headroom(metrics)
    out = []
    for name, row in metrics.items():
        if "_minus_" not in name or not isinstance(row, Mapping):
            continue
        arm, base = difference_of(name, arms, comparator)
        a, b = subject(arm), subject(base)
        for key in _ORDER:
            metric, value = METRIC[key], interval(row.get(key))
            if value is None:
                if key == "model_observer_dprime" and observer_note.startswith("not"):
                    out.append(Finding(name, key, "not computed",
                                       f"{metric.topic}: {observer_note}."))
                continue
            verdict = judge_metric(value, metric.higher_is_better, protocol, key)
            base_value = interval(metrics.get(base, {}).get(key))
            text = _sentence(metric, verdict, value, a, b,
                             None if base_value is None else base_value[0])
            if key == "observer_cpm" and room is not None and not room.enough:
                text += (f" The observers' headroom on this task is {number(room.gap, 2)}, "
                         f"below {MIN_HEADROOM}: no detection gain could show (see below).")
            out.append(Finding(name, key, verdict, text))
    return out


@dataclass(frozen=True)
class Headroom:
    """The observers' CPM on normal-dose and low-dose slices.

    Attributes:
        normal, low: CPM averaged over the observers.
        observers: observer name -> ``(normal, low)`` CPM.
        interval: the gap's paired 95% interval (``metrics["headroom"]``), when there is one.
    """

    normal: float
    low: float
    observers: Mapping[str, tuple[float, float]]
    interval: tuple[float, float] | None = None

    @property
    def gap(self) -> float:
        """Normal dose minus low dose: the most a denoiser could gain."""
        return self.normal - self.low

    @property
    def enough(self) -> bool:
        """Whether the gap reaches :data:`MIN_HEADROOM` (within rounding: 0.6 - 0.5 is 0.1)."""
        return self.gap >= MIN_HEADROOM - 1e-9

    def sentence(self) -> str:
        """The headroom in words, with the verdict on what the task can show."""
        each = "; ".join(f"{name} {number(n, 2)} vs {number(lo, 2)}"
                         for name, (n, lo) in self.observers.items())
        count = len(self.observers)
        who = f"the {count} observers (mean)" if count > 1 else "the observer"
        paired = ("" if self.interval is None else
                  f" (95% paired interval {number(self.interval[0], 2, signed=True)} to "
                  f"{number(self.interval[1], 2, signed=True)})")
        text = (f"Headroom: {who} reach CPM {number(self.normal, 2)} on normal-dose slices and "
                f"{number(self.low, 2)} on low-dose slices, a gap of "
                f"{number(self.gap, 2, signed=True)}{paired}"
                + (f" ({each})." if count > 1 else "."))
        if self.enough:
            return text + (" A denoiser has room to show a detection gain (at most about the "
                           "gap).")
        return text + (f" The gap is below {MIN_HEADROOM}: no denoiser could show a detection "
                       "gain on this task. To test detection, change the task (smaller or "
                       "fainter lesions, lower dose), not the statistics.")


def _cpm(row: Mapping[str, Any] | None, observer: str | None = None) -> float | None:
    if not isinstance(row, Mapping):
        return None
    entry = row.get("observer_cpm") if observer is None else (
        row.get("observers", {}).get(observer, {}).get("cpm"))
    value = interval(entry)
    return None if value is None else value[0]


def headroom(metrics: Mapping[str, Any]) -> Headroom | None:
    """The :class:`Headroom` of ``metrics``, or None without observer CPMs on both doses."""
    normal, low = metrics.get("normal_dose"), metrics.get("low_dose")
    mean_normal, mean_low = _cpm(normal), _cpm(low)
    if mean_normal is None or mean_low is None:
        return None
    names = metrics.get("protocol", {}).get("observers") or list(
        (normal or {}).get("observers", {}))
    each = {}
    for name in names:
        n, lo = _cpm(normal, name), _cpm(low, name)
        if n is not None and lo is not None:
            each[name] = (n, lo)
    gap = interval(metrics.get("headroom", {}).get("observer_cpm"))
    return Headroom(mean_normal, mean_low, each, None if gap is None else (gap[1], gap[2]))


def _overview(difference: str, items: Sequence[Finding], a: str, b: str) -> str:
    groups = {v: [METRIC[f.metric].name for f in items if f.verdict == v]
              for v in ("better", "worse", "not shown", "too few to tell", "not computed")}
    # "the plain denoiser" starts a sentence capitalised; an arm's key stays as it is.
    lead = "The" + a[3:] if a.startswith("the ") else a
    parts = [f"<b>{escape(lead)} compared with {escape(b)}</b>."]
    for verdict, label in (("better", "Shown better"), ("worse", "Shown worse"),
                           ("not shown", "Not shown"), ("too few to tell", "Too few to tell"),
                           ("not computed", "Not computed")):
        if groups[verdict] or verdict in ("better", "worse"):
            listed = ", ".join(groups[verdict]) or "nothing"
            parts.append(f"{badge(verdict, label)} {escape(listed)}.")
    return f"<p class='overview' id='overview-{escape(difference)}'>{' '.join(parts)}</p>"


def summary_html(metrics: Mapping[str, Any], arms: Sequence[str], *, phantom: bool) -> str:
    """The summary section: per difference an overview line and its sentences; what *shown*
    means and what the metrics are scored against; the headroom.

    Args:
        metrics: the ``metrics.json`` object.
        arms: the run's arm names.
        phantom: whether the slices are simulated (scored against the noise-free phantom).
    """
    protocol = metrics.get("protocol", {})
    comparator = protocol.get("comparator")
    found = findings(metrics, arms, comparator)
    parts = []
    by_difference: dict[str, list[Finding]] = {}
    for f in found:
        by_difference.setdefault(f.difference, []).append(f)
    for name, items in by_difference.items():
        arm, base = difference_of(name, arms, comparator)
        parts.append(_overview(name, items, subject(arm), subject(base)))
        rows = "".join(f"<li>{badge(f.verdict)} {escape(f.text)}</li>" for f in items)
        parts.append(f"<ul class='findings'>{rows}</ul>")
    if not by_difference:
        parts.append("<p class='overview'>No paired difference: this run has no plain arm to "
                     "compare with, so nothing was tested.</p>")
    boot = protocol.get("bootstrap", {})
    n_slices, n_lesions = protocol.get("n_slices"), protocol.get("n_lesions")
    reference = ("Every image metric is scored against the <b>noise-free phantom</b>, the true "
                 "image the slices were simulated from (normal dose and the noise-free "
                 "reconstruction are scored the same way, as references)." if phantom else
                 "These are real scans: the <b>normal-dose image is the only reference</b>, and "
                 "it is itself noisy, so errors against it have a floor.")
    split = protocol.get("split", "test")
    meaning = (f"A difference is <b>shown</b> when its 95% paired interval over the "
               f"{n_slices or ''} {split} slices ({n_lesions if n_lesions is not None else '?'}"
               f" lesions; {boot.get('resamples', '?')} bootstrap resamples, each drawing the "
               "same slices for both arms) excludes 0: its direction holds on these slices, "
               "whatever its size (read the size beside it). <i>Not shown</i> means these "
               "slices cannot tell the arms apart, not that they are equal. The intervals cover "
               "slice-to-slice variation of one training run, not a rerun with another seed.")
    parts.append(f"<p>{meaning} {reference}</p>")
    minimum = protocol.get("minimum", {})
    if minimum:
        parts.append(f"<p>Below {minimum.get('slices')} {split} slices, or {minimum.get('lesions')}"
                     " lesions for the lesion and detection metrics, a bootstrap interval barely "
                     "varies and covers far less than 95%: those differences are marked "
                     "<i>too few to tell</i>, whatever their interval.</p>")
    if isinstance(boot.get("resamples"), int) and boot["resamples"] < 1000:
        parts.append(f"<p class='warn'>Only {boot['resamples']} bootstrap resamples: the ends "
                     "of the intervals are rough.</p>")
    room = headroom(metrics)
    if room is None:
        parts.append("<p class='warn'>Headroom: no observer scored both the normal-dose and "
                     "the low-dose slices, so the detection headroom is unknown.</p>")
    else:
        cls = "headroom" if room.enough else "headroom warn"
        parts.append(f"<p class='{cls}'>{escape(room.sentence())}</p>")
    return "\n".join(parts)
