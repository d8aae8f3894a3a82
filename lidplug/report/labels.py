"""What the page calls things: image sets, arms, metrics, and how their numbers are written.

One table of metrics (:data:`METRICS`) serves the headline table, the verdict sentences and the
per-observer tables, so a metric is named, rounded and judged the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lidplug.report.svg import PALETTE

__all__ = ["EXTRA_METRICS", "METRIC", "METRICS", "MINUS", "Metric", "difference_of",
           "image_sets", "interval", "number", "set_colours", "set_label", "short_label", "shown_digits",
           "subject"]

#: The minus sign of displayed numbers (U+2212: the hyphen is too short to read as a sign).
MINUS = "\u2212"

#: Display names of image sets; an arm not listed is shown by its key.
_SET_LABELS = {
    "truth": "Truth (noise-free phantom)",
    "low_dose": "Low-dose input",
    "baseline": "Plain denoiser (pixel loss)",
    "lidnet": "LIDnet (lesion-aware)",
    "normal_dose": "Normal dose",
    "noise_free": "Noise-free reconstruction",
}
#: How a sentence names an arm ("LIDnet keeps more ... than the plain denoiser").
_SUBJECTS = {"baseline": "the plain denoiser", "lidnet": "LIDnet", "low_dose": "the low-dose input",
             "normal_dose": "normal dose"}
#: Image sets that are not arms, in the order the page lists them around the arms.
_BEFORE_ARMS = ("low_dose",)
_AFTER_ARMS = ("normal_dose", "noise_free")


@dataclass(frozen=True)
class Metric:
    """One metric as the page shows it.

    Attributes:
        key: its key in ``metrics.json``.
        header: the table's column header.
        unit: appended to values in sentences ("" for none).
        digits: decimals shown.
        higher_is_better: which way is good.
        topic: how a verdict sentence starts ("Lesion contrast").
        name: how a list of findings names it ("lesion contrast", "PSNR").
        better, worse: the sentence for a shown difference in either direction, with ``{a}``
            (the arm) and ``{b}`` (the plain arm).
    """

    key: str
    header: str
    unit: str
    digits: int
    higher_is_better: bool
    topic: str
    better: str
    worse: str
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.topic[0].lower() + self.topic[1:])


#: The headline metrics, in the order of the table's columns.
METRICS: tuple[Metric, ...] = (
    Metric("rmse_hu", "RMSE in body (HU)", " HU", 1, False, "Overall image error",
           "{a}'s images are closer to the truth than {b}'s (RMSE inside the body)",
           "{a}'s images are further from the truth than {b}'s (RMSE inside the body)"),
    Metric("psnr", "PSNR (dB)", " dB", 2, True, "PSNR",
           "{a}'s PSNR is higher than {b}'s", "{a}'s PSNR is lower than {b}'s", "PSNR"),
    Metric("ssim", "SSIM", "", 3, True, "SSIM",
           "{a}'s structural similarity to the truth is higher than {b}'s",
           "{a}'s structural similarity to the truth is lower than {b}'s", "SSIM"),
    Metric("lesion_contrast_recovery", "Lesion contrast recovery", "", 3, True,
           "Lesion contrast", "{a} keeps more of each lesion's contrast than {b}",
           "{a} keeps less of each lesion's contrast than {b}"),
    Metric("lesion_rmse_hu", "Lesion RMSE (HU)", " HU", 1, False, "Error inside lesions",
           "{a}'s lesions are closer to the truth than {b}'s",
           "{a}'s lesions are further from the truth than {b}'s"),
    Metric("lesion_cnr", "Lesion CNR", "", 2, True, "Lesion contrast-to-noise",
           "lesions stand out more from the noise in {a}'s images than in {b}'s",
           "lesions stand out less from the noise in {a}'s images than in {b}'s"),
    Metric("observer_cpm", "Observer CPM", "", 3, True, "Detection by independent observers",
           "the observers (detectors no arm trained) find more lesions on {a}'s images than "
           "on {b}'s",
           "the observers (detectors no arm trained) find fewer lesions on {a}'s images than "
           "on {b}'s"),
    Metric("model_observer_dprime", "CHO d\u2032", "", 2, True,
           "Detectability for the model observer (CHO d\u2032)",
           "lesions are easier to detect in {a}'s images than in {b}'s",
           "lesions are harder to detect in {a}'s images than in {b}'s",
           "model observer (CHO d\u2032)"),
    Metric("cotrained_cpm", "Co-trained detector CPM", "", 3, True,
           "Detection by the arm's own co-trained detector",
           "its own detector finds more lesions on {a}'s images",
           "its own detector finds fewer lesions on {a}'s images"),
)
#: Secondary metrics (the table under the headline one).
EXTRA_METRICS: tuple[Metric, ...] = (
    Metric("rmse_hu_vs_noise_free", "RMSE vs noise-free reconstruction (HU)", " HU", 1, False,
           "Error against the noise-free reconstruction", "{a} is closer than {b}",
           "{a} is further than {b}"),
    Metric("rmse_hu_vs_normal_dose", "RMSE vs normal dose (HU)", " HU", 1, False,
           "Error against the normal-dose slice", "{a} is closer than {b}",
           "{a} is further than {b}"),
    Metric("model_observer_auc", "CHO AUC", "", 3, True, "Model observer AUC",
           "higher for {a} than for {b}", "lower for {a} than for {b}", "model observer AUC"),
)
METRIC = {m.key: m for m in (*METRICS, *EXTRA_METRICS)}


def set_colours(order: Sequence[str]) -> dict[str, str]:
    """One colour per image set by its place in the page order, the same in every plot."""
    return {name: PALETTE[k % len(PALETTE)] for k, name in enumerate(order)}


def set_label(name: str) -> str:
    """The display name of an image set or arm (its key when unknown)."""
    return _SET_LABELS.get(name, name)


def short_label(name: str) -> str:
    """The display name without its parenthesis ("Plain denoiser")."""
    return set_label(name).split(" (")[0]


def subject(name: str) -> str:
    """How a sentence names an image set or arm (its key when unknown)."""
    return _SUBJECTS.get(name, name)


def image_sets(names: Sequence[str], arms: Sequence[str]) -> list[str]:
    """``names`` (image sets, no differences) in page order: low dose, the arms, the references.

    Sets the page does not know keep their order, after the references.
    """
    names = [n for n in names if "_minus_" not in n and n not in ("protocol", "headroom")]
    order = [*_BEFORE_ARMS, *arms, *_AFTER_ARMS]
    known = [n for n in order if n in names]
    return known + [n for n in names if n not in known]


def difference_of(name: str, arms: Sequence[str], comparator: str | None) -> tuple[str, str]:
    """``(arm, plain arm)`` of a difference key ``"<arm>_minus_<plain>"``.

    Arm names may hold underscores, so the known arms are tried before splitting the key.
    """
    for arm in arms:
        for base in ([comparator] if comparator else []) + list(arms):
            if name == f"{arm}_minus_{base}":
                return arm, base
    arm, sep, base = name.partition("_minus_")
    if not sep:
        raise ValueError(f"difference_of: expected a key '<arm>_minus_<plain>', got {name!r}")
    return arm, base


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def number(value: float | None, digits: int, *, signed: bool = False) -> str:
    """``value`` rounded to ``digits``, with a true minus sign (and ``+`` when ``signed``).

    Non-finite or missing values read as an en dash. A value that rounds to zero is written
    without a sign, so ``-0.0001`` does not show as a negative zero.
    """
    if not _finite(value):
        return "\u2013"
    text = f"{value:.{digits}f}"
    if float(text) == 0:
        return text.lstrip("-")
    if text.startswith("-"):
        return MINUS + text[1:]
    return ("+" + text) if signed else text


def shown_digits(value: tuple[float, float, float], digits: int, most: int = 6) -> int:
    """Decimals that keep a shown difference's interval visibly off 0 (``digits`` at least).

    A difference shown at +0.0004 HU would otherwise read "0.0 (0.0 to 0.0), shown".
    """
    _, low, high = value
    if not (low > 0 or high < 0):
        return digits
    edge = low if low > 0 else high
    while digits < most and float(f"{edge:.{digits}f}") == 0:
        digits += 1
    return digits


def interval(value: Mapping[str, float] | None) -> tuple[float, float, float] | None:
    """``(mean, low, high)`` of a ``{"mean", "low", "high"}`` entry, None unless all finite."""
    if not isinstance(value, Mapping):
        return None
    triple = tuple(value.get(k) for k in ("mean", "low", "high"))
    return triple if all(_finite(v) for v in triple) else None  # type: ignore[return-value]
