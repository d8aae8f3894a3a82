"""The metadata a lidplug export carries, and how to find it in an archive without loading it.

Both archive kinds (TorchScript ``.pt``, ``torch.export`` ``.pt2``) are zip files with one top
folder; extra files land in ``<top>/extra/<name>``. lidplug writes one, :data:`METADATA_FILE`, a
JSON object whose ``"format"`` is :data:`FORMAT`. Reading it needs only ``zipfile``, so a file can
be identified (and a wrong one rejected with a useful message) before torch deserialises it.
"""

from __future__ import annotations

import dataclasses
import json
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
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        entries = [n for n in names if n.split("/")[1:] == ["extra", METADATA_FILE]]
        if not entries:
            raise ValueError(f"lidplug.load: expected a lidplug export, got {str(path)!r}, which "
                             f"is {_describe_foreign(names)}")
        raw = archive.read(entries[0])
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"lidplug.load: {str(path)!r} has a corrupt {METADATA_FILE}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"lidplug.load: expected {METADATA_FILE} with format {FORMAT!r}, got "
                         f"{got!r} in {str(path)!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"lidplug.load: expected export format version <= {FORMAT_VERSION}, got "
                         f"{meta['format_version']} (written by lidplug "
                         f"{meta.get('lidplug_version')}); upgrade lidplug")
    return meta


def window_from_metadata(meta: Mapping[str, Any]) -> HUWindow:
    w = meta["window"]
    return HUWindow(w["lo"], w["hi"], clamp=w["clamp"])
