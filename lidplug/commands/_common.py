"""Helpers shared by the subcommands: user errors from library exceptions, run files, devices."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from lidplug.cli import CLIError

__all__ = ["check_device", "load_config", "user_errors"]


@contextlib.contextmanager
def user_errors(what: str = "") -> Iterator[None]:
    """Re-raise the exceptions bad input causes (ValueError, TypeError, OSError) as one line."""
    try:
        yield
    except (ValueError, TypeError, OSError) as err:
        text = str(err).replace("\n", " ")
        raise CLIError(f"{what}: {text}" if what else text) from None


def load_config(path: Path):
    """Parse a run file (:mod:`lidplug.experiments.run_config`), errors as :class:`CLIError`."""
    from lidplug.experiments.run_config import load_run_config

    with user_errors():
        return load_run_config(path)


def check_device(device: str) -> str:
    """``auto`` -> the GPU if any; ``cuda`` without one is a user error."""
    from lidplug.training.distributed import resolve_device

    try:
        return str(resolve_device(device))
    except ValueError as err:
        raise CLIError(f"--device {device}: {err}; use --device cpu") from None
