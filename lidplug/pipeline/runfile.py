"""Run files to :class:`~lidplug.pipeline.spec.RunSpec`: TOML plus ``--key value`` overrides.

Why jsonargparse: it reads TOML into typed dataclasses (nested tables, lists of tables), applies
``--train.rounds 4``-style overrides on top, and refuses unknown keys and wrong types with the
key's path in the message; the ``__post_init__`` checks of each dataclass add the ranges, and a
model's ``class_path`` / ``init_args`` are checked against the class's own signature
(:class:`~lidplug.pipeline.spec.ModelSpec`). Nothing here builds a model or reads data.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

from lidplug.pipeline.spec import RunSpec

__all__ = ["dump_run", "load_run", "run_parser"]


def run_parser():
    """The jsonargparse parser of :class:`RunSpec` (``--config FILE`` plus ``--a.b VALUE``)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(parser_mode="toml", exit_on_error=False, prog="lidplug")
    parser.add_argument("--config", action=ActionConfigFile, help="a run file (TOML)")
    parser.add_class_arguments(RunSpec, nested_key=None, as_group=False)
    return parser


def load_run(path: str | os.PathLike | None = None, overrides: list[str] | None = None
             ) -> tuple[RunSpec, Path | None]:
    """Read a run file and apply ``--key value`` overrides.

    Args:
        path: a TOML run file; None starts from the defaults.
        overrides: command-line style overrides, e.g. ``["--train.rounds", "4"]``.

    Returns:
        ``(spec, folder)``: the run, and the folder relative paths in it resolve against (the
        run file's, or None).

    Raises:
        FileNotFoundError: no run file there.
        ValueError: a syntax error, an unknown key or a wrong type (the message names the key),
            or a value out of range.
    """
    args: list[str] = []
    folder = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: expected a run file (.toml), got nothing there")
        if path.suffix.lower() != ".toml":
            raise ValueError(f"{path}: expected a .toml run file, got {path.suffix!r}")
        text = _check_toml(path)
        with path.open("rb") as fh:
            bom = fh.read(len(_BOM)) == _BOM
        # A byte-order mark (some editors save one) is no TOML: the text without it is read
        # instead of the file.
        args += ["--config", text if bom else str(path)]
        folder = path.resolve().parent
    overrides = list(overrides or [])
    for item in overrides:
        if item.split("=", 1)[0] in _NOT_OVERRIDES:
            raise ValueError(f"{item}: expected run-file keys as overrides (--section.key "
                             "VALUE), got an option of the parser; the resolved run is written "
                             "to run.json")
    args += overrides
    parser = run_parser()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jsonargparse's own deprecation notices
        try:
            cfg = parser.instantiate(parser.parse_args(args))
            names = {f.name for f in dataclasses.fields(RunSpec)}
            spec = RunSpec(**{k: v for k, v in vars(cfg).items() if k in names})
        except Exception as err:  # anything parsing user input raises is the input's fault
            # jsonargparse raises its ArgumentError for bad keys and types, the dataclasses
            # ValueError/TypeError for bad values, and on some malformed overrides its own
            # internals fail (e.g. AttributeError): all of them describe the run file's fault.
            raise ValueError(_one_line(err, path)) from None
    return spec, folder


_BOM = b"\xef\xbb\xbf"
# Options of jsonargparse's parser that are no key of a run: --print_config needs a package
# lidplug does not depend on, and the resolved run is recorded in run.json anyway.
_NOT_OVERRIDES = ("--print_config", "--config")


def _check_toml(path: Path) -> str:
    """The run file's text (without a byte-order mark), checked to be TOML."""
    # A syntax error reads better from the TOML parser itself than through jsonargparse.
    try:
        from tomllib import TOMLDecodeError, loads
    except ImportError:  # Python 3.10: jsonargparse reads TOML with the toml package there
        from toml import TomlDecodeError as TOMLDecodeError
        from toml import loads
    try:
        text = path.read_text(encoding="utf-8-sig")
        loads(text)
    except TOMLDecodeError as err:
        raise ValueError(f"{path}: expected TOML, got a syntax error: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: expected a UTF-8 text file, got {err.reason}") from None
    except RecursionError:
        raise ValueError(f"{path}: expected TOML a parser can read, got values nested too "
                         "deeply") from None
    return text


def _one_line(err: Exception, path: Path | None) -> str:
    text = " ".join(str(err).split())
    return f"{path}: {text}" if path is not None else text


def dump_run(spec: RunSpec) -> dict[str, Any]:
    """The run as plain data (JSON-able): what ``run.json`` and checkpoints record."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value

    return plain(spec)
