"""Pretrained phantom models shipped inside the package: the demo's starting point.

The plug-in use of lidplug starts from an existing denoiser: the demo wraps a plain-pretrained
one, and scores every arm with detectors no arm ever trained. Both kinds are shipped here, small
enough to live in the wheel:

* ``redcnn``, ``dncnn``, ``unet``: the reference denoisers, pretrained with the pixel loss on the
  built-in phantoms at the demo's dose.
* ``detector-frcnn``: the detector that LIDnet's feedback starts from (Faster R-CNN), pretrained
  on normal-dose phantom slices.
* ``observer-frcnn``, ``observer-fcos``: the evaluation's observers, trained on normal-dose
  slices only (another seed, and another architecture), never updated by any arm.

Each entry of ``manifest.json`` names the class or builder and its arguments, the weights file
(float16 state dict, to keep the wheel small; loading casts it to the model's dtype) and the
file's SHA-256, checked at every load. Every model is the output of a run file in ``runs/``;
``python tools/pretrained.py NAME`` (from a source checkout) retrains it and rewrites its entry.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["RUNS", "WEIGHTS", "list_pretrained", "pretrained_info", "sha256_of"]

_HERE = Path(__file__).resolve().parent
WEIGHTS = _HERE / "weights"
RUNS = _HERE / "runs"
_MANIFEST = _HERE / "manifest.json"


@cache
def _manifest() -> dict[str, dict[str, Any]]:
    if not _MANIFEST.is_file():
        return {}
    return json.loads(_MANIFEST.read_text(encoding="utf-8"))


def list_pretrained() -> list[str]:
    """Names of the shipped models, sorted."""
    return sorted(_manifest())


def pretrained_info(name: str) -> dict[str, Any]:
    """A shipped model's manifest entry, with ``path`` (its weights file) and ``run`` (the run
    file that regenerates it) as absolute paths.

    Keys: ``role`` (``"denoiser"`` or ``"detector"``), ``class_path``, ``init_args``, ``file``,
    ``sha256``, ``run``, ``description`` and, where recorded, ``trained`` (how and how long).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    entries = _manifest()
    if not entries:
        raise ValueError(f"pretrained: {name!r} is named, but the shipped models' manifest "
                         f"{_MANIFEST} is missing or empty (a damaged install: reinstall "
                         "lidplug)")
    if name not in entries:
        raise ValueError(f"pretrained: expected one of {list_pretrained()}, got {name!r}")
    entry = dict(entries[name])
    entry["path"] = WEIGHTS / entry["file"]
    entry["run"] = RUNS / entry["run"]
    return entry


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
