"""The metadata a lidplug export carries, and how to find it in an archive without loading it.

Both archive kinds (TorchScript ``.pt``, ``torch.export`` ``.pt2``) are zip files with one top
folder; extra files land in ``<top>/extra/<name>``. lidplug writes one, :data:`METADATA_FILE`, a
JSON object whose ``"format"`` is :data:`FORMAT`. Reading it needs only ``zipfile``, so a file can
be identified (and a wrong one rejected with a useful message) before torch deserialises it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from lidplug.data.transforms import HUWindow
from lidplug.version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA_FILE", "build_metadata", "config_to_dict",
           "read_metadata", "window_from_metadata"]

METADATA_FILE = "lidplug.json"
FORMAT = "lidplug-denoiser"
FORMAT_VERSION = 1

# Archive kinds, as named in the metadata's "archive" entry.
TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch.export"


def config_to_dict(config: Any) -> dict[str, Any] | None:
    """A training config as a JSON-able dict: an object with ``to_dict()`` (lidplug's
    ``WrapConfig``), a dataclass instance, a mapping, or None.

    Values JSON cannot hold (paths, dtypes, ...) are stored as their ``str``.
    """
    if config is None:
        return None
    if callable(getattr(config, "to_dict", None)):
        config = config.to_dict()
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"lidplug.export: expected config to be a dataclass instance, a mapping "
                        f"or None, got {type(config).__name__}")
    return json.loads(json.dumps(dict(config), default=str))


def build_metadata(*, archive: str, method: str, frozen: bool, dtype: torch.dtype,
                   window: HUWindow, config: dict[str, Any] | None, channels: int,
                   example_shape: tuple[int, ...], denoiser: str, ops: list[str],
                   verified: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """The metadata dict (documented in :func:`read_metadata`); JSON-able."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lidplug_version": __version__,
        "torch_version": torch.__version__,
        "archive": archive,
        "method": method,
        "frozen": frozen,
        "denoiser": denoiser,
        # The model takes and returns float32; it computes in "dtype" (a half variant casts inside).
        "io_dtype": "float32",
        "dtype": str(dtype).removeprefix("torch."),
        "input": {"layout": "[B, C, H, W]", "channels": channels, "units": "window",
                  "example_shape": list(example_shape)},
        "window": {"lo": window.lo, "hi": window.hi, "clamp": window.clamp},
        "config": config,
        "ops": ops,
        "verified": verified,
        "notes": notes,
    }


def _describe_foreign(names: list[str]) -> str:
    # What the zip most likely is, to tell the user what to do with it instead.
    if any("/code/" in n for n in names):
        return ("a TorchScript archive that lidplug did not write (no extra file "
                f"{METADATA_FILE!r}); load it with torch.jit.load")
    if any(n.endswith("/archive_format") for n in names):
        return ("a torch.export archive that lidplug did not write (no extra file "
                f"{METADATA_FILE!r}); load it with torch.export.load")
    if any(n.endswith("/data.pkl") for n in names):
        return ("a torch.save checkpoint, not an export; rebuild the denoiser, load the weights "
                "with lidplug.deploy.load_weights, then call lidplug.export")
    return "a zip archive without lidplug metadata"


def read_metadata(path: str | PathLike[str]) -> dict[str, Any]:
    """Reads the metadata of a lidplug export without loading the model.

    Args:
        path: a file written by :func:`lidplug.deploy.export` (``.pt`` or ``.pt2``).

    Returns:
        The metadata dict: ``format``, ``lidplug_version``, ``torch_version``, ``archive``
        (``"torchscript"`` or ``"torch.export"``), ``method`` (``"script"``, ``"trace"`` or
        ``"torch.export"``), ``dtype``, ``window`` (``lo``, ``hi``, ``clamp``), ``config``,
        ``ops`` (custom ops the graph calls), ``verified``, ``notes``, ...

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a lidplug export (the message says what it looks like).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lidplug.load: no such file: {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"lidplug.load: expected a lidplug export (a TorchScript or torch.export "
                         f"zip archive), got {str(path)!r}, which is not a zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            entries = [n for n in names if n.split("/")[1:] == ["extra", METADATA_FILE]]
            if not entries:
                raise ValueError(f"lidplug.load: expected a lidplug export, got {str(path)!r}, "
                                 f"which is {_describe_foreign(names)}")
            raw = archive.read(entries[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:  # a damaged archive
        raise ValueError(f"lidplug.load: expected a lidplug export, got {str(path)!r}, a damaged "
                         f"zip archive: {exc}") from None
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"lidplug.load: {str(path)!r} has a corrupt {METADATA_FILE}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"lidplug.load: expected {METADATA_FILE} with format {FORMAT!r}, got "
                         f"{got!r} in {str(path)!r}")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"lidplug.load: expected export format version <= {FORMAT_VERSION}, got "
                         f"{version!r} (written by lidplug {meta.get('lidplug_version')}); "
                         f"upgrade lidplug")
    _check_fields(meta, str(path))
    kind = _archive_kind(names)
    if kind is not None and kind != meta["archive"]:
        raise ValueError(f"lidplug.load: {str(path)!r} has a {METADATA_FILE} that does not match "
                         f"it: expected archive {kind!r} (what the file is), got "
                         f"{meta['archive']!r}")
    return meta


def _check_fields(meta: dict[str, Any], path: str) -> None:
    # What load and DeployedDenoiser read: a file that lacks it (edited, or from a broken
    # writer) fails here with the key's name, not with a KeyError while it is used.
    def bad(key: str, expected: str, got: Any) -> ValueError:
        return ValueError(f"lidplug.load: {path!r} has an incomplete or invalid {METADATA_FILE}: "
                          f"expected {key!r} to be {expected}, got {got!r}")

    if meta.get("archive") not in (TORCHSCRIPT, TORCH_EXPORT):
        raise bad("archive", f"{TORCHSCRIPT!r} or {TORCH_EXPORT!r}", meta.get("archive"))
    window = meta.get("window")
    if not isinstance(window, dict):
        raise bad("window", "an object with lo, hi and clamp", window)
    for key in ("lo", "hi"):
        value = window.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad(f"window.{key}", "a finite number (HU)", value)
    if not window["lo"] < window["hi"]:
        raise bad("window", "lo < hi", window)
    if not isinstance(window.get("clamp"), bool):
        raise bad("window.clamp", "true or false", window.get("clamp"))
    channels = meta.get("input", {}).get("channels") if isinstance(meta.get("input"), dict) else None
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise bad("input.channels", "a positive integer", channels)
    ops = meta.get("ops")
    if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
        raise bad("ops", "a list of operator names", ops)


def _archive_kind(names: list[str]) -> str | None:
    """What the zip's layout says it is (None: neither kind, left to the loader to refuse)."""
    tails = {n.split("/", 1)[1] for n in names if "/" in n}
    if "archive_format" in tails:
        return TORCH_EXPORT
    if "data.pkl" in tails and any(t.startswith("code/") for t in tails):
        return TORCHSCRIPT
    return None


def window_from_metadata(meta: Mapping[str, Any]) -> HUWindow:
    w = meta["window"]
    return HUWindow(w["lo"], w["hi"], clamp=w["clamp"])
