"""``export``: a trained denoiser (bare, or taken out of a wrapped model) to one deployable file."""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lidplug.deploy import _inputs, _program, _torchscript
from lidplug.deploy._checkpoint import load_weights
from lidplug.deploy._errors import ExportWarning
from lidplug.deploy._metadata import (
    METADATA_FILE,
    TORCH_EXPORT,
    TORCHSCRIPT,
    build_metadata,
    config_to_dict,
)
from lidplug.deploy._module import Deployable
from lidplug.deploy._verify import TOLERANCES, compare, eager_outputs

__all__ = ["export"]

_METHODS = ("auto", "script", "trace", "torch.export")


def export(model: nn.Module, path: str | PathLike[str], example_input: Tensor | None = None, *,
           method: str = "auto", dtype: torch.dtype | str = torch.float32, window: Any = None,
           config: Any = None, checkpoint: Any = None, freeze: bool = True, verify: bool = True,
           atol: float | None = None, rtol: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Writes the denoiser of ``model`` as a TorchScript (``.pt``) or torch.export (``.pt2``) file.

    The detector of a wrapped model is a training-time tool: only the denoiser is exported, inside
    a thin shell that checks the input, keeps a float32 interface (a half variant casts inside) and
    adds a ``denoise_hu`` method (HU in, HU out, through the window). The archive's extra file
    ``lidplug.json`` holds the metadata (window, lidplug/torch versions, training config, how it
    was exported and verified); :func:`lidplug.deploy.read_metadata` reads it back.

    TorchScript: the denoiser is scripted; if it cannot be (``method="auto"``), it is traced
    instead, checked on other batch and image sizes, with an :class:`ExportWarning` that quotes the
    scripting error. The result is frozen (weights inlined, conv+BN folded, dropout removed).
    torch.export: batch and image size dynamic where the model allows.

    Args:
        model: a denoiser ``nn.Module`` (Tensor[B, C, H, W] -> Tensor[B, C, H, W] in window
            units), or a wrapped model with a ``denoiser`` attribute (and optionally ``window``,
            ``config``). It is copied to the CPU in eval mode; the original is not changed.
        path: output file; a ``.pt2`` suffix selects torch.export, anything else TorchScript.
            Written only after verification passed (via a temporary file beside it, removed
            if writing fails: a full disk leaves an existing ``path`` as it was).
        example_input: Tensor[B, C, H, W] in window units to trace / export with; default random
            HU-like slices of shape (2, 1, 64, 64) through the window.
        method: ``"auto"``, ``"script"``, ``"trace"`` (TorchScript) or ``"torch.export"``.
        dtype: compute dtype: ``torch.float32`` (default), ``torch.float16`` or ``torch.bfloat16``
            (or their names).
        window: ``HUWindow`` or ``(lo, hi)`` of the denoiser's units; default the wrapped model's
            ``window``, else the standard ``HUWindow()`` (HU -1024..3072 -> 0..1).
        config: training options stored in the metadata (dataclass or mapping); default the
            wrapped model's ``config``.
        checkpoint: optional path or dict of weights to load into the copy first (see
            :func:`lidplug.deploy.load_weights`; read with ``weights_only=True``).
        freeze: freeze the TorchScript module (ignored for torch.export).
        verify: reload the written file and compare it with eager on the example and on random
            HU-like slices of other batch and image sizes.
        atol, rtol: verification tolerances in window units; default by dtype (float32: 1e-4).
        seed: seed of the random inputs.

    Returns:
        The metadata written into the file.

    Raises:
        TypeError, ValueError: bad arguments (the message says what was expected).
        OSError: the file cannot be written (e.g. ENOSPC: the disk is full).
        ExportError: the model cannot be exported, or the export does not reproduce eager.
    """
    path = Path(path)
    archive = _archive_for(path, method)
    dtype = _inputs.resolve_dtype(dtype)
    denoiser, model_window, model_config = _inputs.resolve_model(model)
    window = _inputs.resolve_window(window if window is not None else model_window)
    config = config_to_dict(config if config is not None else model_config)

    # Float32 first: the reference outputs, and the cost of a half variant, come from it.
    eager = copy.deepcopy(denoiser).cpu().eval().float()
    if checkpoint is not None:
        load_weights(eager, checkpoint)
    from lidplug.training.checkpoint import nonfinite_entries

    if bad := nonfinite_entries(eager.state_dict()):
        raise ValueError(f"lidplug.export: expected a denoiser with finite weights, got NaN or inf "
                         f"in {bad[:5]} (a diverged training or a damaged checkpoint)")
    if window.clamp:
        warnings.warn(ExportWarning(
            f"lidplug.export: the window {window.lo:g}..{window.hi:g} HU clamps: denoise_hu "
            "returns every value outside it at its ends (air at the window's low end, even from "
            "an identity model); export an unclamped window to keep the whole HU range"),
            stacklevel=2)
    example, inputs = _example_and_inputs(example_input, window, seed)
    inputs, expected, notes = eager_outputs(eager, torch.float32, inputs)
    float32_gap = None
    if dtype != torch.float32:
        reference = dict(zip(map(id, inputs), expected, strict=True))
        inputs, expected, more = eager_outputs(eager.to(dtype), dtype, inputs)
        notes += more
        float32_gap = max(float((y - reference[id(x)]).abs().max())
                          for x, y in zip(inputs, expected, strict=True))
    shell = Deployable(eager, window, example.shape[1], dtype)
    exported, used, more_notes, ops = _convert(shell, archive, method, example, inputs[1:], freeze)

    meta = build_metadata(
        archive=archive, method=used, frozen=freeze and archive == TORCHSCRIPT, dtype=dtype,
        window=window, config=config, channels=example.shape[1],
        example_shape=tuple(example.shape), denoiser=_name_of(denoiser), ops=ops,
        verified=None, notes=notes + more_notes)
    # torch.export.load wants the .pt2 suffix, so the temporary name keeps it.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        if verify:
            _save(exported, archive, tmp, meta)
            atol_d, rtol_d = TOLERANCES[dtype]
            atol, rtol = atol_d if atol is None else atol, rtol_d if rtol is None else rtol
            meta["verified"] = compare(_load_raw(archive, tmp), inputs, expected, atol, rtol)
            if float32_gap is not None:
                meta["verified"]["max_abs_diff_vs_float32"] = float32_gap
        _save(exported, archive, tmp, meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def _archive_for(path: Path, method: str) -> str:
    if method not in _METHODS:
        raise ValueError(f"lidplug.export: expected method one of {list(_METHODS)}, got "
                         f"{method!r}")
    archive = TORCH_EXPORT if path.suffix == ".pt2" else TORCHSCRIPT
    if (archive == TORCH_EXPORT) != (method == "torch.export") and method != "auto":
        raise ValueError(f"lidplug.export: method={method!r} writes "
                         f"{'a .pt2 file' if method == 'torch.export' else 'TorchScript'}, got "
                         f"path {str(path)!r}; use a .pt2 suffix for torch.export and any other "
                         f"for TorchScript")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"lidplug.export: the folder of {str(path)!r} does not exist")
    return archive


def _example_and_inputs(example_input: Tensor | None, window: nn.Module,
                        seed: int) -> tuple[Tensor, list[Tensor]]:
    """The example (given, or random HU-like slices) and the verification inputs, example first."""
    generator = torch.Generator().manual_seed(seed)
    given = None if example_input is None else _inputs.check_example(example_input)
    shapes = _inputs.verify_shapes(_inputs.DEFAULT_EXAMPLE_SHAPE if given is None else given.shape)
    if given is None:  # the first random slices are the example
        given = window(_inputs.hu_like_slices(shapes.pop(0), generator=generator))
    return given, [given] + [window(_inputs.hu_like_slices(s, generator=generator))
                             for s in shapes]


def _convert(shell: Deployable, archive: str, method: str, example: Tensor,
             check_inputs: list[Tensor], freeze: bool) -> tuple[Any, str, list[str], list[str]]:
    """(exported module or program, method used, notes, custom ops it calls)."""
    if archive == TORCH_EXPORT:
        program = _program.export_program(shell, example)
        return program, "torch.export", [], _program.custom_ops(program)
    dtype = shell.dtype
    inner, used, notes = _torchscript.to_script_module(
        shell.denoiser, example.to(dtype), [x.to(dtype) for x in check_inputs], method)
    with _torchscript.quiet_jit():
        scripted = torch.jit.script(Deployable(inner, shell.window, shell.channels, dtype))
    if freeze:
        scripted = _torchscript.freeze(scripted)
    return scripted, used, notes, _torchscript.custom_ops(scripted)


def _save(exported: Any, archive: str, path: Path, meta: dict[str, Any]) -> None:
    extra = {METADATA_FILE: json.dumps(meta, indent=1)}
    # Serialised into memory, then written by Python: libtorch's archive writer aborts the
    # whole process (std::terminate, from a destructor) when a write to a file fails, as on a
    # full disk; into memory it cannot fail, and Python's write raises OSError (ENOSPC).
    buffer = io.BytesIO()
    if archive == TORCHSCRIPT:
        with _torchscript.quiet_jit():
            torch.jit.save(exported, buffer, _extra_files=extra)
    else:
        _program.save_program(exported, buffer, extra)
    with path.open("wb") as fh:
        fh.write(buffer.getbuffer())
        fh.flush()
        os.fsync(fh.fileno())  # on disk before os.replace makes it the output


def _load_raw(archive: str, path: Path) -> nn.Module:
    if archive == TORCHSCRIPT:
        with _torchscript.quiet_jit():
            return torch.jit.load(str(path), map_location="cpu")
    return _program.load_program(path)


def _name_of(denoiser: nn.Module) -> str:
    # A scripted module's class is RecursiveScriptModule; its original_name is the user's class.
    return getattr(denoiser, "original_name", None) or type(denoiser).__name__
