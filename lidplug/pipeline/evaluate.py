"""Evaluation stage: the protocol of ``EVALUATION.md``, written once for every comparison.

Image sets scored: the low-dose input, each arm's denoised slices, the normal-dose slices and
(phantoms) the noise-free reconstruction, the best a denoiser trained on these pairs can reach.

* **Reference.** Phantoms: the noise-free phantom (``rmse_hu``, ``psnr``, ``ssim``); the same
  RMSE against its noise-free reconstruction (``rmse_hu_vs_noise_free``) and against the
  normal-dose slice (``rmse_hu_vs_normal_dose``, itself noisy) are reported beside it. Real
  data: the normal-dose slice is the only reference.
* **Image metrics.** RMSE in HU inside the body (air outside the patient excluded); PSNR inside
  the body and SSIM over the slice, both on the display window ``evaluate.window`` (default
  W400/L40, data range its width).
* **Lesions** (phantoms: exact masks and true contrasts): contrast recovery, lesion RMSE (box
  dilated by 2 pixels) and CNR, per lesion (:func:`lidplug.metrics.lesion_metrics`).
* **Detection**, by observers trained on normal-dose slices only and never updated by an arm:
  FROC sensitivity at 0.125-8 false positives per image and its mean (CPM), per observer and
  averaged over observers (``observer_cpm``, ``observer_froc``). An arm's own co-trained
  detector scores its images in a column of its own (``cotrained_cpm``), never the headline.
* **Model observer** (phantoms): a channelized Hotelling observer with Laguerre-Gauss channels
  on signal-known-exactly lesion ROIs, each lesion against the same slice simulated without it.
* **Intervals.** One paired percentile bootstrap over test slices for everything: every
  replicate draws one set of slices and computes every metric of every image set, and the
  differences ``<arm>_minus_<plain arm>`` on that same draw, so the differences are paired.
  The model observer's intervals are recentred on their estimates (its replicates refit the
  template and are biased against the full-sample fit), as is any interval that would exclude
  its estimate (:mod:`lidplug.metrics.bootstrap`): every interval contains its estimate.
* **Too few to tell.** Below :data:`~lidplug.metrics.MIN_SLICES` held-out slices (or
  :data:`~lidplug.metrics.MIN_LESIONS` lesions, for lesion and detection metrics) no difference
  gets a verdict (:func:`lidplug.metrics.judge_metric`); the protocol records both minimums.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lidplug.metrics import (
    DEFAULT_FP_RATES,
    MIN_LESIONS,
    MIN_SLICES,
    bootstrap,
    froc_from_matches,
    lesion_mean_statistic,
    lesion_metrics,
    match_detections,
    psnr,
    rmse_hu,
    ssim,
)
from lidplug.pipeline.data import HeldOut
from lidplug.pipeline.spec import DIFFERENCE, RunSpec
from lidplug.wrapper import wrap

__all__ = ["Evaluation", "denoise", "detect", "evaluate"]

_BATCH = 16
_LESION_KEYS = {"lesion_contrast_recovery": "contrast_recovery",
                "lesion_rmse_hu": "lesion_rmse_hu", "lesion_cnr": "cnr"}


@torch.no_grad()
def denoise(denoiser: nn.Module, low: Tensor, device: str | torch.device = "cpu") -> Tensor:
    """Run ``denoiser`` (eval mode) over ``low`` in batches; returns CPU float32."""
    was_training = denoiser.training
    denoiser.eval().to(device)
    try:
        return torch.cat([denoiser(low[i:i + _BATCH].to(device)).float().cpu()
                          for i in range(0, low.shape[0], _BATCH)])
    finally:
        denoiser.train(was_training).cpu()


@torch.no_grad()
def detect(detector: nn.Module, images: Tensor, device: str | torch.device = "cpu"
           ) -> list[dict[str, Tensor]]:
    """Detections of ``detector`` on ``images`` (window units), on the CPU."""
    model = wrap(nn.Identity(), detector.to(device))
    out: list[dict[str, Tensor]] = []
    try:
        for i in range(0, images.shape[0], _BATCH):
            dets = model.detect(images[i:i + _BATCH].to(device))
            out += [{k: v.cpu() for k, v in d.items()} for d in dets]
    finally:
        detector.cpu()
    return out


@dataclass
class Evaluation:
    """What the evaluation found, for ``metrics.json`` and the report.

    Attributes:
        metrics: the ``metrics.json`` object (see :func:`evaluate`).
        images: image set name -> ``Tensor[N, 1, H, W]`` in window units.
        detections: observer (or ``"cotrained:<arm>"``) -> image set -> per-slice detections.
        froc_curves: observer -> image set -> ``(fp_per_image, sensitivity)`` of all slices.
        lesions: image set -> per-lesion arrays (``contrast_recovery``, ``contrast_hu``,
            ``diameter_px``, ``image``, ...).
        timings: seconds per stage (denoise, image_metrics, denoise_lesion_free,
            lesion_metrics, observers, model_observer, bootstrap), for run.json.
    """

    metrics: dict
    images: dict[str, Tensor]
    detections: dict[str, dict[str, list[dict[str, Tensor]]]] = field(default_factory=dict)
    froc_curves: dict[str, dict[str, tuple[list[float], list[float]]]] = field(
        default_factory=dict)
    lesions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _image_values(held: HeldOut, images: Tensor, window) -> dict[str, np.ndarray]:
    hu = held.window.inverse(images)
    ref = held.reference
    out = {"rmse_hu": rmse_hu(hu, ref, window=None, mask=held.body),
           "psnr": psnr(hu, ref, window=window, mask=held.body),
           "ssim": ssim(hu, ref, window=window)}
    if held.noise_free is not None:
        out["rmse_hu_vs_noise_free"] = rmse_hu(hu, held.noise_free, window=None, mask=held.body)
    if held.truth is not None:
        out["rmse_hu_vs_normal_dose"] = rmse_hu(hu, held.window.inverse(held.normal),
                                                window=None, mask=held.body)
    return {k: v.numpy() for k, v in out.items()}


class _Statistic:
    """Every metric of every image set on one draw of slice indices (see the module docstring).

    Precomputed once: per-slice image metrics, per-lesion sums by slice, and per-slice FROC
    matches; a draw re-weights them, so a replicate costs a few array sums and one FROC pooling
    per observer and image set.
    """

    def __init__(self, n: int, per_slice, lesions, matches, cotrained, observer_names,
                 differences: Sequence[tuple[str, str]], model_observer=None) -> None:
        self.n, self.per_slice = n, per_slice
        self.lesions = {name: _lesion_means(table, n) for name, table in lesions.items()}
        self.matches, self.cotrained = matches, cotrained
        self.observers = observer_names
        self.differences = differences
        self.model_observer = model_observer

    def _froc(self, matches, idx) -> dict[str, float]:
        return froc_from_matches([matches[i] for i in idx]).as_dict()

    def _one(self, name: str, idx: np.ndarray, counts: np.ndarray) -> dict[str, float]:
        out = {k: float(v[idx].mean()) for k, v in self.per_slice[name].items()}
        for key, mean in self.lesions.get(name, {}).items():
            out[key] = mean(idx)
        frocs = [self._froc(self.matches[obs][name], idx) for obs in self.observers]
        for obs, f in zip(self.observers, frocs, strict=True):
            for k, v in f.items():
                out[f"observers/{obs}/{k}"] = v
        for k in frocs[0]:
            out["observer_cpm" if k == "cpm" else f"observer_froc/{k}"] = float(
                np.mean([f[k] for f in frocs]))
        if name in self.cotrained:
            out["cotrained_cpm"] = self._froc(self.cotrained[name], idx)["cpm"]
        if self.model_observer is not None and name in self.model_observer.sets:
            out.update(self.model_observer(name, counts))
        return out

    def __call__(self, idx: np.ndarray) -> dict[str, float]:
        counts = np.bincount(idx, minlength=self.n)
        rows = {name: self._one(name, idx, counts) for name in self.per_slice}
        flat = {f"{name}|{k}": v for name, row in rows.items() for k, v in row.items()}
        for arm, base in self.differences:
            for k, v in rows[arm].items():
                if k in rows[base]:
                    flat[f"{arm}{DIFFERENCE}{base}|{k}"] = v - rows[base][k]
        return flat


def _lesion_means(table: Mapping[str, np.ndarray], n: int) -> dict:
    """Per lesion metric, its mean over the lesions of a draw of slices (lesions whose value is
    not finite left out). Contrast recovery is pooled over lesions (weighted by true contrast),
    so faint lesions, whose ratio is noisy, do not dominate; the others are plain means."""
    out = {}
    for key, column in _LESION_KEYS.items():
        ok = np.isfinite(table[column])
        weights = np.abs(table["contrast_hu"][ok]) if column == "contrast_recovery" else None
        out[key] = lesion_mean_statistic(table[column][ok], table["image"][ok], n,
                                         weights=weights)
    return out


class _Clock:
    """Seconds per stage: ``lap(name)`` books the time since the previous lap to ``name``."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str | None = None) -> None:
        now = time.perf_counter()
        if name is not None:
            self.laps[name] = round(self.laps.get(name, 0.0) + now - self._last, 3)
        self._last = now


