"""What a run leaves for people: ``metrics.json``, the terminal summary and ``report.html``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lidplug.metrics import judge
from lidplug.pipeline.data import HeldOut
from lidplug.pipeline.evaluate import Evaluation
from lidplug.pipeline.runfile import dump_run
from lidplug.pipeline.spec import RunSpec
from lidplug.pipeline.train import ArmResult

__all__ = ["DETAILS_FILE", "METRICS_FILE", "REPORT_FILE", "format_summary", "verdicts",
           "write_outputs"]

METRICS_FILE = "metrics.json"
DETAILS_FILE = "details.json"
REPORT_FILE = "report.html"
REAL_METRICS_FILE = "metrics-real-lesions.json"
REAL_DETAILS_FILE = "details-real-lesions.json"

#: (key, label, digits, higher is better) of the summary table and the verdicts.
SUMMARY_COLUMNS = (
    ("rmse_hu", "RMSE HU", 1, False),
    ("psnr", "PSNR dB", 2, True),
    ("ssim", "SSIM", 3, True),
    ("lesion_contrast_recovery", "contrast rec.", 3, True),
    ("lesion_rmse_hu", "lesion RMSE", 1, False),
    ("observer_cpm", "observer CPM", 3, True),
    ("model_observer_dprime", "CHO d'", 2, True),
)


def _fmt(v: Mapping[str, float] | None, digits: int, signed: bool = False) -> str:
    if not v or not math.isfinite(v.get("mean", math.nan)):
        return "-"
    sign = "+" if signed else ""
    return (f"{v['mean']:{sign}.{digits}f} [{v['low']:{sign}.{digits}f}, "
            f"{v['high']:{sign}.{digits}f}]")


def format_summary(metrics: Mapping[str, Any]) -> str:
    """A plain-text table: one row per image set and per paired difference; for real scans,
    then each test scan's noise level, aimed at and measured."""
    rows = [["", *[c[1] for c in SUMMARY_COLUMNS]]]
    for name, m in metrics.items():
        if name in ("protocol", "headroom") or not isinstance(m, Mapping):
            continue
        signed = "_minus_" in name
        rows.append([name, *[_fmt(m.get(k), d, signed) for k, _, d, _ in SUMMARY_COLUMNS]])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w)
                       for k, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for row in metrics.get("protocol", {}).get("noise") or []:
        lines.append(f"noise of {row['patient']} (HU, soft tissue): normal dose "
                     f"{row['normal_dose_noise_hu']:.1f} (test slices "
                     f"{_hu(row.get('normal_dose_noise_hu_measured'))}), low dose aimed at "
                     f"{row['low_dose_noise_hu_target']:.1f} (test slices "
                     f"{_hu(row.get('low_dose_noise_hu_measured'))})")
    return "\n".join(lines)


def _hu(value) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def verdicts(metrics: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """For each paired difference and summary metric: ``(difference, metric, verdict)``
    (:func:`judge`)."""
    out = []
    for name, m in metrics.items():
        if "_minus_" not in name:
            continue
        for key, _, _, higher in SUMMARY_COLUMNS:
            v = m.get(key)
            if not v or not all(math.isfinite(v[k]) for k in ("low", "high")):
                continue
            out.append((name, key, judge((v["mean"], v["low"], v["high"]), higher)))
    return out


def write_outputs(spec: RunSpec, out: Path, evaluation: Evaluation, held: HeldOut,
                  arms: Mapping[str, ArmResult], *, report: bool = True,
                  real: tuple[Evaluation, HeldOut] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``details.json`` (per-lesion values and FROC curves, for figures
    and further analysis) and ``report.html`` into ``out``; with ``real`` (the evaluation of a
    hybrid run's own annotated lesions) also ``metrics-real-lesions.json`` and
    ``details-real-lesions.json``, and a section of the report. Returns their paths."""
    files = {"metrics": out / METRICS_FILE, "details": out / DETAILS_FILE}
    _write_evaluation(spec, evaluation, files["metrics"], files["details"])
    if real is not None:
        files["metrics_real"] = out / REAL_METRICS_FILE
        files["details_real"] = out / REAL_DETAILS_FILE
        _write_evaluation(spec, real[0], files["metrics_real"], files["details_real"])
    if report:
        from lidplug.report import build_report, write_report

        files["report"] = write_report(
            build_report(spec, evaluation, held, arms, description=dump_run(spec), real=real),
            out / REPORT_FILE)
    return files


def _write_evaluation(spec: RunSpec, evaluation: Evaluation, metrics: Path, details: Path
                      ) -> None:
    metrics.write_text(json.dumps(evaluation.metrics, indent=1) + "\n")
    record = {"froc_curves": evaluation.froc_curves,
              "lesions": {name: {k: v.tolist() for k, v in table.items()}
                          for name, table in evaluation.lesions.items()},
              "spacing_mm": spec.data.spacing}
    details.write_text(json.dumps(record, allow_nan=True) + "\n")
