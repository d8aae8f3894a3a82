"""What a run leaves for people: ``metrics.json``, the terminal summary and ``report.html``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lidplug.pipeline.data import HeldOut
from lidplug.pipeline.evaluate import Evaluation
from lidplug.pipeline.spec import RunSpec
from lidplug.pipeline.train import ArmResult

__all__ = ["DETAILS_FILE", "METRICS_FILE", "REPORT_FILE", "format_summary", "judge",
           "verdicts", "write_outputs"]

METRICS_FILE = "metrics.json"
DETAILS_FILE = "details.json"
REPORT_FILE = "report.html"

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
    """A plain-text table: one row per image set and per paired difference."""
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
    return "\n".join(lines)


def judge(value: tuple[float, float, float], higher_is_better: bool) -> str:
    """The verdict on a ``(mean, low, high)`` difference: ``"better"`` or ``"worse"`` when the
    95% interval excludes 0 (in the metric's good or bad direction), else ``"not shown"``.

    The one rule of every comparison (terminal, report, results pages)."""
    _, low, high = value
    if low > 0 or high < 0:
        return "better" if (low > 0) == higher_is_better else "worse"
    return "not shown"


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
                  arms: Mapping[str, ArmResult], *, report: bool = True) -> dict[str, Path]:
    """Write ``metrics.json``, ``details.json`` (per-lesion values and FROC curves, for figures
    and further analysis) and ``report.html`` into ``out``; returns their paths."""
    files = {"metrics": out / METRICS_FILE, "details": out / DETAILS_FILE}
    files["metrics"].write_text(json.dumps(evaluation.metrics, indent=1) + "\n")
    details = {"froc_curves": evaluation.froc_curves,
               "lesions": {name: {k: v.tolist() for k, v in table.items()}
                           for name, table in evaluation.lesions.items()},
               "spacing_mm": spec.data.spacing}
    files["details"].write_text(json.dumps(details, allow_nan=True) + "\n")
    if report:
        from lidplug.report import build_report, write_report

        files["report"] = write_report(build_report(spec, evaluation, held, arms),
                                       out / REPORT_FILE)
    return files
