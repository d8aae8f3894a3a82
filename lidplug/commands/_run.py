"""Reading the run of ``train`` / ``evaluate`` / ``demo``: run file, overrides, output folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from lidplug.cli import CLIError
from lidplug.commands._common import check_device, user_errors

__all__ = ["read_run"]


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
