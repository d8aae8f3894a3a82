"""Denoiser -> ``torch.export`` program (``.pt2``), the format upstream replaces TorchScript with.

Batch and image size are exported as dynamic (``Dim.AUTO``): torch.export keeps a size symbolic
where the model allows and fixes it (recording the constraint) where the model needs a fixed or
divisible size, instead of failing the export.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import torch
from torch import Tensor

from lidplug.deploy._errors import ExportError, short_error
from lidplug.deploy._module import Deployable
from lidplug.deploy._untrusted import check_program_archive

__all__ = ["custom_ops", "export_program", "load_program", "save_program"]


def export_program(shell: Deployable, example: Tensor) -> torch.export.ExportedProgram:
    """Exports ``shell.forward`` for Tensor[B, C, H, W] inputs with dynamic B, H, W.

    Raises:
        ExportError: torch.export cannot capture the model (the message says which construct).
    """
    auto = torch.export.Dim.AUTO
    try:
        with torch.no_grad():
            return torch.export.export(shell, (example,),
                                       dynamic_shapes={"x": {0: auto, 2: auto, 3: auto}})
    except Exception as exc:  # torch.export raises many types (UserError, Unsupported, ...)
        raise ExportError(f"lidplug.export: torch.export cannot capture "
                          f"{type(shell.denoiser).__name__}: {short_error(exc)}") from exc


def save_program(program: torch.export.ExportedProgram, f: str | PathLike[str] | io.BytesIO,
                 extra_files: Mapping[str, str]) -> None:
    torch.export.save(program, f, extra_files=dict(extra_files))


def load_program(path: str | PathLike[str]) -> torch.nn.Module:
    """The exported program of a ``.pt2`` archive as a callable module.

    The archive is read once and checked before torch deserialises those very bytes: torch's
    loader would unpickle and ``exec`` parts of a crafted archive (see
    :mod:`lidplug.deploy._untrusted`).

    Raises:
        ValueError: the archive holds something whose loading could run code, or torch cannot
            read it (damaged, or written by an incompatible torch).
    """
    raw = Path(path).read_bytes()
    check_program_archive(raw, str(path))
    try:
        return torch.export.load(io.BytesIO(raw)).module()
    except Exception as exc:  # torch raises many types on a damaged archive
        raise ValueError(f"lidplug.load: cannot load the torch.export program of {str(path)!r}: "
                         f"{short_error(exc, max_lines=3)}") from exc


def custom_ops(program: torch.export.ExportedProgram) -> list[str]:
    """Ops outside torch's own namespaces that the program calls (``"ns::name"``)."""
    found = set()
    for node in program.graph.nodes:
        target = node.target
        if (node.op == "call_function" and isinstance(target, torch._ops.OpOverload)
                and target.namespace not in ("aten", "prims")):
            found.add(target._schema.name)
    return sorted(found)
