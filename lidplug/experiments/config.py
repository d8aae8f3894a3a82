"""Configuration of the demo and of the results grid: one dataclass and its named presets.

Every default is ours, chosen so that ``lidplug demo`` finishes in a few minutes on a 2-core CPU:

* **Phantoms** of 96 x 96 pixels of 3 mm (a 288-mm field of view; the phantom generator draws a
  proportionally smaller body), lesions 15-40 mm (5-13 pixels) with 40-120 HU contrast: with
  the library's 3-30 mm, 10-80 HU lesions a detector trained from scratch for a few hundred
  steps found almost none (measured: mAP@0.5 0.05 after 400 steps), with these it finds a fair
  share (mAP about 0.2 after 300 steps of 8 slices).
* **Noise**. The simulator's default ``i0`` is calibrated for 0.7-mm pixels; 3-mm pixels average
  over ~18x the area and would carry only a few HU of noise. ``i0 = 1.5e5`` restores clinical-like
  noise (measured in soft tissue of these phantoms, against the noise-free truth: about 20 HU at
  full dose, 30 HU at dose 0.25, 50 HU at dose 0.1). The demo uses dose 0.1, where the denoiser
  has real work to do.
* **Models**: RED-CNN with 16 channels, and a Faster R-CNN on a ResNet-18 trimmed after its third
  stage with a 64-channel FPN (:func:`lidplug.experiments.build_detector`), weights from scratch
  since nothing is downloaded.
* **Denoiser learning rate** 2e-3 (Adam). Measured on these phantoms (1 CPU thread): after 300
  warm-up steps PSNR 42.5 dB at lr 1e-3 and 44.9 dB at 2e-3 against 44.7 dB for the input;
  after 900 steps 43.8 dB at 3e-4 and 44.6 dB at 1e-3. At a CPU budget the small RED-CNN ends
  within a few tenths of a dB of its input: the demo shows the pipeline, not a trained model
  (``--full`` trains 10x longer, for a GPU).
* **Budget**: both arms start from the same detector (pretrained on normal-dose images) and the
  same warmed-up denoiser, then get the same number of denoiser updates; the LIDnet arm adds the
  detector's feedback (and, in ``"alternating"`` mode, detector steps on denoised images).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lidplug.wrapper import WrapConfig

__all__ = ["PRESETS", "ExperimentConfig", "preset"]


@dataclasses.dataclass
class ExperimentConfig:
    """One demo / results run: data, models, schedule and evaluation.

    Attributes:
        size: phantom side in pixels.
        spacing: pixel size in mm.
        dose: dose of the low-dose input (fraction of the normal dose).
        i0: incident photons per detector bin at full dose (see the module docstring).
        views: projection views of the simulation (None: the simulator's default).
        lesion_diameter_mm, lesion_contrast_hu, lesion_min_contrast_hu: lesion ranges.
        train_samples, test_samples: phantom slices for training and held-out evaluation.
        data_seed: seed of the phantoms (the test set uses ``data_seed + 1``: disjoint).
        denoiser: registry name (:func:`lidplug.models.create_denoiser`) and ``denoiser_kwargs``.
        fpn_channels: width of the detector's FPN.
        batch_size: images per step (denoiser stages, and the LIDnet arm's detector steps).
        detector_batch_size: images per step of the detector pretraining.
        detector_pretrain_steps: detector steps on normal-dose images (shared by both arms).
        warmup_steps: denoiser steps with the pixel loss (shared by both arms).
        rounds, denoiser_steps, detector_steps: the collaborative rounds of the LIDnet arm; the
            baseline gets ``rounds * denoiser_steps`` more pixel-loss steps.
        mode: ``"alternating"``, ``"frozen"`` or ``"joint"`` (see :class:`TrainConfig`).
        det_weight, roi_weight: weights of the LIDnet terms (see :class:`WrapConfig`).
        lr_denoiser, lr_detector: Adam learning rates.
        seed: training seed (model initialisation, batch order).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        threads: CPU threads for torch (None: torch's default, one per core). On a machine
            shared with other busy processes, 1 is much faster than oversubscribed cores.
        bootstrap_resamples: replicates of the 95% intervals (PSNR/SSIM/RMSE/FROC).
        map_resamples: replicates of the mAP interval (each one runs the COCO evaluator).
        examples: example slices shown in the report.
        progress: show progress bars.
    """

    size: int = 96
    spacing: float = 3.0
    dose: float = 0.1
    i0: float = 1.5e5
    views: int | None = None
    lesion_diameter_mm: tuple[float, float] = (15.0, 40.0)
    lesion_contrast_hu: tuple[float, float] = (-120.0, 120.0)
    lesion_min_contrast_hu: float = 40.0
    train_samples: int = 128
    test_samples: int = 48
    data_seed: int = 0
    denoiser: str = "redcnn"
    denoiser_kwargs: dict[str, Any] = dataclasses.field(default_factory=lambda: {"channels": 16})
    fpn_channels: int = 64
    batch_size: int = 4
    detector_batch_size: int = 8
    detector_pretrain_steps: int = 400
    warmup_steps: int = 300
    rounds: int = 4
    denoiser_steps: int = 20
    detector_steps: int = 5
    mode: str = "alternating"
    det_weight: float = WrapConfig.det_weight  # the measured defaults of lidplug.wrap
    roi_weight: float = WrapConfig.roi_weight
    lr_denoiser: float = 2e-3
    lr_detector: float = 2e-3
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    bootstrap_resamples: int = 1000
    map_resamples: int = 100
    examples: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("size", "train_samples", "test_samples", "batch_size",
                     "detector_batch_size", "fpn_channels"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads: expected an int >= 1 or None, got {self.threads!r}")
        if self.size < 32:
            raise ValueError(f"size: expected at least 32 pixels, got {self.size}")
        if not 0 < self.dose <= 1:
            raise ValueError(f"dose: expected a fraction in (0, 1], got {self.dose!r}")
        if self.train_samples < max(self.batch_size, self.detector_batch_size):
            raise ValueError(f"train_samples: expected at least the batch sizes "
                             f"{self.batch_size}, {self.detector_batch_size}, got "
                             f"{self.train_samples}")
        self.lesion_diameter_mm = tuple(self.lesion_diameter_mm)
        self.lesion_contrast_hu = tuple(self.lesion_contrast_hu)
        self.denoiser_kwargs = dict(self.denoiser_kwargs)

    @property
    def denoiser_updates(self) -> int:
        """Denoiser steps each arm takes after the shared warm-up."""
        return self.rounds * self.denoiser_steps

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy."""
        out = dataclasses.asdict(self)
        out["lesion_diameter_mm"] = list(self.lesion_diameter_mm)
        out["lesion_contrast_hu"] = list(self.lesion_contrast_hu)
        return out


#: Named configurations: ``tiny`` for tests (seconds), ``quick`` the demo (minutes on 2 CPU
#: cores), ``full`` a larger run (``lidplug demo --full``; meant for a GPU).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(size=64, spacing=4.5, train_samples=8, test_samples=4, batch_size=2,
                 detector_batch_size=2,
                 detector_pretrain_steps=2, warmup_steps=2, rounds=1, denoiser_steps=2,
                 detector_steps=1, fpn_channels=16, denoiser_kwargs={"channels": 4},
                 bootstrap_resamples=20, map_resamples=5, examples=2, views=180),
    "quick": {},
    "full": dict(size=128, spacing=3.0, train_samples=512, test_samples=128, batch_size=8,
                 detector_batch_size=8,
                 detector_pretrain_steps=2000, warmup_steps=1000, rounds=10,
                 denoiser_steps=100, detector_steps=25, fpn_channels=128,
                 denoiser_kwargs={"channels": 48}, examples=6),
}


def preset(name: str, **changes: Any) -> ExperimentConfig:
    """The named configuration of :data:`PRESETS`, with optional field changes."""
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return ExperimentConfig(**{**PRESETS[name], **changes})
