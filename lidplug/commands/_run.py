"""Reading the run of ``train`` / ``evaluate`` / ``demo``: run file, overrides, output folder;
and holding that folder while a command works in it (:func:`run_folder`)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from lidplug.cli import CLIError
from lidplug.commands._common import check_device, user_errors

__all__ = ["read_run", "run_folder", "run_inputs"]


def read_run(args: argparse.Namespace, config: Path | None = None):
    """``(spec, folder, out)`` from ``--config`` (or ``config``), the overrides and ``--out``.

    Every problem of the run file (syntax, unknown keys, wrong types, values out of range) is a
    one-line user error here, before anything runs.
    """
    from lidplug.pipeline import load_run

    path = args.config if args.config is not None else config
    overrides = list(args.overrides)
    if getattr(args, "device", None) is not None:
        overrides += ["--train.device", check_device(args.device)]
    with user_errors():
        spec, folder = load_run(path, overrides)
    out = args.out if args.out is not None else Path(path).with_suffix("")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: expected a folder, got an existing file")
    return spec, folder, out


def run_inputs(spec, folder: Path | None, config: Path | None) -> dict[str, Path | None]:
    """The files a run reads (its run file, the models' weights and sub-run files), by name."""
    from lidplug.pipeline.resolve import resolve_path

    inputs: dict[str, Path | None] = {"--config": config}
    models = {"denoiser": spec.denoiser, "detector": spec.detector,
              **{f"evaluate.observers[{i}]": m for i, m in enumerate(spec.evaluate.observers)}}
    for name, model in models.items():
        for key in ("weights", "run"):
            if getattr(model, key) is not None:
                inputs[f"{name}.{key}"] = resolve_path(getattr(model, key), folder)
    return inputs


def _main_process() -> bool:
    # Under torchrun only rank 0 writes, so only it holds and prepares the folder.
    return os.environ.get("RANK", "0") in ("", "0")


@contextlib.contextmanager
def run_folder(out: Path, command: str, inputs: dict[str, Path | None], arms: list[str], *,
               overwrite: bool = False, training: bool = True) -> Iterator[None]:
    """Hold ``out`` for ``command`` while the block runs (:mod:`lidplug.pipeline.folder`):
    its lock; no output over an input, even with ``--overwrite``; and, for a command that
    trains into it, a folder made by another command (or not by lidplug) only with
    ``--overwrite``. Each refusal is one line."""
    from lidplug.pipeline.folder import check_inputs, claim, locked

    with contextlib.ExitStack() as stack:
        if _main_process():
            with user_errors():
                stack.enter_context(locked(out, command))
                check_inputs(inputs, out=out, arms=arms, training=training)
                if training:
                    claim(out, command, overwrite=overwrite)
        yield