def _lesion_tables(held: HeldOut, images: Mapping[str, Tensor],
                   twins: Mapping[str, Tensor] | None) -> dict[str, dict]:
    """Per image set, the per-lesion table of :func:`lidplug.metrics.lesion_metrics`.

    Phantoms: against the noise-free phantom. Hybrid slices: contrast recovery is exact, from
    the known inserted signal: each set's response to the signal is its output on the slice
    minus its output on the same slice without the signal and with the *same* noise
    (``twins``: the sets' outputs on ``low - signal``, the inserted noise being a field added
    to the slice), measured against the signal itself; lesion RMSE and CNR are of the output against the normal-dose slice. Real
    annotated lesions: everything against the normal-dose slice (contrast kept).
    """
    inverse = held.window.inverse
    if held.truth is not None:
        return {name: lesion_metrics(inverse(x), held.truth, held.regions)
                for name, x in images.items()}
    normal = inverse(held.normal)
    tables = {name: lesion_metrics(inverse(x), normal, held.regions)
              for name, x in images.items()}
    if held.signal is None or twins is None:
        return tables
    for name, x in images.items():
        if name in twins:
            exact = lesion_metrics(inverse(x) - inverse(twins[name]), held.signal, held.regions)
            tables[name]["contrast_recovery"] = exact["contrast_recovery"]
            tables[name]["contrast_hu"] = exact["contrast_hu"]
    return tables


