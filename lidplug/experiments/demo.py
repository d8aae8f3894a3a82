"""``lidplug demo``: the whole story on built-in phantoms, from nothing to a report, in minutes.

Stages (each reports progress): generate phantom slices; pretrain a detector on normal-dose slices
and warm a denoiser up (pixel loss); train the baseline (pixel loss only) and the LIDnet arm
(the same denoiser wrapped, collaborative training) under the same budget; evaluate the low-dose
input and both arms on held-out slices; write into ``out``:

* ``metrics.json``: ``low_dose``, ``baseline``, ``lidnet``, each with ``psnr``, ``ssim``,
  ``rmse_hu``, ``map50``, ``cpm`` and ``froc_sensitivity`` (``"0.125"``..``"8"``), every value
  ``{"mean", "low", "high"}`` (95% bootstrap interval over slices);
* ``report.html``: a self-contained page (metrics, example slices with boxes, FROC and loss
  curves);
* ``lidnet_denoiser.pt``: the LIDnet denoiser as TorchScript (:func:`lidplug.deploy.export`);
* ``run.json``: configuration, stage timings, versions, and a normal-dose detection reference.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lidplug.experiments.config import ExperimentConfig
from lidplug.experiments.data import TestSet, make_datasets
from lidplug.experiments.evaluate import ArmEvaluation, denoise, evaluate_arm
from lidplug.experiments.train import Stage, pretrain, train_arm
from lidplug.report import Example, Report, Series, slice_png, write_report
from lidplug.training.distributed import resolve_device
from lidplug.version import __version__

__all__ = ["ARMS", "DemoResult", "format_summary", "run_demo"]

#: The arms of ``metrics.json``, in order.
ARMS = ("low_dose", "baseline", "lidnet")
MODEL_FILE = "lidnet_denoiser.pt"


class DemoResult(dict):
    """What :func:`run_demo` returns: ``metrics``, ``files`` (name -> path), ``timings``."""


def _say(cfg: ExperimentConfig, text: str) -> None:
    if cfg.progress:
        print(f"lidplug demo: {text}", file=sys.stderr, flush=True)


def run_demo(cfg: ExperimentConfig, out: str | os.PathLike) -> DemoResult:
    """Run the demo (see the module docstring) and write its files into ``out``.

    Args:
        cfg: the configuration (:func:`lidplug.experiments.preset` ``("quick")`` is the default
            of ``lidplug demo``).
        out: output folder, created if needed; the demo's files in it are replaced.

    Returns:
        A :class:`DemoResult`.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder, got an existing file {out}")
    cfg = cfg.replace(device=str(resolve_device(cfg.device)))
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, out)
    finally:
        torch.set_num_threads(threads_before)


