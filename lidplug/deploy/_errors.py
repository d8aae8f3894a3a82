"""Errors and warnings of the deploy stage."""

from __future__ import annotations

__all__ = ["ExportError", "ExportWarning", "model_error", "short_error"]


class ExportError(RuntimeError):
    """A model could not be exported, or its export does not reproduce it (see the message)."""


class ExportWarning(UserWarning):
    """An export succeeded by a fallback the user should know of (e.g. tracing, not scripting)."""


def short_error(exc: BaseException, max_lines: int = 16) -> str:
    """An exception's message, trimmed: torch's compiler errors name the construct and show its
    source line first, then can run to pages of traceback."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], "..."]
    return f"{type(exc).__name__}: " + "\n".join(lines)


def model_error(exc: BaseException) -> str:
    """The line of a model's runtime error that says what went wrong, without its traceback.

    A TorchScript model raises ``torch.jit.Error``, whose message is the TorchScript traceback
    (tens of lines) ending in the original exception as ``builtins.ValueError: ...``: that last
    line is the reason. Other errors (torch.export guards, eager errors) say it first.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if type(exc).__name__ == "Error" and type(exc).__module__.startswith("torch"):
        return lines[-1].removeprefix("builtins.")
    return f"{type(exc).__name__}: {lines[0]}"