def _nest(flat: Mapping[str, dict[str, float]]) -> dict:
    out: dict = {}
    for key, interval in flat.items():
        row, _, metric = key.partition("|")
        node = out.setdefault(row, {})
        *path, leaf = metric.split("/")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = interval
    return out


def evaluate(spec: RunSpec, held: HeldOut, denoisers: Mapping[str, nn.Module],
             observers: Mapping[str, nn.Module], *, cotrained: Mapping[str, nn.Module] = (),
             comparator: str | None = None, device: str | torch.device = "cpu",
             progress: bool = False) -> Evaluation:
    """Score the low-dose input, every arm and the references (see the module docstring).

    Args:
        spec: the run (its ``evaluate`` section).
        held: the held-out slices and their references.
        denoisers: arm name -> its trained denoiser.
        observers: observer name -> detector trained on normal-dose slices only.
        cotrained: arm name -> the detector that arm trained with (its own column).
        comparator: the plain arm the differences are taken against (None: no differences).
        device: where the models run.
        progress: show progress bars.

    Returns:
        An :class:`Evaluation`; ``metrics`` has one object per image set (``low_dose``, the
        arms, ``normal_dose``, ``noise_free``) and per difference (``<arm>_minus_<plain>``),
        each metric ``{"mean", "low", "high"}``; ``headroom`` (the observers' CPM on normal
        dose minus low dose, paired); and ``protocol``.
    """
    ev = spec.evaluate
    clock = _Clock()
    images = {"low_dose": held.low}
    clock.lap()
    for name, den in tqdm(denoisers.items(), desc="denoising", disable=not progress,
                          leave=False):
        images[name] = denoise(den, held.low, device)
        bad = (~torch.isfinite(images[name])).flatten(1).any(1).nonzero().flatten().tolist()
        if bad:  # every metric would fail on them, naming no arm
            raise ValueError(f"arm {name!r}: expected its denoiser to give finite values, got "
                             f"NaN or inf on {len(bad)} of the {len(held)} {held.split} "
                             f"slices (e.g. slice {bad[0]})")
    images["normal_dose"] = held.normal
    if held.noise_free is not None:
        images["noise_free"] = held.window(held.noise_free)
    clock.lap("denoise")
    per_slice = {name: _image_values(held, x, ev.window) for name, x in images.items()}
    clock.lap("image_metrics")
    # Every set's output on the lesion-free twins, once: the model observer's lesion-absent
    # images, and (hybrid slices, whose twins carry the same noise) the exact contrast.
    twins = None
    wants_twins = ev.model_observer or held.signal is not None
    if held.lesion_free_low is not None and held.regions and wants_twins:
        twins = {"low_dose": held.lesion_free_low,
                 **{name: denoise(den, held.lesion_free_low, device)
                    for name, den in denoisers.items()}}
        if held.signal is not None:
            twins["normal_dose"] = held.window(held.window.inverse(held.normal) - held.signal)
    clock.lap("denoise_lesion_free")
    lesions = _lesion_tables(held, images, twins) if held.regions else {}
    clock.lap("lesion_metrics")
    detections: dict[str, dict[str, list]] = {}
    matches: dict[str, dict[str, list]] = {}
    jobs = [(obs, name) for obs in observers for name in images]
    for obs, name in tqdm(jobs, desc="observers", disable=not progress, leave=False):
        dets = detect(observers[obs], images[name], device)
        detections.setdefault(obs, {})[name] = dets
        matches.setdefault(obs, {})[name] = match_detections(dets, held.targets,
                                                             criterion=ev.hit_rule)
    cot_matches = {}
    for arm, det in dict(cotrained).items():
        dets = detect(det, images[arm], device)
        detections[f"cotrained:{arm}"] = {arm: dets}
        cot_matches[arm] = match_detections(dets, held.targets, criterion=ev.hit_rule)
    clock.lap("observers")
    model_observer, observer_note = None, "not asked for"
    if ev.model_observer and held.lesion_free_low is not None:
        from lidplug.pipeline.observer import MIN_LESIONS, ModelObserver

        if len(held.regions) >= MIN_LESIONS and twins is not None:
            absent = {k: v for k, v in twins.items() if k != "normal_dose"}
            model_observer = ModelObserver(held, images, absent)
            observer_note = model_observer.describe()
        else:
            observer_note = (f"not computed: {len(held.regions)} test lesions, the CHO needs at "
                             f"least {MIN_LESIONS}")
    clock.lap("model_observer")
    differences = ([(arm, comparator) for arm in denoisers if arm != comparator]
                   if comparator is not None else [])
    # The headroom with its own paired interval: what the dose costs the observers.
    differences.append(("normal_dose", "low_dose"))
    statistic = _Statistic(len(held), per_slice, lesions, matches, cot_matches,
                           list(observers), differences, model_observer)
    import warnings

    with warnings.catch_warnings():  # resamples without lesions are dropped, by design
        warnings.simplefilter("ignore", RuntimeWarning)
        flat = bootstrap(statistic, len(held), n_resamples=ev.bootstrap, seed=0,
                         recentre=lambda key: "|model_observer_" in key)
    clock.lap("bootstrap")
    metrics = _nest({k: v.as_dict() for k, v in flat.items()})
    gap = metrics.pop("normal_dose_minus_low_dose", {})
    metrics["headroom"] = {k: gap[k] for k in ("observer_cpm", "observers") if k in gap}
    metrics["protocol"] = _protocol(spec, held, list(observers), comparator)
    metrics["protocol"]["model_observer"] = observer_note
    curves = {}
    for obs, by_set in matches.items():
        curves[obs] = {}
        for name, m in by_set.items():
            whole = froc_from_matches(m)
            curves[obs][name] = (np.asarray(whole.curve_fp_per_image).tolist(),
                                 np.nan_to_num(np.asarray(whole.curve_sensitivity)).tolist())
    return Evaluation(metrics=metrics, images=images, detections=detections,
                      froc_curves=curves, lesions=lesions, timings=clock.laps)


