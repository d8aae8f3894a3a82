"""Names in a run file resolved: import paths to callables, relative paths to files.

Below both :mod:`lidplug.pipeline.spec` (which checks a model's arguments against its signature
when a run is read) and :mod:`lidplug.pipeline.build` (which builds it), so neither imports the
other for them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["resolve_callable", "resolve_path"]


def resolve_callable(class_path: str, where: str):
    """Import ``package.module.Name`` (a class or a function)."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name or not name:
        raise ValueError(f"{where}.class_path: expected \"package.module.Name\", got "
                         f"{class_path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{where}.class_path: cannot import {module_name!r} ({err})") from None
    target = getattr(module, name, None)
    if target is None or not callable(target):
        raise ValueError(f"{where}.class_path: expected a class or function {name!r} in "
                         f"{module_name}, got {'nothing' if target is None else type(target)}")
    return target


def resolve_path(path: str, folder: Path | None) -> Path:
    """``path`` relative to the run file's folder (or as given when absolute / no folder)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or folder is None else folder / p