def _run(cfg: ExperimentConfig, out: Path) -> DemoResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    _say(cfg, f"[1/5] generating {cfg.train_samples} + {cfg.test_samples} phantom slices "
              f"({cfg.size}x{cfg.size}, dose {cfg.dose:g})")
    train, test = make_datasets(cfg)
    timings["data"] = time.perf_counter() - t0

    _say(cfg, f"[2/5] pretraining the detector ({cfg.detector_pretrain_steps} steps) and warming "
              f"up {cfg.denoiser} ({cfg.warmup_steps} steps)")
    start = pretrain(cfg, train)
    timings["pretrain"] = start.seconds
    _say(cfg, f"[3/5] training baseline and LIDnet ({cfg.denoiser_updates} denoiser steps each)")
    arms = {"baseline": train_arm(cfg, start.model, train, lidnet=False),
            "lidnet": train_arm(cfg, start.model, train, lidnet=True)}
    timings.update({f"train_{k}": v.seconds for k, v in arms.items()})

    _say(cfg, f"[4/5] evaluating on {len(test)} held-out slices")
    t = time.perf_counter()
    evaluations = _evaluate(cfg, start, arms, test)
    timings["evaluate"] = time.perf_counter() - t
    metrics = {arm: evaluations[arm].metrics for arm in ARMS}

    _say(cfg, "[5/5] exporting the LIDnet denoiser and writing the report")
    t = time.perf_counter()
    files = {"metrics": out / "metrics.json", "report": out / "report.html",
             "model": out / MODEL_FILE, "run": out / "run.json"}
    files["metrics"].write_text(json.dumps(metrics, indent=1) + "\n")
    from lidplug.deploy import export

    example = test.low[:2]
    export(arms["lidnet"].model, files["model"], example_input=example,
           config={"demo": cfg.to_dict(), "wrap": arms["lidnet"].model.config.to_dict()})
    timings["export"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    write_report(_report(cfg, start, arms, evaluations, test, timings), files["report"])
    files["run"].write_text(json.dumps({
        "config": cfg.to_dict(), "timings_s": timings,
        "reference_normal_dose": evaluations["normal_dose"].metrics,
        "versions": {"lidplug": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "threads": torch.get_num_threads()}, indent=1) + "\n")
    return DemoResult(metrics=metrics, files={k: str(v) for k, v in files.items()},
                      timings=timings)


def _evaluate(cfg: ExperimentConfig, start: Stage, arms: dict[str, Stage],
              test: TestSet) -> dict[str, ArmEvaluation]:
    images = {"low_dose": test.low,
              **{name: denoise(stage.model.denoiser, test.low, cfg.device)
                 for name, stage in arms.items()},
              "normal_dose": test.normal}
    detector = start.model.detector
    try:
        return {name: evaluate_arm(x, test, detector, resamples=cfg.bootstrap_resamples,
                                   map_resamples=cfg.map_resamples, seed=cfg.seed,
                                   device=cfg.device, image_metrics=name != "normal_dose")
                for name, x in images.items()}
    finally:
        detector.cpu()


def _smooth(values: list[float], width: int = 5) -> list[float]:
    out, acc = [], []
    for v in values:
        acc = [*acc[-(width - 1):], v] if width > 1 else [v]
        out.append(sum(acc) / len(acc))
    return out


def _term_series(stage: Stage, term: str, label: str, phases: tuple[str, ...]) -> Series:
    # x = the step's number among the steps of these phases (a model's own updates), so arms
    # with interleaved detector steps line up with the baseline.
    values = [float(h[term]) for h in stage.history if h["phase"] in phases and term in h]
    return Series(label, list(range(1, len(values) + 1)), _smooth(values))


def _report(cfg: ExperimentConfig, start: Stage, arms: dict[str, Stage],
            evaluations: dict[str, ArmEvaluation], test: TestSet,
            timings: dict[str, float]) -> Report:
    window = test.window
    with_lesions = [i for i, t in enumerate(test.targets) if len(t["boxes"])]
    chosen = (with_lesions or list(range(len(test))))[: cfg.examples]
    shown = ("low_dose", "baseline", "lidnet", "normal_dose")
    captions = {"low_dose": f"low dose ({cfg.dose:g})", "baseline": "baseline",
                "lidnet": "LIDnet", "normal_dose": "normal dose"}
    examples = []
    for i in chosen:
        panels = []
        for arm in shown:
            det = evaluations[arm].detections[i]
            panels.append((captions[arm], slice_png(
                window.inverse(evaluations[arm].images[i]), truth=test.targets[i]["boxes"],
                detected=det["boxes"], scores=det["scores"])))
        examples.append(Example(f"Held-out slice {i} ({len(test.targets[i]['boxes'])} lesion(s))",
                                panels))
    losses = {
        "Denoiser pixel loss (after warm-up)": [
            _term_series(arms["baseline"], "pixel", "baseline", ("warmup",)),
            _term_series(arms["lidnet"], "pixel", "LIDnet", ("denoiser", "joint"))],
        "LIDnet feedback terms": [
            _term_series(arms["lidnet"], "detection", "detection loss", ("denoiser", "joint")),
            _term_series(arms["lidnet"], "roi_perceptual", "ROI perceptual loss",
                         ("denoiser", "joint"))],
        "Pretraining": [
            _term_series(start, "loss", "detector (normal dose)", ("detector_pretrain",)),
            _term_series(start, "pixel", "denoiser warm-up (pixel)", ("warmup",))],
    }
    m = {arm: evaluations[arm].metrics for arm in ("low_dose", "baseline", "lidnet",
                                                    "normal_dose")}
    summary = [
        f"{cfg.train_samples} training and {len(test)} held-out phantom slices of "
        f"{cfg.size}x{cfg.size} pixels ({cfg.spacing:g} mm), low dose = {cfg.dose:g} of normal. "
        f"Denoiser {cfg.denoiser} {cfg.denoiser_kwargs}; detector Faster R-CNN (ResNet-18 FPN, "
        f"from scratch) pretrained {cfg.detector_pretrain_steps} steps on normal-dose slices.",
        f"Both arms start from the same {cfg.warmup_steps}-step warm-up and take "
        f"{cfg.denoiser_updates} more denoiser steps: the baseline with the pixel loss only, "
        f"LIDnet with detection feedback (weight {cfg.det_weight:g}) and the ROI perceptual "
        f"loss (weight {cfg.roi_weight:g}), mode '{cfg.mode}'.",
        f"Total wall time {timings['total']:.0f} s on {cfg.device} "
        f"({torch.get_num_threads()} CPU thread(s)).",
    ]
    notes = ["The normal-dose row is a reference (the detector on normal-dose slices); "
             "metrics.json holds the three arms. Small test sets give wide intervals: read "
             "overlapping intervals as no demonstrated difference."]
    return Report(title="lidplug demo: lesion-aware denoising on phantoms", summary=summary,
                  metrics=m, froc_curves={a: evaluations[a].froc_curve for a in m},
                  losses=losses, examples=examples,
                  config={**cfg.to_dict(), "timings_s": timings}, notes=notes)


def format_summary(metrics: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of the arms' main metrics (mean [95% interval])."""
    cols = (("psnr", "PSNR dB", 2), ("ssim", "SSIM", 4), ("rmse_hu", "RMSE HU", 1),
            ("map50", "mAP@0.5", 3), ("cpm", "CPM", 3))
    rows = [["arm", *[c[1] for c in cols]]]
    for arm, m in metrics.items():
        row = [arm]
        for key, _, d in cols:
            v = m.get(key)
            row.append("-" if v is None else
                       f"{v['mean']:.{d}f} [{v['low']:.{d}f}, {v['high']:.{d}f}]")
        rows.append(row)
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w)
                       for k, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
