"""Names in a run file resolved: import paths to callables, relative paths to files.

Below both :mod:`lidplug.pipeline.spec` (which checks a model's arguments against its signature
when a run is read) and :mod:`lidplug.pipeline.build` (which builds it), so neither imports the
other for them.

A ``class_path`` is imported (importing a module runs its top-level code: a run file is trusted
like code), but the object it names is only ever *called* when it is a module maker:
:func:`check_module_maker` accepts an ``nn.Module`` subclass, or a function whose return
annotation is one (torchvision's builders are annotated), and refuses anything else before
anything is called. Without it ``class_path = "os.system"`` would run its ``init_args`` as a
shell command. The one exception is a plain namespace (``argparse.Namespace``,
``types.SimpleNamespace``, exactly those classes): it only stores its keyword arguments as
attributes, and some projects' models take their hyperparameters as one (ldct-benchmark's
``Model(args)``), which jsonargparse writes as a nested ``class_path`` table.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import types
import typing
from pathlib import Path

from torch import nn

__all__ = ["check_module_maker", "resolve_callable", "resolve_path"]

# Classes whose construction runs nothing: they keep their keyword arguments as attributes.
# Exact classes only; a subclass may run anything in its __init__.
NAMESPACES = (argparse.Namespace, types.SimpleNamespace)


def resolve_callable(class_path: str, where: str):
    """Import ``package.module.Name``: an ``nn.Module`` class or a function annotated to return
    one (:func:`check_module_maker`); nothing is called."""
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
    check_module_maker(target, class_path, where)
    return target


def _returns_module(function) -> bool:
    """Whether ``function``'s return annotation is an ``nn.Module`` subclass (string
    annotations resolved in the function's own module, decorators unwrapped)."""
    try:
        returned = typing.get_type_hints(function).get("return")
    except Exception:  # an annotation naming something its module does not define
        returned = None
    if returned is None:
        annotation = inspect.signature(function).return_annotation
        returned = None if annotation is inspect.Signature.empty else annotation
    return isinstance(returned, type) and issubclass(returned, nn.Module)


def check_module_maker(target, class_path: str, where: str) -> None:
    """Refuse, before anything is called, a ``class_path`` target that is neither an
    ``nn.Module`` subclass nor a Python function annotated to return one (nor exactly one of
    the plain :data:`NAMESPACES`, which another model may take as an argument).

    Raises:
        ValueError: naming the class path and what it is instead.
    """
    if isinstance(target, type):
        if issubclass(target, nn.Module) or target in NAMESPACES:
            return
        what = f"the class {target.__name__}, not an nn.Module"
    elif inspect.isfunction(inspect.unwrap(target)):
        try:
            if _returns_module(target):
                return
        except (TypeError, ValueError):  # no signature to read
            pass
        what = "a function without a return annotation naming an nn.Module subclass"
    else:
        what = f"a {type(target).__name__}"
    raise ValueError(f"{where}.class_path: expected an nn.Module subclass or a function "
                     f"annotated to return one (e.g. '-> nn.Module'), got {class_path!r}: {what} "
                     "(nothing else is ever called from a run file)")


def resolve_path(path: str, folder: Path | None) -> Path:
    """``path`` relative to the run file's folder (or as given when absolute / no folder)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or folder is None else folder / p