def _reference_text(held: HeldOut) -> str:
    if held.truth is not None:
        return ("noise-free phantom (rmse_hu, psnr, ssim); also its noise-free reconstruction "
                "and the normal-dose slice, labelled")
    if held.signal is not None:
        return ("normal-dose hybrid slice: the real normal-dose slice with the nodules inserted "
                "(it carries the scan's own noise, see noise); contrast recovery exact, from "
                "the inserted signal")
    if held.lesions == "real":
        return ("normal-dose slice (real lesions as annotated, never inserted: contrast kept "
                "and lesion RMSE against it)")
    return "normal-dose slice (the only reference of real data)"


def _noise_record(held: HeldOut) -> list[dict] | None:
    """Per scan: its own noise level, the low-dose level aimed at and both as measured on the
    held-out slices (:func:`lidplug.simulation.noise_level`), where the data records them."""
    if not held.meta or "noise_hu" not in held.meta[0]:
        return None
    from lidplug.simulation import noise_level

    rows: dict[str, dict] = {}
    inverse = held.window.inverse
    for k, meta in enumerate(held.meta):
        row = rows.setdefault(meta["scan"], {
            "patient": meta.get("patient"), "scan": meta["scan"],
            "normal_dose_noise_hu": round(float(meta["noise_hu"]), 2),
            "low_dose_noise_hu_target": round(float(meta["low_dose_noise_hu"]), 2),
            "measured_normal": [], "measured_low": []})
        spacing = meta["spacing"][1]
        row["measured_normal"].append(noise_level(inverse(held.normal[k]), spacing))
        row["measured_low"].append(noise_level(inverse(held.low[k]), spacing))
    out = []
    for row in rows.values():
        for key in ("measured_normal", "measured_low"):
            values = [v for v in row.pop(key) if np.isfinite(v)]
            row[f"{key.replace('measured_', '')}_dose_noise_hu_measured"] = (
                round(float(np.median(values)), 2) if values else None)
        out.append(row)
    return out


