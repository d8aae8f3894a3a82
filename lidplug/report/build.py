"""The run's report, from what the pipeline leaves: the run, its evaluation, the held-out
slices and the trained arms (what :func:`lidplug.pipeline.evaluate` passes in).

Section order is the reading order: what was shown and what was not, the numbers, the lesions
up close, the error maps, per-lesion recovery, the observers' FROC, training, and the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from lidplug.data.transforms import LUNG_HU, SOFT_TISSUE_HU
from lidplug.report.curves import froc_html, training_html
from lidplug.report.html import Report, Section, details
from lidplug.report.labels import short_label, subject
from lidplug.report.lesions import CROP_PX, crops_html, recovery_html
from lidplug.report.maps import maps_html
from lidplug.report.summary import summary_html
from lidplug.report.table import headline_table, other_references_table
from lidplug.version import __version__

__all__ = ["build_report"]


def _title(arms: list[str], comparator: str | None) -> str:
    others = [a for a in arms if a != comparator]
    if comparator and others:
        versus = ", ".join(short_label(a) for a in others)
        return f"lidplug run report: {versus} vs {subject(comparator)}"
    return f"lidplug run report: {', '.join(short_label(a) for a in arms) or 'no arms'}"


def _kind(held) -> str:
    """``"phantom"``, ``"hybrid"`` (nodules inserted into real CT) or ``"real"`` data."""
    if held.truth is not None:
        return "phantom"
    return "hybrid" if held.signal is not None else "real"


def _spacings(held) -> list[float] | None:
    """Each held-out slice's pixel size (real data), from its meta."""
    values = [m.get("spacing") for m in held.meta]
    if not values or any(v is None for v in values):
        return None
    return [float(v[1]) for v in values]


def _subtitle(spec, protocol: Mapping[str, Any], held) -> str:
    data, parts = spec.data, []
    kind = _kind(held)
    if kind == "phantom":
        parts.append(f"simulated phantoms, {data.size}x{data.size} px of {data.spacing:g} mm")
    else:
        h, w = held.low.shape[-2:]
        sizes = _spacings(held)
        span = (f" of {min(sizes):.2f}-{max(sizes):.2f} mm" if sizes else "")
        patients = sorted({m.get("patient") for m in held.meta if m.get("patient")})
        who = f" of {len(patients)} held-out patients" if patients else ""
        parts.append(("real chest CT with real LIDC nodules inserted (hybrid)" if kind == "hybrid"
                      else f"{data.kind} data") + f", whole slices of {w}x{h} px{span}{who}")
    parts.append(f"{protocol.get('n_slices', '?')} {held.split} slices, "
                 f"{protocol.get('n_lesions', '?')} lesions")
    dose = protocol.get("dose", spec.simulation.dose)
    if dose is not None:
        parts.append(f"low dose {dose:g} of " + ("normal" if kind == "phantom"
                                                 else "each scan's own"))
    parts.append(f"lidplug {__version__}")
    return "; ".join(parts)


#: Display windows of the crops, by kind of data: the phantoms' lesions sit in soft tissue;
#: inserted lung nodules are judged on the lung window and on a narrow one around the lung's
#: own level (their contrast is tens to a few hundred HU); real tumours on lung and soft tissue.
_WINDOWS = {
    "phantom": (("soft-tissue window W400/L40", SOFT_TISSUE_HU),),
    "hybrid": (("lung window W1500/L-600", LUNG_HU),
               ("narrow lung window W500/L-700", (-950.0, -450.0))),
    "real": (("lung window W1500/L-600", LUNG_HU), ("soft-tissue window W400/L40",
                                                   SOFT_TISSUE_HU)),
}
#: Real CT is seen at its own resolution: crops of at least this many pixels (about 4-5 cm).
_REAL_CROP_PX = 64


def _lesion_sections(spec, evaluation, held, names: list[str], key: str, title: str
                     ) -> list[Section]:
    kind = _kind(held)
    spacing = spec.data.spacing if kind == "phantom" else _spacings(held)
    real_ct = kind != "phantom"
    return [
        Section(f"{key}lesions", f"{title}up close" if title else "Lesions up close",
                crops_html(evaluation, held, names, hit_rule=spec.evaluate.hit_rule,
                           spacing_mm=spacing, windows=_WINDOWS[kind],
                           min_crop=_REAL_CROP_PX if real_ct else CROP_PX, overview=real_ct)),
        Section(f"{key}recovery", f"{title}contrast recovery per lesion"
                if title else "Contrast recovery per lesion",
                recovery_html(evaluation, names, spacing_mm=spacing)),
        Section(f"{key}froc", f"{title}detection by the observers (FROC)"
                if title else "Detection by the observers (FROC)", froc_html(evaluation, names)),
    ]


