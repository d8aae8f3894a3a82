"""Eager vs exported: the outputs an export must reproduce, and the comparison."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lidplug.deploy._errors import ExportError, short_error

__all__ = ["TOLERANCES", "compare", "eager_outputs"]

# (atol, rtol) per compute dtype, for outputs in window units (O(1)). float32: freezing folds
# batch norm into convs and reorders sums, about 1e-6; half types: eager and exported round
# differently after those rewrites, a few units of their 2^-11 / 2^-8 epsilon.
TOLERANCES = {torch.float32: (1e-4, 1e-4), torch.float16: (1e-2, 1e-2),
              torch.bfloat16: (5e-2, 5e-2)}


def eager_outputs(denoiser: nn.Module, dtype: torch.dtype, inputs: Sequence[Tensor]
                  ) -> tuple[list[Tensor], list[Tensor], list[str]]:
    """Runs the eager denoiser on float32 ``inputs`` as the export will (compute in ``dtype``,
    return float32); the first input is the example and must work.

    Returns:
        (inputs the eager model accepts, its outputs on them, notes on the inputs it rejects).

    Raises:
        ValueError: the model fails on the example, returns no Tensor, or changes the shape.
    """
    kept, outputs, notes = [], [], []
    with torch.no_grad():
        for i, x in enumerate(inputs):
            try:
                y = denoiser(x.to(dtype))
            except Exception as exc:
                if i == 0:
                    raise ValueError(f"lidplug.export: the denoiser fails on the example input "
                                     f"of shape {list(x.shape)}: {short_error(exc)}") from exc
                notes.append(f"not verified at shape {list(x.shape)}: the eager model rejects it "
                             f"({short_error(exc, 1)})")
                continue
            if not isinstance(y, Tensor):
                raise ValueError(f"lidplug.export: expected the denoiser to return a Tensor, got "
                                 f"{type(y).__name__}")
            if y.shape != x.shape:
                raise ValueError(f"lidplug.export: expected the denoiser to return its input's "
                                 f"shape {list(x.shape)}, got {list(y.shape)}")
            kept.append(x)
            outputs.append(y.float())
    return kept, outputs, notes


def compare(exported: Callable[[Tensor], Tensor], inputs: Sequence[Tensor],
            expected: Sequence[Tensor], atol: float, rtol: float) -> dict[str, Any]:
    """Checks ``exported(x)`` against the eager output for every input.

    Returns:
        The record kept in the metadata: shapes, max |difference|, tolerances.

    Raises:
        ExportError: the exported model fails on an input, or differs beyond the tolerance.
    """
    worst = 0.0
    for x, ref in zip(inputs, expected, strict=True):
        shape = list(x.shape)
        try:
            with torch.no_grad():
                out = exported(x)
        except Exception as exc:
            raise ExportError(f"lidplug.export: the exported model fails on an input of shape "
                              f"{shape} that the eager model accepts: {short_error(exc)}") from exc
        if out.shape != ref.shape:
            raise ExportError(f"lidplug.export: expected the exported model to return shape "
                              f"{list(ref.shape)} as eager does, got {list(out.shape)}")
        diff = float((out - ref).abs().max()) if out.numel() else 0.0
        if not torch.allclose(out, ref, rtol=rtol, atol=atol, equal_nan=True):
            raise ExportError(f"lidplug.export: the exported model differs from eager on a random "
                              f"HU-like input of shape {shape}: max |difference| {diff:.3g}, "
                              f"expected within atol={atol:g} + rtol={rtol:g} x |eager|")
        worst = max(worst, diff)
    return {"shapes": [list(x.shape) for x in inputs], "max_abs_diff": worst, "atol": atol,
            "rtol": rtol}
