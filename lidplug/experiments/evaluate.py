"""Evaluation of one arm on held-out slices: image quality against normal dose, and detection.

Every arm is scored the same way: its images (low-dose input, or a denoiser's output) are
compared in HU with the normal-dose images (:func:`lidplug.metrics.image_quality`, full window),
and one fixed detector (the pretrained one, shared by all arms) is run on them, scored with FROC
(sensitivity at 0.125-8 false positives per image, CPM) and mAP@0.5 against the lesion boxes.
Intervals are 95% percentile bootstraps over slices with one seed, so all arms see the same
resamples (paired intervals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lidplug.experiments.data import TestSet
from lidplug.metrics import (
    DEFAULT_FP_RATES,
    bootstrap,
    bootstrap_mean,
    froc_from_matches,
    image_quality,
    match_detections,
    mean_average_precision,
)
from lidplug.wrapper import wrap

__all__ = ["ArmEvaluation", "denoise", "detect", "evaluate_arm"]

_BATCH = 8


@dataclass
class ArmEvaluation:
    """One arm's scores and what the report draws from them.

    Attributes:
        metrics: ``psnr``, ``ssim``, ``rmse_hu``, ``map50`` (each ``{"mean", "low", "high"}``),
            ``froc_sensitivity`` (``"0.125"``..``"8"`` -> interval) and ``cpm``.
        images: ``Tensor[N, 1, H, W]`` the arm's images in window units.
        detections: per slice ``dict(boxes, scores, labels)``.
        froc_curve: ``(fp_per_image, sensitivity)`` operating points of the whole test set.
    """

    metrics: dict
    images: Tensor
    detections: list[dict[str, Tensor]]
    froc_curve: tuple[list[float], list[float]]


@torch.no_grad()
def denoise(denoiser: nn.Module, low: Tensor, device: str | torch.device = "cpu") -> Tensor:
    """Run ``denoiser`` (eval mode) over ``low`` in batches; returns CPU float32."""
    was_training = denoiser.training
    denoiser.eval().to(device)
    try:
        return torch.cat([denoiser(low[i:i + _BATCH].to(device)).float().cpu()
                          for i in range(0, low.shape[0], _BATCH)])
    finally:
        denoiser.train(was_training)


@torch.no_grad()
def detect(detector: nn.Module, images: Tensor, device: str | torch.device = "cpu"
           ) -> list[dict[str, Tensor]]:
    """Detections of ``detector`` on ``images`` (window units), on the CPU."""
    detector = detector.to(device)
    model = wrap(nn.Identity(), detector)
    out: list[dict[str, Tensor]] = []
    for i in range(0, images.shape[0], _BATCH):
        dets = model.detect(images[i:i + _BATCH].to(device))
        out += [{k: v.cpu() for k, v in d.items()} for d in dets]
    return out


def _interval(ci) -> dict[str, float]:
    return {k: float(v) for k, v in ci.as_dict().items()}


def evaluate_arm(images: Tensor, test: TestSet, detector: nn.Module, *, resamples: int = 1000,
                 map_resamples: int = 200, seed: int = 0, device: str | torch.device = "cpu",
                 image_metrics: bool = True) -> ArmEvaluation:
    """Score one arm's images (see the module docstring).

    Args:
        images: ``Tensor[N, 1, H, W]`` in the test set's window units.
        test: the held-out slices (normal-dose references and lesion boxes).
        detector: the shared detector.
        resamples: bootstrap replicates of image metrics and FROC.
        map_resamples: bootstrap replicates of mAP (each runs the COCO evaluator).
        seed: bootstrap seed (use one for all arms: paired intervals).
        device: where the detector runs.
        image_metrics: False skips PSNR/SSIM/RMSE (for the normal-dose reference itself).
    """
    if images.shape != test.normal.shape:
        raise ValueError(f"images: expected the test set's shape {tuple(test.normal.shape)}, got "
                         f"{tuple(images.shape)}")
    window = test.window
    metrics: dict = {}
    if image_metrics:
        quality = image_quality(window.inverse(images), window.inverse(test.normal))
        metrics = {name: _interval(bootstrap_mean(values, n_resamples=resamples, seed=seed))
                   for name, values in quality.items()}
    detections = detect(detector, images, device)
    targets = test.targets
    matches = match_detections(detections, targets)
    n = len(matches)
    froc_ci = bootstrap(lambda idx: froc_from_matches([matches[j] for j in idx]).as_dict(), n,
                        n_resamples=resamples, seed=seed)
    metrics["map50"] = _interval(bootstrap(
        lambda idx: mean_average_precision([detections[j] for j in idx],
                                           [targets[j] for j in idx]),
        n, n_resamples=map_resamples, seed=seed))
    metrics["froc_sensitivity"] = {f"{rate:g}": _interval(froc_ci[f"{rate:g}"])
                                   for rate in DEFAULT_FP_RATES}
    metrics["cpm"] = _interval(froc_ci["cpm"])
    whole = froc_from_matches(matches)
    curve = (np.asarray(whole.curve_fp_per_image).tolist(),
             np.nan_to_num(np.asarray(whole.curve_sensitivity)).tolist())
    return ArmEvaluation(metrics=metrics, images=images, detections=detections, froc_curve=curve)
