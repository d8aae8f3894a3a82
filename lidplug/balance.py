"""Automatic balancing of LIDnet's feedback terms against the pixel term, by their gradients.

What the denoiser learns from each term is the gradient that term sends to the denoised image.
Fixed weights balance those gradients only for one detector, one image size and one unit
convention: measured on the built-in phantoms, the ratio of the detection gradient to the pixel
gradient per unit weight moves by orders of magnitude between a fresh and a trained detector,
and with the window units (:class:`lidplug.data.HUWindow`). So with balancing on, a term's
weight is set for it to send a chosen *fraction* of the pixel term's gradient norm:

    w_k = fraction_k * ||d L_pix / d x_hat|| / ||d L_k / d x_hat||

with ``x_hat`` the denoised batch. The norms are measured every ``every`` steps (two extra
backward passes to the denoised image, through the detector only: the denoiser's own backward
is not repeated), smoothed by an exponential moving average of their log ratio (the ratio spans
decades; a mean of logs is not pulled by one outlier batch), and the weights are held in
between, so the measurement costs about ``2 / every`` of a detector backward per step. The
state (smoothed log ratios, steps seen) is a buffer of this module, saved with the trainer's
checkpoints, so a resumed run continues with the same weights.

Under DDP each process measures its own batch; the weights may then differ slightly between
processes (DDP averages the resulting gradients).

Degenerate feedback. A term whose gradient is a vanishing fraction of the pixel term's carries
no feedback, only rounding: with an untrained detector the ROI perceptual loss measured 1e-16 to
1e-21 (its features flat), and balancing it asked for weights up to 5e12 and a total loss of
1e6. So a weight never exceeds ``max_weight`` (default 1e4: the term then sends at most its own
gradient times 1e4, which a term worth balancing never needs: against a fresh Faster R-CNN the
weights are about 2e-5), and a term whose measured value or gradient is at rounding level is
reported once, with a :class:`FeedbackWarning`, and kept in :attr:`FeedbackBalancer.degenerate`
(the pipeline writes it to the run's record and its log).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_MAX_WEIGHT", "FeedbackBalancer", "FeedbackWarning"]

TERMS = ("detection", "roi_perceptual")
#: Largest balanced weight (see the module docstring).
DEFAULT_MAX_WEIGHT = 1e4
# A term below this (float32 rounding of losses of order one) carries no signal.
_FLAT_VALUE = 1e-12


class FeedbackWarning(UserWarning):
    """A feedback term is degenerate (flat features, a gradient at rounding level): see
    :mod:`lidplug.balance`."""


def _grad_norm(term: Tensor, output: Tensor) -> float:
    """``||d term / d output||`` (0 when ``term`` does not depend on ``output``).

    The gradient comes in ``output``'s dtype. In fp16 (autocast) the pixel gradient of a mean
    over a large batch, about 1e-8 per pixel, underflows (fp16 subnormals end at 6e-8), so it is
    taken of ``term`` times a power of two (exact; divided out again), as ``GradScaler`` does for
    training, and of smaller multiples should that overflow.
    """
    scales = (2.0**16, 2.0**8, 1.0) if output.dtype == torch.float16 else (1.0,)
    norm = math.inf
    for scale in scales:
        g = torch.autograd.grad(term * scale if scale != 1.0 else term, output,
                                retain_graph=True, allow_unused=True)[0]
        if g is None:
            return 0.0
        norm = float(g.double().norm()) / scale
        if math.isfinite(norm):
            break
    return norm


class FeedbackBalancer(nn.Module):
    """Weights that give each feedback term a fraction of the pixel gradient (see the module
    docstring).

    Args:
        fractions: term name (``"detection"``, ``"roi_perceptual"``) -> target ratio of its
            gradient norm to the pixel term's, on the denoised image (0 turns the term off).
        every: steps between measurements (1 measures every step).
        momentum: of the moving average of the log ratios (0 keeps only the last measurement).
        max_weight: the largest weight given (see the module docstring).

    Attributes:
        degenerate: term name -> why it was found degenerate (each reported once).
    """

    def __init__(self, fractions: dict[str, float], every: int = 10, momentum: float = 0.8,
                 max_weight: float = DEFAULT_MAX_WEIGHT) -> None:
        super().__init__()
        unknown = sorted(set(fractions) - set(TERMS))
        if unknown:
            raise ValueError(f"fractions: expected terms among {TERMS}, got {unknown}")
        for name, value in fractions.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} fraction: expected a finite number >= 0, got {value!r}")
        if not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
            raise ValueError(f"every: expected an int >= 1, got {every!r}")
        if not (isinstance(momentum, int | float) and 0 <= momentum < 1):
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        if not (isinstance(max_weight, int | float) and math.isfinite(max_weight)
                and max_weight > 0):
            raise ValueError(f"max_weight: expected a finite number > 0, got {max_weight!r}")
        self.max_weight = float(max_weight)
        self.degenerate: dict[str, str] = {}
        self.fractions = {k: float(v) for k, v in fractions.items()}
        self.every = every
        self.momentum = float(momentum)
        # log(||grad term|| / ||grad pixel||) per unit weight; NaN until first measured.
        self.register_buffer("log_ratio", torch.full((len(TERMS),), math.nan,
                                                     dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def _measure(self, pixel: Tensor, terms: dict[str, Tensor], output: Tensor) -> None:
        n_pix = _grad_norm(pixel, output)
        for i, name in enumerate(TERMS):
            term = terms.get(name)
            if term is None or not term.requires_grad or self.fractions.get(name, 0) == 0:
                continue
            n = _grad_norm(term, output)
            self._check_degenerate(name, float(term.detach()), n, n_pix)
            if not (n > 0 and n_pix > 0 and math.isfinite(n) and math.isfinite(n_pix)):
                continue  # nothing to balance this time (no lesion in the batch, or a flat term)
            value = math.log(n / n_pix)
            old = float(self.log_ratio[i])
            self.log_ratio[i] = value if math.isnan(old) else (
                self.momentum * old + (1 - self.momentum) * value)

    def _check_degenerate(self, name: str, value: float, norm: float, pixel_norm: float) -> None:
        if name in self.degenerate or not (math.isfinite(value) and pixel_norm > 0):
            return
        if 0 <= abs(value) < _FLAT_VALUE and value != 0:
            why = (f"its value is {value:.1e}: the detector's features are flat (an untrained "
                   f"or collapsed detector?)")
        elif 0 < norm < pixel_norm / self.max_weight:
            why = (f"its gradient on the denoised image is {norm / pixel_norm:.1e} of the pixel "
                   f"term's: rounding level")
        else:
            return
        self.degenerate[name] = why
        warnings.warn(f"lidplug: the {name} feedback term is degenerate: {why}; its balanced "
                      f"weight is capped at {self.max_weight:g}. Pretrain the detector "
                      f"(train.detector_pretrain_steps) or turn the term off.", FeedbackWarning,
                      stacklevel=4)

    def forward(self, pixel: Tensor, terms: dict[str, Tensor], output: Tensor
                ) -> dict[str, float]:
        """The weights for this step (measuring first when one is due, in training).

        Args:
            pixel: the pixel term (a scalar with a graph to ``output``).
            terms: the feedback terms by name (scalars with graphs to ``output``).
            output: the denoised batch the terms were computed from.

        Returns:
            Term name -> weight (0 for a term never measured, or with fraction 0).
        """
        if self.training and output.requires_grad:
            if int(self.steps) % self.every == 0:
                self._measure(pixel, terms, output)
            self.steps += 1
        weights = {}
        for i, name in enumerate(TERMS):
            ratio = float(self.log_ratio[i])
            fraction = self.fractions.get(name, 0.0)
            weights[name] = 0.0 if math.isnan(ratio) or fraction == 0 else min(
                fraction * math.exp(-ratio), self.max_weight)
        return weights

    def extra_repr(self) -> str:
        return (f"fractions={self.fractions}, every={self.every}, momentum={self.momentum}, "
                f"max_weight={self.max_weight:g}")
