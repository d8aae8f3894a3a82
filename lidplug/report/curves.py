"""Curves: each observer's FROC per image set, with the CPM table and the headroom beside them,
and each arm's training losses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from lidplug.report.labels import METRIC, image_sets, number, set_colours, short_label
from lidplug.report.summary import headroom
from lidplug.report.svg import PALETTE, Series, line_plot
from lidplug.report.table import Column, metric_table

__all__ = ["froc_html", "training_html"]

#: Image sets drawn dashed: the references, not something a denoiser made.
_REFERENCES = ("normal_dose", "noise_free")
#: Loss terms of a denoiser step, in legend order (a term never positive is not drawn).
_TERMS = (("loss", "total"), ("pixel", "pixel"), ("detection", "detection feedback"),
          ("roi_perceptual", "ROI perceptual"))


def froc_html(evaluation, arms: Sequence[str]) -> str:
    """One FROC plot per observer (a curve per image set), the CPM per observer and set, and
    the headroom sentence."""
    metrics = evaluation.metrics
    protocol = metrics.get("protocol", {})
    curves = evaluation.froc_curves
    if not curves:
        return "<p>No observer scored this run: no FROC.</p>"
    order = image_sets(list(evaluation.images), arms)
    colours = set_colours(order)
    plots = []
    for obs, by_set in curves.items():
        series = [Series(short_label(name), *by_set[name], color=colours.get(name),
                         step=True, dashed=name in _REFERENCES)
                  for name in image_sets(list(by_set), arms)]
        plots.append(line_plot(series, title=f"FROC, observer {obs}",
                               xlabel="false positives per image", ylabel="sensitivity",
                               xlog2=True, xlim=(0.125, 8.0), ylim=(0.0, 1.0),
                               width=380, height=290))
    columns = [Column(escape(obs), ("observers", obs, "cpm"), 3, True) for obs in curves]
    columns.append(Column.of(METRIC["observer_cpm"], "Mean of observers"))
    room = headroom(metrics)
    side = ("" if room is None else
            f"<p class='{'headroom' if room.enough else 'headroom warn'}'>"
            f"{escape(room.sentence())}</p>")
    rates = ", ".join(str(r) for r in protocol.get("fp_rates", []))
    note = (f"<p class='note'>Sensitivity against false positives per image, pooled over all "
            f"{protocol.get('n_slices', '?')} {protocol.get('split', 'test')} slices; CPM is the "
            "mean sensitivity at "
            f"{rates} false positives per image. A hit: "
            f"{escape(str(protocol.get('hit_rule', '?')))}. Dashed: the references (normal "
            "dose, noise-free reconstruction). The observers were trained on normal-dose "
            "slices only and no arm updated them.</p>")
    table = metric_table(metrics, arms, columns)
    return (f"{side}<div class='figures'>{''.join(plots)}</div>{note}"
            f"<h3>CPM per observer</h3>{table}")


def _history_series(history: Sequence[Mapping[str, Any]]) -> list[Series]:
    denoiser = [h for h in history if h.get("phase", "denoiser") == "denoiser"]
    detector = [h for h in history if h.get("phase") == "detector"]
    out = []
    for k, (key, label) in enumerate(_TERMS):
        pts = [(float(h["step"]), float(h[key])) for h in denoiser
               if isinstance(h.get(key), int | float)]
        if any(y > 0 for _, y in pts):
            out.append(Series(label, [p[0] for p in pts], [p[1] for p in pts],
                              color=PALETTE[k]))
    pts = [(float(h["step"]), float(h["loss"])) for h in detector
           if isinstance(h.get("loss"), int | float)]
    if any(y > 0 for _, y in pts):
        out.append(Series("detector step", [p[0] for p in pts], [p[1] for p in pts],
                          color=PALETTE[len(_TERMS)], dashed=True))
    return out


def training_html(arms: Mapping[str, Any], order: Sequence[str]) -> str:
    """Small loss plots, one per arm, with its update counts and wall time."""
    figs, updates = [], {}
    for name in order:
        result = arms.get(name)
        if result is None:
            continue
        history = list(getattr(result, "history", []) or [])
        n_den = sum(1 for h in history if h.get("phase", "denoiser") == "denoiser")
        n_det = sum(1 for h in history if h.get("phase") == "detector")
        updates[name] = n_den
        series = _history_series(history)
        plot = (line_plot(series, title=short_label(name), xlabel="step", ylabel="loss",
                          ylog=True, width=330, height=220) if series
                else "<p class='note'>no logged steps</p>")
        seconds = float(getattr(result, "seconds", 0.0) or 0.0)
        wall = f", {number(seconds, 1)} s" if seconds > 0 else ""
        figs.append(f"<figure>{plot}<figcaption>{n_den} denoiser updates, {n_det} detector "
                    f"updates{wall}</figcaption></figure>")
    if not figs:
        return "<p>No training history (the arms were not trained in this run).</p>"
    warn = "".join(f"<p class='warn'>{escape(short_label(name))}: {escape(note)}</p>"
                   for name in order for note in getattr(arms.get(name), "notes", None) or [])
    if len(set(updates.values())) > 1:
        warn += ("<p class='warn'>The arms took different numbers of denoiser updates ("
                + ", ".join(f"{escape(short_label(k))} {v}" for k, v in updates.items())
                + "): the comparison is not under the same budget.</p>")
    return (f"{warn}<div class='figures'>{''.join(figs)}</div><p class='note'>Per step, the "
            "logged loss terms of the denoiser's updates (log scale); dashed: the co-trained "
            "detector's own steps. A plain arm logs the pixel loss only.</p>")