def _protocol(spec: RunSpec, held: HeldOut, observers: list[str], comparator) -> dict:
    ev = spec.evaluate
    noise = _noise_record(held)
    return {
        "reference": _reference_text(held),
        **({"noise": noise, "noise_method": "global noise level (mode of the local SD in "
            "6-mm windows of soft tissue, Christianson et al. 2015); low dose aims at the "
            "scan's own level / sqrt(dose)"} if noise else {}),
        "lesions": held.lesions if held.truth is None else "phantom",
        "rmse": "HU, inside the body (air outside the patient excluded)",
        "window": {"lo_hu": ev.window[0], "hi_hu": ev.window[1],
                   "data_range_hu": ev.window[1] - ev.window[0],
                   "psnr": "inside the body", "ssim": "whole slice"},
        "hit_rule": ("the detected box's centre inside the lesion box" if ev.hit_rule == "center"
                     else "IoU >= 0.5"),
        "fp_rates": list(DEFAULT_FP_RATES),
        "observers": observers,
        "comparator": comparator,
        "split": held.split,
        "bootstrap": {"resamples": ev.bootstrap, "unit": f"{held.split} slice", "paired": True,
                      "interval": "95% percentile",
                      "recentred": "the model observer's intervals, and any that would exclude "
                                   "its estimate: shifted by the estimate minus the replicates' "
                                   "median"},
        "minimum": {"slices": MIN_SLICES, "lesions": MIN_LESIONS,
                    "below": "too few to tell: no verdict"},
        "n_slices": len(held),
        "n_lesions": sum(len(t["boxes"]) for t in held.targets),
        # Lesion metrics and the model observer need a ring of background in the host organ.
        "n_lesions_scored": len(held.regions),
        "seeds": {"data": spec.data.seed, "train": spec.train.seed, "bootstrap": 0},
        "dose": spec.simulation.dose,
    }
