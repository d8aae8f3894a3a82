"""Run files for ``lidplug train`` / ``evaluate`` / ``export``: TOML (or JSON) to the objects.

A run file has these tables (only ``[data]`` is required; see ``docs/CLI.md`` for an example)::

    [data]                 # the training set
    kind = "phantom"       # "phantom", "deeplesion" or "paired_dicom"
    root = "..."           # deeplesion / paired_dicom folder (relative paths: to the run file)
    options = { ... }      # keyword arguments of the dataset class (e.g. dose, split, size)

    [evaluate]             # the held-out set for ``lidplug evaluate`` (default: [data] with
    options = { ... }      # split="test" for DeepLesion, seed + 1 for phantoms)

    [denoiser]             # name of lidplug.models (create_denoiser) and its options
    name = "redcnn"
    options = { channels = 32 }

    [detector]             # "demo": lidplug.experiments.build_detector; or the name of a
    name = "demo"          # torchvision.models.detection builder (weights=None by default)
    options = { image_size = 256 }

    [wrap]                 # lidplug.WrapConfig fields (det_weight, roi_weight, ...)
    [train]                # lidplug.TrainConfig fields (rounds, batch_size, lr_denoiser, ...)

Datasets yield HU; the run applies the models' window (:class:`lidplug.data.HUWindow`). Every
error says which table and key was wrong.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

__all__ = ["DATA_KINDS", "RunConfig", "load_run_config"]

DATA_KINDS = ("phantom", "deeplesion", "paired_dicom")
_TABLES = ("data", "evaluate", "denoiser", "detector", "wrap", "train")


@dataclass
class RunConfig:
    """A parsed run file (see the module docstring).

    Attributes:
        path: the file it was read from (relative data paths resolve against its folder).
        data, evaluate, denoiser, detector, wrap, train: the tables, as dicts.
    """

    path: Path
    data: dict[str, Any]
    evaluate: dict[str, Any] = field(default_factory=dict)
    denoiser: dict[str, Any] = field(default_factory=dict)
    detector: dict[str, Any] = field(default_factory=dict)
    wrap: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    # ---- data ------------------------------------------------------------------------------

    def dataset(self, held_out: bool = False) -> Dataset:
        """The training set, or the held-out one (``[evaluate]``), in the models' window."""
        from lidplug.data import (
            DeepLesionDataset,
            HUWindow,
            MapImages,
            PairedDicomDataset,
            PhantomDataset,
        )

        kind = self.data.get("kind", "phantom")
        if kind not in DATA_KINDS:
            raise ValueError(f"[data] kind: expected one of {list(DATA_KINDS)}, got {kind!r}")
        options = _table(self.data, "options", "[data]")
        if held_out:
            options = {**options, **_held_out_defaults(kind, options),
                       **_table(self.evaluate, "options", "[evaluate]")}
        options["transform"] = MapImages(HUWindow())
        if kind == "phantom":
            return _build(PhantomDataset, options, "[data] options")
        root = self.data.get("root")
        if not isinstance(root, str):
            raise ValueError(f"[data] root: expected the dataset folder (a string) for kind "
                             f"{kind!r}, got {root!r}")
        root_path = (self.path.parent / root) if not Path(root).is_absolute() else Path(root)
        if not root_path.is_dir():
            raise ValueError(f"[data] root: expected a folder, got {str(root_path)!r} (missing)")
        cls = DeepLesionDataset if kind == "deeplesion" else PairedDicomDataset
        return _build(cls, {"root": root_path, **options}, "[data] options")

    # ---- models ----------------------------------------------------------------------------

    def build_denoiser(self) -> nn.Module:
        """The ``[denoiser]`` model (default RED-CNN)."""
        from lidplug.models import create_denoiser

        name = self.denoiser.get("name", "redcnn")
        options = _table(self.denoiser, "options", "[denoiser]")
        try:
            return create_denoiser(name, **options)
        except TypeError as err:
            raise ValueError(f"[denoiser] options: {err}") from None

    def build_detector(self) -> nn.Module:
        """The ``[detector]`` model (default the demo's small Faster R-CNN)."""
        name = self.detector.get("name", "demo")
        options = _table(self.detector, "options", "[detector]")
        if name == "demo":
            from lidplug.experiments.detector import build_detector

            options.setdefault("image_size", 256)
            return _build(build_detector, options, "[detector] options")
        from torchvision.models import detection

        builder = getattr(detection, name, None)
        if not callable(builder) or name.startswith("_") or name[0].isupper():
            raise ValueError(f"[detector] name: expected 'demo' or a torchvision.models.detection "
                             f"builder such as 'fasterrcnn_mobilenet_v3_large_fpn', got {name!r}")
        options = {"weights": None, "weights_backbone": None, "num_classes": 2, **options}
        return _build(builder, options, "[detector] options")

    def wrap_options(self) -> dict[str, Any]:
        """``[wrap]`` as keyword arguments of :func:`lidplug.wrap` (checked)."""
        from lidplug.wrapper import WrapConfig

        _check_fields(WrapConfig, self.wrap, "[wrap]")
        return dict(self.wrap)

    def train_config(self, out_dir: str | os.PathLike | None = None):
        """``[train]`` as a :class:`lidplug.TrainConfig`, with ``out_dir`` set."""
        from lidplug.training import TrainConfig

        _check_fields(TrainConfig, self.train, "[train]")
        options = dict(self.train)
        if out_dir is not None:
            options["out_dir"] = str(out_dir)
        try:
            return TrainConfig(**options)
        except ValueError as err:
            raise ValueError(f"[train] {err}") from None


def _held_out_defaults(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    if kind == "phantom":
        return {"seed": int(options.get("seed", 0)) + 1, "length": 64}
    if kind == "deeplesion":
        return {"split": "test"}
    return {}


def _table(section: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = section.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{where} {key}: expected a table of options, got {value!r}")
    return dict(value)


def _build(factory, options: dict[str, Any], where: str):
    try:
        return factory(**options)
    except TypeError as err:  # unknown keyword: name the table
        raise ValueError(f"{where}: {err}") from None


def _check_fields(cls, table: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read a ``.toml`` (Python 3.11+) or ``.json`` run file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a syntax error, an unknown table, or a table that is not a table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a run file (.toml or .json), got nothing there")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: expected JSON, got a syntax error: {err}") from None
    elif path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ValueError(f"{path}: TOML run files need Python 3.11+ (tomllib); write the "
                             "same tables as JSON instead") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: expected TOML, got a syntax error: {err}") from None
    else:
        raise ValueError(f"{path}: expected a .toml or .json run file, got {path.suffix!r}")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a table of tables, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_TABLES))
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {unknown}; expected some of {list(_TABLES)}")
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise ValueError(f"{path}: [{name}] expected a table, got {value!r}")
    if "data" not in raw:
        raise ValueError(f"{path}: expected a [data] table (kind = \"phantom\" at least)")
    return RunConfig(path=path, **raw)
