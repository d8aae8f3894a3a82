"""The metric tables: a row per image set and per paired difference, a column per metric.

Cells are the mean over held-out slices with the 95% interval under it; difference rows are signed
and carry their verdict. A column no row has a value for is left out, and the notes say why
(the model observer not computed, no lesion masks on real data, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from lidplug.metrics import judge_metric
from lidplug.report.html import badge
from lidplug.report.labels import (
    EXTRA_METRICS,
    METRICS,
    Metric,
    difference_of,
    image_sets,
    interval,
    number,
    set_label,
    short_label,
    shown_digits,
)

__all__ = ["Column", "headline_table", "metric_table", "other_references_table", "window_text"]


@dataclass(frozen=True)
class Column:
    """One column: where its value sits in a metrics row and how it is shown.

    Attributes:
        header: the column header (HTML).
        path: keys from a row of ``metrics.json`` to the ``{"mean", "low", "high"}`` entry
            (``("observer_cpm",)``, ``("observers", "lesion_fcos", "cpm")``).
        digits: decimals shown.
        higher_is_better: which way a difference is good.
        secondary: drawn greyed, apart from the headline (the co-trained detector).
    """

    header: str
    path: tuple[str, ...]
    digits: int
    higher_is_better: bool
    secondary: bool = False

    @classmethod
    def of(cls, metric: Metric, header: str | None = None) -> Column:
        """The column of a :class:`~lidplug.report.labels.Metric`."""
        return cls(header or escape(metric.header), (metric.key,), metric.digits,
                   metric.higher_is_better, metric.key == "cotrained_cpm")

    def value(self, row: Mapping[str, Any]) -> tuple[float, float, float] | None:
        """``(mean, low, high)`` of this column in ``row``, or None."""
        node: Any = row
        for key in self.path:
            node = node.get(key) if isinstance(node, Mapping) else None
        return interval(node)


def window_text(protocol: Mapping[str, Any]) -> str:
    """The PSNR/SSIM window as ``W400/L40 (-160 to 240 HU, data range 400 HU)``."""
    w = protocol.get("window") or {}
    lo, hi = w.get("lo_hu"), w.get("hi_hu")
    if lo is None or hi is None:
        return "the evaluation window"
    return (f"W{number(hi - lo, 0)}/L{number((hi + lo) / 2, 0)} ({number(lo, 0)} to "
            f"{number(hi, 0)} HU, data range {number(w.get('data_range_hu', hi - lo), 0)} HU)")


def _cell(value: tuple[float, float, float] | None, column: Column, verdict: str | None) -> str:
    cls = " class='secondary'" if column.secondary else ""
    if value is None:
        return f"<td{cls}>\u2013</td>"
    signed = verdict is not None
    digits = shown_digits(value, column.digits) if signed else column.digits
    mean, low, high = (number(v, digits, signed=signed) for v in value)
    mark = f"<br>{badge(verdict)}" if verdict else ""
    return f"<td{cls}>{mean}<br><small>[{low}, {high}]</small>{mark}</td>"


def metric_table(metrics: Mapping[str, Any], arms: Sequence[str], columns: Sequence[Column],
                 *, rows: Sequence[str] | None = None, differences: bool = True) -> str:
    """A ``<table>``: image sets (page order), then the paired differences, by ``columns``.

    Args:
        metrics: the ``metrics.json`` object.
        arms: the run's arm names (row order, difference labels).
        columns: what to show; columns without a value in any row are dropped.
        rows: image sets to show (default: all of ``metrics``).
        differences: also the ``*_minus_*`` rows, signed, with their verdicts.
    """
    protocol = metrics.get("protocol", {})
    comparator = protocol.get("comparator")
    sets = image_sets(list(rows if rows is not None else metrics), arms)
    sets = [s for s in sets if isinstance(metrics.get(s), Mapping)]
    diffs = [k for k in metrics if "_minus_" in k] if differences else []
    columns = [c for c in columns if any(c.value(metrics[r]) for r in (*sets, *diffs))]
    head = "".join(f"<th{' class=secondary' if c.secondary else ''}>{c.header}</th>"
                   for c in columns)
    body = []
    for name in sets:
        label = set_label(name) + (" \u2013 best reachable" if name == "noise_free" else "")
        cells = "".join(_cell(c.value(metrics[name]), c, None) for c in columns)
        body.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
    for k, name in enumerate(diffs):
        arm, base = difference_of(name, arms, comparator)
        cells = []
        for c in columns:
            value, verdict = c.value(metrics[name]), None
            if value is not None:
                verdict = judge_metric(value, c.higher_is_better, protocol, c.path[0])
            cells.append(_cell(value, c, verdict))
        cls = "diff sep" if k == 0 else "diff"
        body.append(f"<tr class='{cls}'><td>{escape(short_label(arm))} \u2212 "
                    f"{escape(short_label(base))}<br><small>paired difference</small></td>"
                    f"{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table><thead><tr><th>Image set</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


_LESION_NOTE = (
    "Lesion contrast recovery: (mean HU inside the lesion minus mean HU of a ring of background "
    "around it) over the true contrast; 1 is perfect, 0 a lesion blurred away; pooled over "
    "lesions weighted by their true contrast. Lesion RMSE: inside each lesion's box dilated by "
    "2 px, averaged over lesions. Lesion CNR: the lesion's contrast over the noise (standard "
    "deviation) of its ring.")
#: The contrast rule of hybrid slices and of real annotated lesions (see the evaluation).
_LESION_NOTES = {
    "inserted": (
        "Lesion contrast recovery, exact from the known inserted signal: each image's response "
        "to the nodule (the image minus the same image made from the slice without the nodule "
        "and with the same noise; mean inside the nodule minus a ring around it) over the "
        "inserted signal's own contrast; 1 is all of it kept, 0 a nodule blurred away; pooled "
        "over nodules weighted by their contrast. Lesion RMSE: against the normal-dose slice, "
        "inside each nodule's box dilated by 2 px. Lesion CNR: the nodule's contrast over the "
        "noise of its ring, on the image itself."),
    "real": (
        "Contrast kept (the contrast-recovery column): the lesion's contrast against a ring "
        "around it (mean inside the annotated mask, or the box where the source has boxes only, "
        "minus the ring) over the same on the normal-dose slice: 1 keeps the normal dose's "
        "contrast. Lesion RMSE: against the normal-dose slice inside each lesion's box dilated "
        "by 2 px. Lesion CNR: its contrast over its ring's noise."),
}
_NO_LESION_NOTE = ("No lesion metrics: they need exact lesion masks and true contrasts "
                   "(phantoms).")
_COTRAINED_NOTE = (
    "Co-trained detector CPM (grey): the detector an arm trained with, scoring that arm's own "
    "images; it is not independent of the arm and never the headline.")


def _notes(metrics: Mapping[str, Any], window: str) -> list[str]:
    """The headline table's notes (HTML): statistics, reference, and each column's rule."""
    protocol = metrics.get("protocol", {})
    split = protocol.get("split", "test")
    boot, win = protocol.get("bootstrap", {}), protocol.get("window", {})
    observers = protocol.get("observers") or []
    rows = [r for name, r in metrics.items() if name != "protocol" and isinstance(r, Mapping)]
    rates = ", ".join(str(r) for r in protocol.get("fp_rates", []))
    computed = any("model_observer_dprime" in r for r in rows)
    return [
        f"Mean over the {protocol.get('n_slices', '?')} {split} slices; under it the "
        f"{escape(str(boot.get('interval', '95%')))} bootstrap interval "
        f"({boot.get('resamples', '?')} resamples over {split} slices). Difference rows: arm "
        "minus "
        "the plain arm on the same slices, marked <i>shown</i> when the interval excludes 0.",
        f"Reference: {escape(str(protocol.get('reference', '?')))}. RMSE: "
        f"{escape(str(protocol.get('rmse', 'HU, inside the body')))}. PSNR and SSIM on {window} "
        f"(PSNR {escape(str(win.get('psnr', '')))}, SSIM {escape(str(win.get('ssim', '')))}).",
        (_LESION_NOTES.get(str(protocol.get("lesions")), _LESION_NOTE)
         if any("lesion_contrast_recovery" in r for r in rows) else _NO_LESION_NOTE),
        f"Observer CPM: mean sensitivity at {rates} false positives per image, averaged over the "
        f"{len(observers)} observers ({escape(', '.join(observers))}), detectors trained on "
        "normal-dose slices only and never updated by an arm; a hit is "
        f"{escape(str(protocol.get('hit_rule', '?')))}.",
        f"Model observer (CHO d\u2032): {escape(str(protocol.get('model_observer', '?')))}"
        + ("; scored on the low-dose input and the arms, the sets with a lesion-free twin (the "
           "same slice without its lesions)." if computed else "."),
        *([_COTRAINED_NOTE] if any("cotrained_cpm" in r for r in rows) else []),
    ]


def headline_table(metrics: Mapping[str, Any], arms: Sequence[str]) -> str:
    """The headline table with its notes (reference, window, lesion and detection rules)."""
    window = window_text(metrics.get("protocol", {}))
    preset = escape(window.split(" (")[0])
    columns = [Column.of(m, f"{escape(m.header)}<br><small>{preset}</small>")
               if m.key in ("psnr", "ssim") else Column.of(m) for m in METRICS]
    return metric_table(metrics, arms, columns) + "".join(
        f"<p class='note'>{n}</p>" for n in _notes(metrics, window))


def other_references_table(metrics: Mapping[str, Any], arms: Sequence[str]) -> str:
    """RMSE against the other references and the CHO's AUC (empty when none is present)."""
    columns = [Column.of(m) for m in EXTRA_METRICS]
    if not any(c.value(metrics[s]) for c in columns for s in metrics if s != "protocol"):
        return ""
    return (metric_table(metrics, arms, columns)
            + "<p class='note'>The normal-dose slice is itself noisy (tens of HU), so RMSE "
              "against it has that noise as a floor and hides most of what a denoiser does; "
              "the noise-free reconstruction is the best a denoiser trained on these pairs can "
              "reach.</p>")
