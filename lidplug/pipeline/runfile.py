"""Run files to :class:`~lidplug.pipeline.spec.RunSpec`: TOML plus ``--key value`` overrides.

Why jsonargparse: it reads TOML into typed dataclasses (nested tables, lists of tables), applies
``--train.rounds 4``-style overrides on top, and refuses unknown keys and wrong types with the
key's path in the message; the ``__post_init__`` checks of each dataclass add the ranges, and a
model's ``class_path`` / ``init_args`` are checked against the class's own signature
(:class:`~lidplug.pipeline.spec.ModelSpec`). Nothing here builds a model or reads data.

Two things jsonargparse does not do are done here: overrides of keys inside a model table,
``forward_kwargs`` or ``units`` (``--denoiser.model.init_args.out_chans 32``; jsonargparse
reads a key of a plain table as the table's own), applied to the table the file gave; and the
run file's folder
and the working folder made importable (appended to ``sys.path``, after installed packages, so
a file there never shadows one), so that a run file can name a class of the user's own module
beside it (``class_path = "my_models.Net"`` for ``my_models.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import sys
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
    _importable([folder, Path.cwd()])
    overrides = list(overrides or [])
    for item in overrides:
        if item.split("=", 1)[0] in _NOT_OVERRIDES:
            raise ValueError(f"{item}: expected run-file keys as overrides (--section.key "
                             "VALUE), got an option of the parser; the resolved run is written "
                             "to run.json")
    plain, inside = _split_overrides(overrides)
    args += plain
    parser = run_parser()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jsonargparse's own deprecation notices
        try:
            parsed = parser.parse_args(args)
            for table, keys, value in inside:
                parsed[table] = _set_inside(parsed[table], table, keys, value)
            cfg = parser.instantiate(parsed)
            names = {f.name for f in dataclasses.fields(RunSpec)}
            spec = RunSpec(**{k: v for k, v in vars(cfg).items() if k in names})
        except Exception as err:  # anything parsing user input raises is the input's fault
            # jsonargparse raises its ArgumentError for bad keys and types, the dataclasses
            # ValueError/TypeError for bad values, and on some malformed overrides its own
            # internals fail (e.g. AttributeError): all of them describe the run file's fault.
            raise ValueError(_one_line(err, path)) from None
    return spec, folder


# Overrides of a key inside a table jsonargparse holds as one value.
_INSIDE = re.compile(r"--((?:denoiser|detector)\.model|denoiser\.(?:forward_kwargs|units))"
                     r"\.([\w.]+)")


def _importable(folders: list[Path | None]) -> None:
    """Let a run file name a module of its own folder or of the working folder."""
    for folder in folders:
        if folder is not None and str(folder) not in sys.path:
            sys.path.append(str(folder))


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[tuple[str, list[str], Any]]]:
    """(overrides for jsonargparse, [(table key, keys inside it, value)])."""
    plain: list[str] = []
    inside = []
    i = 0
    while i < len(overrides):
        arg = overrides[i]
        name, eq, value = arg.partition("=")
        match = _INSIDE.fullmatch(name)
        if match is None:
            plain.append(arg)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(overrides):
                raise ValueError(f"{arg}: expected a value after it")
            value = overrides[i + 1]
            i += 1
        i += 1
        inside.append((match[1], match[2].split("."), _value(value)))
    return plain, inside


def _value(text: str) -> Any:
    # Numbers, true/false, null, lists and tables as JSON; anything else is a string.
    try:
        return json.loads(text)
    except ValueError:
        return text


def _set_inside(table: Any, name: str, keys: list[str], value: Any) -> dict:
    """``table`` with ``table[k1][k2]... = value``, tables created along the way."""
    out = copy.deepcopy(table) if isinstance(table, dict) else {}
    node = out
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"--{name}.{'.'.join(keys)}: {name}.{'.'.join(keys[:i + 1])} is "
                             f"{child!r}, not a table")
        node = child
    node[keys[-1]] = value
    return out


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
