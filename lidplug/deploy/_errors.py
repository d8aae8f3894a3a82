"""Errors and warnings of the deploy stage."""

from __future__ import annotations

__all__ = ["ExportError", "ExportWarning", "short_error"]


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
