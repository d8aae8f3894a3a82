"""The description of a run: one nested dataclass, read from a TOML run file and command-line
overrides by jsonargparse.

A run is data, its low-dose simulation, a denoiser, a detector, the LIDnet options (``[wrap]``),
the training schedule (``[train]``), the evaluation and the arms to compare::

    threads = 2                       # CPU threads for torch (optional)

    [data]                            # phantom (built in), hybrid, deeplesion or paired_dicom
    kind = "phantom"
    size = 96
    train = 256                       # slices per split
    [data.lesions]
    diameter_mm = [10, 25]

    [simulation]
    dose = 0.1

    [denoiser]                        # a shipped pretrained model ...
    pretrained = "redcnn"
    # units = { mean = -542.546, std = 502.185 }   # a third-party model's own units (HU),
    # forward_kwargs = { sigma = 0.01 }           #   fixed forward arguments, identity start
    # identity_start = true                       #   (DenoiserSpec)
    [detector]                        # ... or any class or function by import path
    weights = "detector.pt"           # a state dict or a 'lidplug train' checkpoint
    sha256 = "..."                    # optional check of that file
    [detector.model]
    class_path = "lidplug.detectors.lesion_faster_rcnn"
    init_args = { image_size = 96 }

    [wrap]                            # lidplug.WrapConfig
    [train]                           # lidplug.TrainConfig
    [evaluate]                        # EvaluateSpec: observers, hit rule, window, bootstrap

    [[arms]]                          # each arm trains its own copy of the starting models
    name = "baseline"
    feedback = false                  # pixel loss only
    [[arms]]
    name = "lidnet"
    wrap = { roi_fraction = 0.5 }     # overrides of [wrap] / [train] for this arm

Everything here is data, checked as it is made: :mod:`lidplug.pipeline.runfile` reads it from
files (jsonargparse), :mod:`lidplug.pipeline.build` and :mod:`lidplug.pipeline.data` build models
and datasets from it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from lidplug.data import SOFT_TISSUE_HU, LesionSpec
from lidplug.models.adapt import HUUnits
from lidplug.training import TrainConfig
from lidplug.wrapper import WrapConfig

__all__ = ["DATA_KINDS", "DEFAULT_DENOISER", "DEFAULT_DETECTOR", "DEFAULT_OBSERVERS", "ArmSpec",
           "DataSpec", "DenoiserSpec", "DetectorSpec", "EvaluateSpec", "ModelSpec",
           "ObserverSpec", "RunSpec", "SimulationSpec"]

DATA_KINDS = ("phantom", "hybrid", "deeplesion", "paired_dicom")
HIT_RULES = ("center", "iou")
_MAX_SLICES = 10**6
#: The smallest pixel (mm) and dose a run may ask for.
MIN_SPACING_MM = 0.01
MIN_DOSE = 1e-6


def _check_count(owner: str, name: str, value: object, low: int = 1,
                 high: int = _MAX_SLICES) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{owner}.{name}: expected an int in [{low}, {high}], got {value!r}")


def _check_number(owner: str, name: str, value: object, low: float, high: float) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, int | float)
          and math.isfinite(value) and low <= value <= high)
    if not ok:
        raise ValueError(f"{owner}.{name}: expected a number in [{low:g}, {high:g}], "
                         f"got {value!r}")


@dataclass
class DataSpec:
    """Where the slices come from and how they split into train / validation / test.

    Attributes:
        kind: ``"phantom"`` (built-in synthetic slices, no download), ``"hybrid"`` (real CT
            with real nodules inserted, :class:`lidplug.data.HybridDataset`: its patients,
            nodules and insertion options go in ``options``), ``"deeplesion"`` (NIH
            DeepLesion, low dose simulated) or ``"paired_dicom"`` (AAPM-Mayo-style low/normal
            series).
        root: the dataset folder (hybrid: the data root its ``options.sources`` are relative
            to; deeplesion, paired_dicom; relative paths: to the run file). Needed by every
            kind but phantom, checked when the data is first read (so a shipped run file can
            leave it to ``--data.root``).
        validation_root, test_root: paired_dicom only, the held-out patients' folders
            (DeepLesion splits by its own Train_Val_Test column).
        options: extra keyword arguments of the dataset class (checked at build time).
        size, spacing: phantom slice side in pixels and pixel size in mm.
        train, validation, test: slices per split (phantom, hybrid); for real data at most this
            many (None: all).
        seed: seed of the phantom and hybrid streams; each split draws from its own stream, so
            the test slices are never those anything was trained or tuned on (hybrid splits are
            also by patient, fixed by ``options.sources``).
        lesions: phantom lesion sizes and contrasts.
        max_lesions, lesion_free_fraction: phantom lesions per slice, slices without lesions.
        cache: None keeps generated slices in memory; a folder caches them on disk (relative
            paths: to the run file).
    """

    kind: Literal["phantom", "hybrid", "deeplesion", "paired_dicom"] = "phantom"
    root: str | None = None
    validation_root: str | None = None
    test_root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    size: int = 96
    spacing: float = 3.0
    train: int | None = 512
    validation: int | None = 48
    test: int | None = 96
    seed: int = 0
    lesions: LesionSpec = field(default_factory=lambda: LesionSpec(
        diameter_mm=(10.0, 25.0), contrast_hu=(-50.0, 50.0), min_abs_contrast_hu=20.0))
    max_lesions: int = 3
    lesion_free_fraction: float = 0.2
    cache: str | None = None

    def __post_init__(self) -> None:
        _check_count("data", "size", self.size, 32, 4096)
        # A pixel below 10 um is no CT (the simulation's geometry fails on it, late).
        _check_number("data", "spacing", self.spacing, MIN_SPACING_MM, 100.0)
        for name in ("train", "validation", "test"):
            value = getattr(self, name)
            if value is not None or self.kind in ("phantom", "hybrid"):
                _check_count("data", name, value)
        _check_count("data", "seed", self.seed, 0, 2**62)
        _check_count("data", "max_lesions", self.max_lesions, 1, 64)
        _check_number("data", "lesion_free_fraction", self.lesion_free_fraction, 0.0, 1.0)
        if self.kind == "phantom" and self.options:
            # The built-in phantoms take their settings from [data] itself: options would be
            # ignored silently.
            raise ValueError(f"data.options: expected none for kind 'phantom' (its settings are "
                             f"keys of [data]: size, spacing, lesions, ...), got "
                             f"{sorted(self.options)}")
        if isinstance(self.lesions, dict):  # a table given through the Python API
            self.lesions = LesionSpec(**self.lesions)


@dataclass
class SimulationSpec:
    """The low-dose simulation (:func:`lidplug.simulation.simulate_low_dose`).

    Attributes:
        dose: dose of the low-dose input, a fraction of the normal dose.
        normal_dose: dose of the normal-dose reference (phantoms).
        i0: incident photons per detector bin at full dose. 1e5 gives the built-in 96-pixel
            phantoms (3-mm pixels) about 12 HU of noise in the liver at normal dose and 43 HU at
            dose 0.1 (measured against the noise-free reconstruction).
        views: projection views (None: the simulator's default).
        method: ``"full"`` simulates an ideal image (phantoms), ``"insert"`` adds the missing
            noise to a real normal-dose scan; None picks by data kind.
    """

    dose: float = 0.1
    normal_dose: float = 1.0
    i0: float = 1e5
    views: int | None = None
    method: Literal["full", "insert"] | None = None

    def __post_init__(self) -> None:
        _check_number("simulation", "dose", self.dose, MIN_DOSE, 1.0)
        _check_number("simulation", "normal_dose", self.normal_dose, self.dose, 1.0)
        _check_number("simulation", "i0", self.i0, 1.0, 1e12)
        if self.views is not None:
            _check_count("simulation", "views", self.views, 8, 100_000)


@dataclass
class ModelSpec:
    """A model to build: a shipped pretrained one, or any class or function by import path.

    In a run file::

        [denoiser]
        pretrained = "redcnn"                      # a shipped model, or:

        [detector]
        weights = "detector.pt"                    # optional; sha256 = "..." checks it
        [detector.model]
        class_path = "torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn"
        init_args = { num_classes = 2, weights_backbone = "null" }

    Attributes:
        pretrained: name of a shipped model (:func:`lidplug.zoo.list_pretrained`): its class,
            arguments and weights (checked by SHA-256) come from the package. Exclusive with
            ``model`` and ``weights``.
        model: ``{"class_path": "package.module.Name", "init_args": {...}}``, an
            ``nn.Module`` class or a function returning one (e.g. a torchvision builder).
            jsonargparse checks ``init_args`` against its signature (unknown names, types) when
            the spec is made, and fills in the defaults; the model is built later, by
            :func:`lidplug.pipeline.build_model`, after the run's generators are seeded.
            An argument may itself be such a table (``lidplug.models.Standardized`` around
            your model, say): it is checked the same way and built first.
        weights: a state dict file, a ``lidplug train`` checkpoint (its ``denoiser`` or
            ``detector`` entry, by role) or another project's checkpoint (the containers
            ``model_state_dict``, ``state_dict``, ``model``, ... and prefixes ``module.``, ...
            that :func:`lidplug.deploy.load_weights` lists), read with ``weights_only=True``;
            relative paths resolve against the run file. None: the model's own
            initialisation.
        weights_key: where the state dict is in ``weights`` (dotted for nested containers,
            ``"ema.state_dict"``), for a layout not recognised.
        strip_prefix: a prefix removed from every key of that state dict (e.g.
            ``"generator."``), for a prefix not recognised.
        sha256: expected SHA-256 of ``weights`` (hex); checked before loading when given.
        name: the model's name in reports (default: the shipped name, the run file's name,
            else the class name).
        run: a run file (relative paths: to this run file) that trains this model: its first
            arm's ``denoiser`` or ``detector`` (by role), trained on *this* run's data
            (``[data]`` and ``[simulation]``, except the sub-run's own ``data.seed`` and
            ``data.train``) before anything else, into ``<pretrained folder>/<file stem>/``
            (default ``<out>/pretrained``), and reused from there by later commands and runs
            with the same description (:mod:`lidplug.pipeline.pretrain`). Exclusive with
            ``pretrained``, ``model`` and ``weights``.

    An empty spec (neither ``pretrained``, ``model`` nor ``run``) stands for the run's default
    (see :class:`RunSpec`).
    """

    #: The spec's key in messages (``denoiser``, ``detector``); subclasses set their own.
    where: ClassVar[str] = "model"

    pretrained: str | None = None
    # A plain dict, not dict[str, Any]: jsonargparse would build nested class_path tables of
    # an Any-typed value when the file is read (before the run's generators are seeded).
    model: dict | None = None
    weights: str | None = None
    weights_key: str | None = None
    strip_prefix: str | None = None
    sha256: str | None = None
    name: str | None = None
    run: str | None = None

    def __post_init__(self) -> None:
        where = self.where
        if self.pretrained is not None and (self.model is not None
                                            or self.weights is not None):
            raise ValueError(f"{where}: expected either pretrained = NAME or a [model] "
                             f"class_path (+ weights), got both (pretrained="
                             f"{self.pretrained!r}, weights={self.weights!r})")
        if self.run is not None and (self.pretrained is not None or self.model is not None
                                     or self.weights is not None):
            raise ValueError(f"{where}: expected run = FILE alone (the model and its weights "
                             f"come from that run), got it with pretrained/model/weights "
                             f"(run={self.run!r})")
        if self.model is not None:
            self.model = _model_table(self.model, f"{where}.model")
        if self.weights is None and (self.weights_key is not None
                                     or self.strip_prefix is not None):
            raise ValueError(f"{where}: weights_key / strip_prefix given without weights")
        if self.sha256 is not None:
            text = self.sha256.lower()
            if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
                raise ValueError(f"{where}.sha256: expected 64 hex digits, got {self.sha256!r}")
            self.sha256 = text
            if self.weights is None:
                raise ValueError(f"{where}.sha256: given without weights to check")

    @property
    def is_set(self) -> bool:
        """False for an empty spec (no ``pretrained``, ``model`` or ``run``): the run's
        default."""
        return self.pretrained is not None or self.model is not None or self.run is not None

    @property
    def class_path(self) -> str | None:
        """The import path of ``model`` (None for a shipped model)."""
        return None if self.model is None else self.model["class_path"]

    def describe(self) -> str:
        """A short name for reports."""
        if self.name or self.pretrained:
            return self.name or self.pretrained
        if self.run is not None:
            return Path(self.run).stem
        return str(self.class_path).rpartition(".")[2]


@dataclass
class DenoiserSpec(ModelSpec):
    """The denoiser: a :class:`ModelSpec` plus what puts a third-party model in lidplug's
    units (:func:`lidplug.models.adapt_denoiser`)::

        [denoiser]
        units = { mean = -542.546, std = 502.185 }   # ldct-benchmark's (HU + 1024 - 481.454)
        forward_kwargs = { sigma = 0.05 }            #   / 502.185; or window = [lo, hi] in HU
        identity_start = true
        [denoiser.model]
        class_path = "ldctbench.methods.cnn10.network.Model"

    Attributes:
        units: the model's input units in HU (:class:`lidplug.models.HUUnits`): ``mean`` and
            ``std`` (it sees ``(HU - mean) / std``) or ``window = [lo, hi]`` (``lo..hi`` HU to
            0..1). None: it takes lidplug's window units.
        forward_kwargs: fixed keyword arguments of its ``forward`` besides the image (in its
            own units).
        identity_start: start it as the identity behind a zero-initialised gate
            (:class:`lidplug.models.IdentityStart`).
    """

    where: ClassVar[str] = "denoiser"

    # Read as a plain table and made HUUnits here, so that a bad one is reported by HUUnits
    # with its key (jsonargparse would report a dataclass's error inside a union's message).
    units: dict | HUUnits | None = None
    forward_kwargs: dict = field(default_factory=dict)
    identity_start: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.units is not None:
            try:
                self.units = HUUnits.of(self.units)
            except (TypeError, ValueError) as err:
                raise ValueError(f"denoiser.{err}") from None
        if not (isinstance(self.forward_kwargs, dict)
                and all(isinstance(k, str) for k in self.forward_kwargs)):
            raise ValueError(f"denoiser.forward_kwargs: expected a table of named arguments, got "
                             f"{self.forward_kwargs!r}")
        if (self.pretrained is not None or self.run is not None) and self.adaptation():
            raise ValueError("denoiser: units, forward_kwargs and identity_start go with a "
                             "[denoiser.model] class_path (a shipped model, or the one a run = "
                             "FILE trains, brings its own)")

    def adaptation(self) -> dict[str, Any]:
        """The set ones of ``units``, ``forward_kwargs``, ``identity_start`` (keyword
        arguments of :func:`lidplug.models.adapt_denoiser`)."""
        given = {"units": self.units, "forward_kwargs": self.forward_kwargs or None,
                 "identity_start": self.identity_start}
        return {k: v for k, v in given.items() if v}


@dataclass
class DetectorSpec(ModelSpec):
    """The feedback detector (a :class:`ModelSpec`; its messages say ``detector``)."""

    where: ClassVar[str] = "detector"


@dataclass
class ObserverSpec(ModelSpec):
    """An observer detector of the evaluation (a :class:`ModelSpec`)."""

    where: ClassVar[str] = "evaluate.observers"


def _is_table(value: Any) -> bool:
    """A nested ``{class_path, init_args}`` table (an argument that is itself a model)."""
    return isinstance(value, dict) and isinstance(value.get("class_path"), str)


def _model_table(value, where: str = "model") -> dict[str, Any]:
    """``{class_path, init_args}`` checked against the class's (or function's) signature by
    jsonargparse, with its defaults filled in; nested tables are checked the same way; nothing
    is built."""
    if not _is_table(value):
        raise ValueError(f"{where}: expected {{class_path = \"package.module.Name\", init_args "
                         f"= {{...}}}}, got {value!r}")
    unknown = sorted(set(value) - {"class_path", "init_args"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected class_path and init_args")
    class_path, args = value["class_path"], value.get("init_args") or {}
    if not isinstance(args, dict):
        raise ValueError(f"{where}.init_args: expected a table of arguments, got {args!r}")
    # Nested tables are checked first, by their own signature (so that a message names their
    # key), then once more as the outer argument's value (its annotation, e.g. nn.Module).
    nested = {k: _model_table(v, f"{where}.init_args.{k}") for k, v in args.items()
              if _is_table(v)}
    args = {**args, **nested}
    from jsonargparse import ArgumentParser

    from lidplug.pipeline.resolve import resolve_callable

    target = resolve_callable(class_path, where)
    parser = ArgumentParser(exit_on_error=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # fail_untyped=False: a user's model may leave arguments unannotated (any value).
            if isinstance(target, type):
                parser.add_class_arguments(target, nested_key=None, as_group=False,
                                           fail_untyped=False)
            else:
                parser.add_function_arguments(target, nested_key=None, as_group=False,
                                              fail_untyped=False)
            checked = parser.parse_object(args).clone(with_meta=False).as_dict()
        except Exception as err:  # jsonargparse's ArgumentError, or a signature it cannot read
            raise ValueError(f"{where}.init_args of {class_path}: "
                             f"{' '.join(str(err).split())}") from None
    return {"class_path": class_path, "init_args": {**checked, **nested}}


#: The shipped models a run uses where its file names none (defaults are filled in after
#: reading, so that a file naming a [denoiser.model] does not inherit ``pretrained``).
DEFAULT_DENOISER = "redcnn"
DEFAULT_DETECTOR = "detector-frcnn"
DEFAULT_OBSERVERS = ("observer-frcnn", "observer-fcos")


@dataclass
class EvaluateSpec:
    """How arms are scored (the protocol of EVALUATION.md, written once in
    :mod:`lidplug.pipeline.evaluate`).

    Attributes:
        observers: detectors trained on normal-dose slices only and never updated by an arm;
            their FROC is the headline detection score. Empty: the shipped observers
            (:data:`DEFAULT_OBSERVERS`).
        hit_rule: ``"center"`` (the detected box's centre inside the lesion box) or ``"iou"``
            (IoU >= 0.5).
        window: the display window ``(lo, hi)`` in HU of PSNR and SSIM (default soft tissue,
            W400/L40; data range = its width).
        bootstrap: paired bootstrap replicates over slices (95% percentile intervals).
        model_observer: score lesion detectability with the channelized Hotelling observer
            (phantoms and hybrid slices: each test slice is also simulated without its
            lesions).
        examples: held-out slices shown in the report.
        real_lesions: also score the held-out patients' own annotated lesions, never inserted
            anywhere (``data.kind = "hybrid"``), apart from the main test set: written to
            ``metrics-real-lesions.json`` and a section of the report.
    """

    observers: list[ObserverSpec] = field(default_factory=list)
    hit_rule: Literal["center", "iou"] = "center"
    window: tuple[float, float] = SOFT_TISSUE_HU
    bootstrap: int = 1000
    model_observer: bool = True
    examples: int = 4
    real_lesions: bool = False

    def __post_init__(self) -> None:
        # Defaults are resolved on use (observer_specs), never filled in here: jsonargparse
        # builds the default instance first and merges a run file's lists into it by index.
        for i, obs in enumerate(self.observers):
            if not obs.is_set:
                raise ValueError(f"evaluate.observers[{i}]: expected pretrained = NAME or a "
                                 "model table, got neither")
        _check_count("evaluate", "bootstrap", self.bootstrap, 10, 100_000)
        _check_count("evaluate", "examples", self.examples, 0, 64)
        lo, hi = self.window
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"evaluate.window: expected (lo, hi) HU with lo < hi, got "
                             f"{self.window!r}")
        self.window = (float(lo), float(hi))

    def observer_specs(self) -> list[ModelSpec]:
        """The observers, or the shipped ones when none are named."""
        return list(self.observers) or [ObserverSpec(pretrained=n) for n in DEFAULT_OBSERVERS]


@dataclass
class ArmSpec:
    """One arm of the comparison: a copy of the starting models, trained its own way.

    Attributes:
        name: the arm's name (a folder of the run's output, a key of ``metrics.json``).
        feedback: False for the plain arm: the pixel loss only, no detector steps (the same
            number of denoiser updates as every other arm).
        wrap: this arm's overrides of ``[wrap]`` (:class:`lidplug.WrapConfig` fields).
        train: this arm's overrides of ``[train]`` (:class:`lidplug.TrainConfig` fields).
    """

    name: str
    feedback: bool = True
    wrap: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (self.name.isidentifier() and self.name not in _RESERVED_ARM_NAMES
                and DIFFERENCE not in self.name):
            raise ValueError(f"arms.name: expected an identifier other than "
                             f"{sorted(_RESERVED_ARM_NAMES)} and without {DIFFERENCE!r} (the "
                             f"names of paired differences, '<arm>{DIFFERENCE}<plain arm>'), got "
                             f"{self.name!r}")


#: Keys of metrics.json beside the arms' (image sets, protocol), and the run folder's
#: pretraining folder: no arm may take them.
_RESERVED_ARM_NAMES = {"low_dose", "normal_dose", "noise_free", "protocol", "headroom",
                       "pretrained"}
#: What joins the names of a paired difference in metrics.json: reserved in arm names, so a
#: difference never lands on an arm's key.
DIFFERENCE = "_minus_"


def _default_arms() -> list[ArmSpec]:
    return [ArmSpec("baseline", feedback=False), ArmSpec("lidnet")]


@dataclass
class RunSpec:
    """A whole run (see the module docstring for the file format).

    Attributes:
        data, simulation, denoiser, detector, wrap, train, evaluate, arms: the sections. An
            empty ``denoiser`` / ``detector`` is the shipped :data:`DEFAULT_DENOISER` /
            :data:`DEFAULT_DETECTOR`.
        threads: CPU threads for torch (None: torch's default, one per core).
    """

    data: DataSpec = field(default_factory=DataSpec)
    simulation: SimulationSpec = field(default_factory=SimulationSpec)
    denoiser: DenoiserSpec = field(default_factory=DenoiserSpec)
    detector: DetectorSpec = field(default_factory=DetectorSpec)
    wrap: WrapConfig = field(default_factory=WrapConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateSpec = field(default_factory=EvaluateSpec)
    arms: list[ArmSpec] = field(default_factory=_default_arms)
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None:
            _check_count("run", "threads", self.threads, 1, 1024)
        names = [a.name for a in self.arms]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"arms: expected at least one arm with distinct names, got {names}")
        for arm in self.arms:  # an override table is checked when the file is read
            self.arm_wrap(arm)
            self.arm_train(arm)

    def model_spec(self, role: str) -> ModelSpec:
        """``denoiser`` or ``detector``, or the shipped default when the file names none."""
        spec = getattr(self, role)
        if spec.is_set:
            return spec
        if role == "denoiser":
            return DenoiserSpec(pretrained=DEFAULT_DENOISER)
        return DetectorSpec(pretrained=DEFAULT_DETECTOR)

    def arm(self, name: str) -> ArmSpec:
        """The arm called ``name``."""
        for a in self.arms:
            if a.name == name:
                return a
        raise ValueError(f"arm: expected one of {[a.name for a in self.arms]}, got {name!r}")

    def arm_wrap(self, arm: ArmSpec) -> WrapConfig:
        """``[wrap]`` with the arm's overrides; a plain arm has no feedback terms."""
        changes = dict(arm.wrap)
        if not arm.feedback:
            changes.update(det_weight=0.0, roi_weight=0.0, balance=False)
        return _replace(self.wrap, changes, f"arms[{arm.name}].wrap")

    def arm_train(self, arm: ArmSpec) -> TrainConfig:
        """``[train]`` with the arm's overrides; a plain arm takes no detector steps."""
        changes = dict(arm.train)
        if not arm.feedback:
            changes["mode"] = "frozen"
        return _replace(self.train, changes, f"arms[{arm.name}].train")


def _replace(config, changes: dict[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
