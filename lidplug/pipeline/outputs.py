"""What a run leaves for people: ``metrics.json``, the terminal summary and ``report.html``.

Files by split: the test split's are ``metrics.json``, ``details.json`` and ``report.html`` (and
``metrics-real-lesions.json``, ``details-real-lesions.json``); another split's carry its name,
``metrics-validation.json``, ``report-validation.html``, ... (:func:`split_file`), and every
file names its split inside (``protocol.split``, ``details.split``, the report's text). JSON is
JSON proper: a value that could not be measured (a split without lesions, a bootstrap whose
every replicate was undefined) is ``null``, its interval marked ``"note": "not measurable"``;
and every interval written contains its estimate (checked before writing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lidplug.metrics import judge_metric
from lidplug.pipeline.data import HeldOut
from lidplug.pipeline.evaluate import Evaluation
from lidplug.pipeline.folder import write_json
from lidplug.pipeline.runfile import dump_run
from lidplug.pipeline.spec import RunSpec
from lidplug.pipeline.train import ArmResult

__all__ = ["DETAILS_FILE", "METRICS_FILE", "NOT_MEASURABLE", "REPORT_FILE", "check_intervals",
           "format_summary", "split_file", "verdicts", "write_outputs"]

METRICS_FILE = "metrics.json"
DETAILS_FILE = "details.json"
REPORT_FILE = "report.html"
REAL_METRICS_FILE = "metrics-real-lesions.json"
REAL_DETAILS_FILE = "details-real-lesions.json"
#: The note of an interval that could not be measured (written as nulls).
NOT_MEASURABLE = "not measurable"

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


def split_file(name: str, split: str) -> str:
    """The file ``name`` of ``split``: itself for the test split, else with the split's name
    (``metrics.json`` -> ``metrics-validation.json``)."""
    if split == "test":
        return name
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{split}{dot}{suffix}"


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _fmt(v: Mapping[str, float] | None, digits: int, signed: bool = False) -> str:
    if not v or not all(_finite(v.get(k)) for k in ("mean", "low", "high")):
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
    (:func:`lidplug.metrics.judge_metric`: "too few to tell" below the minimum counts)."""
    protocol = metrics.get("protocol", {})
    out = []
    for name, m in metrics.items():
        if "_minus_" not in name:
            continue
        for key, _, _, higher in SUMMARY_COLUMNS:
            v = m.get(key)
            if not v or not all(_finite(v.get(k)) for k in ("mean", "low", "high")):
                continue
            out.append((name, key, judge_metric((v["mean"], v["low"], v["high"]), higher,
                                                protocol, key)))
    return out


def _intervals(node: Any, where: str = "") -> list[tuple[str, dict]]:
    """Every ``{mean, low, high}`` of a metrics object, with its path."""
    if not isinstance(node, dict):
        return []
    found = [(where, node)] if {"mean", "low", "high"} <= set(node) else []
    for key, value in node.items():
        found += _intervals(value, f"{where}/{key}")
    return found


def check_intervals(metrics: Mapping[str, Any], path: Path) -> None:
    """Refuse to write a metrics object with an interval that excludes its estimate (the
    bootstrap recentres such intervals, so this never happens unless something broke).

    Raises:
        ValueError: naming the file and the metric.
    """
    for where, v in _intervals(dict(metrics)):
        values = [v[k] for k in ("mean", "low", "high")]
        if all(_finite(x) for x in values):
            mean, low, high = values
            slack = 1e-9 * max(1.0, abs(mean))  # the recentring's own rounding
            if not low - slack <= mean <= high + slack:
                raise ValueError(f"{path}: expected every interval to contain its estimate, got "
                                 f"{where.lstrip('/')} = {mean} [{low}, {high}]")


def _measurable(metrics: Any) -> Any:
    """A copy of ``metrics`` where an interval with a value that is NaN or infinite gets the
    note "not measurable" (the values themselves are written as null)."""
    if not isinstance(metrics, dict):
        return metrics
    out = {k: _measurable(v) for k, v in metrics.items()}
    if {"mean", "low", "high"} <= set(out) and not all(
            _finite(out[k]) for k in ("mean", "low", "high")):
        out["note"] = NOT_MEASURABLE
    return out


def write_outputs(spec: RunSpec, out: Path, evaluation: Evaluation, held: HeldOut,
                  arms: Mapping[str, ArmResult], *, report: bool = True,
                  real: tuple[Evaluation, HeldOut] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``details.json`` (per-lesion values and FROC curves, for figures
    and further analysis) and ``report.html`` into ``out``; with ``real`` (the evaluation of a
    hybrid run's own annotated lesions) also ``metrics-real-lesions.json`` and
    ``details-real-lesions.json``, and a section of the report. Files of a split other than
    test carry its name (:func:`split_file`; the split is ``held.split``). Returns their
    paths."""
    def path(name: str) -> Path:
        return out / split_file(name, held.split)

    files = {"metrics": path(METRICS_FILE), "details": path(DETAILS_FILE)}
    _write_evaluation(spec, evaluation, held.split, files["metrics"], files["details"])
    if real is not None:
        files["metrics_real"] = path(REAL_METRICS_FILE)
        files["details_real"] = path(REAL_DETAILS_FILE)
        _write_evaluation(spec, real[0], real[1].split, files["metrics_real"],
                          files["details_real"])
    if report:
        from lidplug.report import build_report, write_report

        files["report"] = write_report(
            build_report(spec, evaluation, held, arms, description=dump_run(spec), real=real),
            path(REPORT_FILE))
    return files


def _write_evaluation(spec: RunSpec, evaluation: Evaluation, split: str, metrics: Path,
                      details: Path) -> None:
    check_intervals(evaluation.metrics, metrics)
    write_json(metrics, _measurable(evaluation.metrics))
    record = {"split": split, "froc_curves": evaluation.froc_curves,
              "lesions": {name: {k: v.tolist() for k, v in table.items()}
                          for name, table in evaluation.lesions.items()},
              "spacing_mm": spec.data.spacing}
    write_json(details, record, indent=None)