def _noise_table(protocol: Mapping[str, Any]) -> str:
    rows = protocol.get("noise")
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{escape(str(r.get('patient')))}</td>"
        f"<td>{r['normal_dose_noise_hu']:.1f}</td>"
        f"<td>{_hu(r.get('normal_dose_noise_hu_measured'))}</td>"
        f"<td>{r['low_dose_noise_hu_target']:.1f}</td>"
        f"<td>{_hu(r.get('low_dose_noise_hu_measured'))}</td></tr>" for r in rows)
    return ("<p>Noise of the real scans (HU): "
            f"{escape(str(protocol.get('noise_method', '')))}.</p>"
            "<table><tr><th>patient</th><th>normal dose (scan)</th>"
            "<th>normal dose (these slices)</th><th>low dose aimed at</th>"
            "<th>low dose (these slices)</th></tr>" + body + "</table>")


def _hu(value) -> str:
    return "&ndash;" if value is None else f"{float(value):.1f}"


def _json(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=1, default=str))}</pre>"


# A phantom run's result says nothing of real anatomy; the project's real-CT study says what
# happened there, so a reader of the demo's report is pointed to it.
_PHANTOM_NOTE = ("<p class='note'>These are synthetic phantoms, their lesions a few pixels "
                 "across. On real chest CT with real 8-20 mm nodules (<code>lidplug demo --run "
                 "real-lung</code>) the plain denoiser already kept nearly all of their contrast "
                 "and LIDnet made no shown difference: lidplug's docs/RESULTS.md, "
                 "\u201cReal anatomy\u201d.</p>")


def build_report(spec, evaluation, held, arms: Mapping[str, Any], *,
                 description: Mapping[str, Any] | None = None,
                 real: tuple[Any, Any] | None = None) -> Report:
    """The :class:`~lidplug.report.Report` of one evaluated run.

    Args:
        spec: the :class:`~lidplug.pipeline.RunSpec`.
        evaluation: its :class:`~lidplug.pipeline.Evaluation` (metrics, images, detections,
            FROC curves, per-lesion tables).
        held: the :class:`~lidplug.pipeline.HeldOut` slices the evaluation scored.
        arms: arm name -> :class:`~lidplug.pipeline.ArmResult` (training histories).
        description: the run as ``run.json`` records it (:func:`lidplug.pipeline.dump_run`),
            shown in the protocol section; None leaves it out.
        real: ``(evaluation, held)`` of a hybrid run's own annotated lesions (shown in a
            section of their own), or None.

    Returns:
        The report; :func:`~lidplug.report.write_report` writes it as one HTML file.

    Raises:
        ValueError: when ``evaluation`` and ``held`` do not hold the same number of slices.
    """
    metrics = evaluation.metrics
    protocol = metrics.get("protocol", {})
    if "low_dose" in evaluation.images and evaluation.images["low_dose"].shape[0] != len(held):
        raise ValueError(f"build_report: expected the held-out slices the evaluation scored "
                         f"({evaluation.images['low_dose'].shape[0]}), got {len(held)}")
    names = [a.name for a in spec.arms if a.name in evaluation.images]
    names += [a for a in arms if a not in names and a in evaluation.images]
    comparator = protocol.get("comparator")
    phantom = held.truth is not None
    extra = other_references_table(metrics, names)
    noise = _noise_table(protocol)
    sections = [
        Section("summary", "What was shown, and what was not",
                summary_html(metrics, names, phantom=phantom) + (_PHANTOM_NOTE if phantom
                                                                  else "")),
        Section("numbers", "Headline numbers", headline_table(metrics, names) + noise + (
            details("Against the other references, and the CHO's AUC", extra) if extra else "")),
    ]
    crops, recovery, froc = _lesion_sections(spec, evaluation, held, names, "", "")
    sections += [crops, Section("maps", "Difference maps",
                                maps_html(evaluation, held, names, comparator)),
                 recovery, froc]
    if real is not None:
        real_evaluation, real_held = real
        real_metrics = real_evaluation.metrics
        intro = ("<p>The held-out patients' own tumours, as annotated (boxes, or masks where "
                 "the source has them), never inserted anywhere: scored apart from the "
                 "inserted nodules, against the normal-dose slice (contrast kept relative to "
                 "normal dose, lesion RMSE), and by the same observers. "
                 f"{len(real_held)} slices, "
                 f"{real_metrics.get('protocol', {}).get('n_lesions', '?')} lesions.</p>")
        sections += [
            Section("real", "Real tumours of the held-out patients",
                    intro + summary_html(real_metrics, names, phantom=False)
                    + headline_table(real_metrics, names)),
            *_lesion_sections(spec, real_evaluation, real_held, names, "real-",
                              "Real tumours: "),
        ]
    sections += [
        Section("training", "Training", training_html(arms, names)),
        Section("protocol", "Protocol and run description",
                details(f"Evaluation protocol (the {held.split} split's metrics file "
                        "\u2192 protocol)",
                        _json(protocol))
                + (details("Run description (run.json)", _json(description))
                   if description is not None else "")),
    ]
    return Report(title=_title(names, comparator), subtitle=_subtitle(spec, protocol, held),
                  sections=sections)
