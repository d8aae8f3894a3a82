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

from lidplug.pipeline import dump_run
from lidplug.report.curves import froc_html, training_html
from lidplug.report.html import Report, Section, details
from lidplug.report.labels import short_label, subject
from lidplug.report.lesions import crops_html, recovery_html
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


def _subtitle(spec, protocol: Mapping[str, Any]) -> str:
    data, parts = spec.data, []
    if data.kind == "phantom":
        parts.append(f"simulated phantoms, {data.size}x{data.size} px of {data.spacing:g} mm")
    else:
        parts.append(f"{data.kind} data")
    parts.append(f"{protocol.get('n_slices', '?')} test slices, "
                 f"{protocol.get('n_lesions', '?')} lesions")
    dose = protocol.get("dose", spec.simulation.dose)
    if dose is not None:
        parts.append(f"low dose {dose:g} of normal")
    parts.append(f"lidplug {__version__}")
    return "; ".join(parts)


def _json(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=1, default=str))}</pre>"


def build_report(spec, evaluation, held, arms: Mapping[str, Any]) -> Report:
    """The :class:`~lidplug.report.Report` of one evaluated run.

    Args:
        spec: the :class:`~lidplug.pipeline.RunSpec`.
        evaluation: its :class:`~lidplug.pipeline.Evaluation` (metrics, images, detections,
            FROC curves, per-lesion tables).
        held: the :class:`~lidplug.pipeline.HeldOut` slices the evaluation scored.
        arms: arm name -> :class:`~lidplug.pipeline.ArmResult` (training histories).

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
    spacing = spec.data.spacing if spec.data.kind == "phantom" else None
    extra = other_references_table(metrics, names)
    sections = [
        Section("summary", "What was shown, and what was not",
                summary_html(metrics, names, phantom=phantom)),
        Section("numbers", "Headline numbers", headline_table(metrics, names) + (
            details("Against the other references, and the CHO's AUC", extra) if extra else "")),
        Section("lesions", "Lesions up close",
                crops_html(evaluation, held, names, hit_rule=spec.evaluate.hit_rule,
                           spacing_mm=spacing)),
        Section("maps", "Difference maps", maps_html(evaluation, held, names, comparator)),
        Section("recovery", "Contrast recovery per lesion",
                recovery_html(evaluation, names, spacing_mm=spacing)),
        Section("froc", "Detection by the observers (FROC)", froc_html(evaluation, names)),
        Section("training", "Training", training_html(arms, names)),
        Section("protocol", "Protocol and run description",
                details("Evaluation protocol (metrics.json \u2192 protocol)",
                        _json(protocol))
                + details("Run description (run.json)", _json(dump_run(spec)))),
    ]
    return Report(title=_title(names, comparator), subtitle=_subtitle(spec, protocol),
                  sections=sections)
