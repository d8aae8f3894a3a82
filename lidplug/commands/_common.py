"""Helpers shared by the subcommands: user errors from library exceptions, run files, devices."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from lidplug.cli import CLIError

__all__ = ["check_device", "check_output", "user_errors"]


@contextlib.contextmanager
def user_errors(what: str = "") -> Iterator[None]:
    """Re-raise the exceptions bad input causes (ValueError, TypeError, OSError, and a training
    that diverged on the run's settings) as one line."""
    try:
        yield
    except (ValueError, TypeError, OSError) as err:
        text = str(err).replace("\n", " ")
        raise CLIError(f"{what}: {text}" if what else text) from None
    except RuntimeError as err:
        from lidplug.training import TrainingDiverged

        if not isinstance(err, TrainingDiverged):
            raise
        text = str(err).replace("\n", " ")
        raise CLIError(f"training diverged: {text} (expected settings that train: lower the "
                       "learning rate, train.lr_denoiser / lr_detector, or clip gradients, "
                       "train.grad_clip)") from None


def check_device(device: str) -> str:
    """``auto`` -> the GPU if any; ``cuda`` without one is a user error."""
    from lidplug.training.distributed import resolve_device

    try:
        return str(resolve_device(device))
    except ValueError as err:
        raise CLIError(f"--device {device}: {err}; use --device cpu") from None


def check_output(src: Path, out: Path, overwrite: bool) -> None:
    """Refuse an output inside the input (or its folder), an existing file where a folder is
    due, and a non-empty output folder without ``overwrite``."""
    s, o = src.resolve(), out.resolve()
    # A file's folder counts as input too: a derived series mixed into it would spoil it.
    folder = o.parent if src.is_file() and out.suffix.lower() == ".png" else o
    if o == s or (src.is_dir() and s in o.parents) or (src.is_file() and folder == s.parent):
        raise CLIError(f"{out}: expected an output outside the input {src} and its folder, got "
                       "a path inside (refusing to write into the input)")
    if o.is_file() and out.suffix.lower() != ".png":
        raise CLIError(f"{out}: expected an output folder, got an existing file")
    exists = o.is_file() or (o.is_dir() and any(o.iterdir()))
    if exists and not overwrite:
        raise CLIError(f"{out}: already exists and is not empty "
                       "(pass --overwrite to write into it)")
