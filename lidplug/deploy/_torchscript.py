"""Denoiser -> TorchScript: script where possible, trace with checks where not, then freeze.

``torch.jit`` is deprecated upstream (torch 2.14 warns on every call) but it is still the one
format that plain ``torch.jit.load`` and libtorch C++ programs read without a compiler, so it
stays the default archive; :mod:`lidplug.deploy._program` writes the ``torch.export`` one.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from lidplug.deploy._errors import ExportError, ExportWarning, short_error

__all__ = ["custom_ops", "freeze", "quiet_jit", "to_script_module"]

# Namespaces of ops every libtorch has; any other namespace is a library the loader must load.
_BUILTIN_NAMESPACES = frozenset({"aten", "prim", "prims", "quantized", "mkldnn", "profiler",
                                 "cuda", "attr", "onnx", "tensorexpr"})


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silences torch.jit's deprecation notice (one per call) where lidplug uses it on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                                category=FutureWarning)
        yield


def to_script_module(denoiser: nn.Module, example: Tensor, check_inputs: Sequence[Tensor],
                     method: str) -> tuple[torch.jit.ScriptModule, str, list[str]]:
    """Scripts ``denoiser`` or, failing that (or if asked), traces it.

    Args:
        denoiser: eager module in eval mode, on the CPU, in its export dtype.
        example: Tensor[B, C, H, W] to trace with.
        check_inputs: further inputs the trace is re-run and compared on (other batch and image
            sizes), so a trace that fixed a shape-dependent path fails here, not in deployment.
        method: ``"auto"`` (script, else trace), ``"script"`` or ``"trace"``.

    Returns:
        (script module, ``"script"`` or ``"trace"``, notes for the metadata).

    Raises:
        ExportError: scripting failed and ``method="script"``, or tracing failed too; the message
            carries torch's description of the construct and its source line.
    """
    name = type(denoiser).__name__
    if isinstance(denoiser, torch.jit.ScriptModule):
        return denoiser, "script", []
    script_error = None
    if method in ("auto", "script"):
        try:
            with quiet_jit():
                return torch.jit.script(denoiser), "script", []
        except Exception as exc:  # torch raises several types (RuntimeError, NotSupportedError, ...)
            if method == "script":
                raise ExportError(f"lidplug.export: torch.jit.script cannot compile {name}: "
                                  f"{short_error(exc)}") from exc
            script_error = short_error(exc)
    try:
        traced, tracer_notes = _trace(denoiser, example, check_inputs)
    except Exception as exc:
        why = f"scripting failed: {script_error}\n" if script_error else ""
        raise ExportError(f"lidplug.export: cannot export {name} as TorchScript.\n{why}tracing "
                          f"failed: {_trace_error(exc)}\nMake it scriptable, or try a .pt2 path "
                          f"(torch.export).") from exc
    notes = tracer_notes
    if script_error is not None:
        shapes = ", ".join(str(list(t.shape)) for t in (example, *check_inputs))
        note = (f"torch.jit.script cannot compile {name}, so it was traced instead (checked on "
                f"shapes {shapes}); a trace fixes Python control flow to the path the example "
                f"took. Scripting error: {script_error}")
        warnings.warn(f"lidplug.export: {note}", ExportWarning, stacklevel=3)
        notes = [note, *notes]
    return traced, "trace", notes


def _trace_error(exc: Exception) -> str:
    if isinstance(exc, torch.jit.TracingCheckError):
        # Its message is a graph diff; what the user needs is the reason.
        return ("the traced graph differs between the example and the check inputs (other batch "
                "and image sizes): the forward's Python control flow depends on the input's shape "
                "or values, which a trace cannot capture")
    return short_error(exc)


def _trace(denoiser: nn.Module, example: Tensor,
           check_inputs: Sequence[Tensor]) -> tuple[torch.jit.ScriptModule, list[str]]:
    with quiet_jit(), warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always", torch.jit.TracerWarning)
        traced = torch.jit.trace(denoiser, example,
                                 check_inputs=[(t,) for t in check_inputs] or None)
    for node in _nodes(traced):
        if node.kind() == "prim::PythonOp":
            # Tracing records Python calls it cannot see into (an autograd.Function, say), in
            # the graph of whichever submodule makes them; they would only fail later, when the
            # module is scripted or saved, with torch's own message.
            raise RuntimeError(f"the trace calls the Python function {node.pyname()!r} (an "
                               f"autograd.Function or other Python code), which TorchScript "
                               f"cannot save (write it with torch ops, or register it as a "
                               f"custom op with torch.library)")
    notes = []
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            notes.append(f"tracer: {str(w.message).splitlines()[0]}")
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return traced, sorted(set(notes))


def freeze(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Inlines weights as constants and folds conv+batch norm, dropout, etc. (device-neutral).

    ``torch.jit.optimize_for_inference`` is not applied on purpose: on a CPU it rewrites convs to
    MKL-DNN layouts, which would tie the archive to CPUs and to that libtorch build.
    """
    with quiet_jit():
        return torch.jit.freeze(module.eval(), preserved_attrs=["denoise_hu"])


def _walk(block) -> Iterator[torch._C.Node]:
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _walk(inner)


def _nodes(module: torch.jit.ScriptModule) -> Iterator[torch._C.Node]:
    """Every node of every method of ``module`` and of its submodules."""
    for sub in module.modules():
        for name in sub._c._method_names():
            yield from _walk(sub._c._get_method(name).graph)


def custom_ops(module: torch.jit.ScriptModule) -> list[str]:
    """Ops outside libtorch's own namespaces that any method of ``module`` calls."""
    return sorted({node.kind() for node in _nodes(module)
                   if node.kind().split("::")[0] not in _BUILTIN_NAMESPACES})
