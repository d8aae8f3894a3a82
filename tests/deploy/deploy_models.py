"""Tiny denoisers for the deploy tests: one per way an export can go."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from lidplug.data import HUWindow
from lidplug.ops import extension_available, extension_error


class ScriptableDenoiser(nn.Module):
    """Conv-BN-ReLU-conv with a residual: scripts, and freezing folds the BN and drops dropout."""

    def __init__(self, width: int = 8, residual: bool = True) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.drop = nn.Dropout2d(0.1)
        self.tail = nn.Conv2d(width, 1, 3, padding=1)
        self.residual = residual
        with torch.no_grad():  # non-trivial statistics, so folding them is tested
            self.norm.running_mean.uniform_(-0.1, 0.1)
            self.norm.running_var.uniform_(0.5, 1.5)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tail(self.drop(torch.relu(self.norm(self.head(x)))))
        if self.residual:
            return x - y
        return y


class TraceOnlyDenoiser(ScriptableDenoiser):
    """Uses a lambda, which TorchScript cannot compile; tracing captures it fine."""

    def forward(self, x: Tensor) -> Tensor:
        act = lambda t: torch.relu(t)  # noqa: E731  (the unscriptable construct under test)
        return x - self.tail(act(self.norm(self.head(x))))


class UnexportableDenoiser(ScriptableDenoiser):
    """Unscriptable (lambda) and untraceable (a branch on the image size)."""

    def forward(self, x: Tensor) -> Tensor:
        act = lambda t: torch.relu(t)  # noqa: E731
        if x.shape[-1] > 64:
            return x - act(self.tail(self.head(x)))
        return x - self.tail(act(self.head(x)))


class ScriptDivergentDenoiser(ScriptableDenoiser):
    """Computes something else when scripted: what verification exists to catch."""

    def forward(self, x: Tensor) -> Tensor:
        y = x - self.tail(torch.relu(self.norm(self.head(x))))
        if torch.jit.is_scripting():
            return y + 0.01
        return y


class OpsDenoiser(nn.Module):
    """Calls torch.ops.lidplug.roi_pool (a whole-image average): needs the ops library to load."""

    def __init__(self) -> None:
        super().__init__()
        # torch.ops.lidplug.* exist once the library is loaded (lidplug.ops does it on first use).
        assert extension_available(), extension_error()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        idx = torch.arange(b, dtype=x.dtype, device=x.device)
        zero = torch.zeros_like(idx)
        rois = torch.stack([idx, zero, zero, zero + w, zero + h], 1)
        mean = torch.ops.lidplug.roi_pool([x], rois, [1.0], 1, 1, 2, False)
        return self.conv(x) + 0.5 * mean


@dataclasses.dataclass
class TrainConfig:
    w_det: float = 0.1
    w_roi: float = 1.0
    layers: tuple[str, ...] = ("p2", "p3")


class WrappedModel(nn.Module):
    """What lidplug.wrap returns, as far as export cares: denoiser, detector, window, config."""

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.detector = nn.Conv2d(1, 64, 7)
        self.window = HUWindow(-1000.0, 1000.0)
        self.config = TrainConfig()

    def forward(self, x: Tensor) -> Tensor:
        return self.detector(self.denoiser(x))
