"""One run description, one pipeline: what ``lidplug train``, ``evaluate`` and ``demo`` run.

* :class:`RunSpec` and :func:`load_run`: the nested description (data, simulation, denoiser,
  detector, wrap, train, evaluate, arms), read from a TOML run file plus ``--key value``
  overrides (:mod:`lidplug.pipeline.spec`).
* :func:`train`, :func:`evaluate`, :func:`run`: the stages (:mod:`lidplug.pipeline.run`);
  :func:`retrain_pretrained` regenerates the shipped models a run starts from.
* :data:`DEMO_RUN`: the shipped run of ``lidplug demo`` (two arms: plain and LIDnet);
  :data:`SHIPPED_RUNS`: it and ``real-lung``, the same comparison on real chest CT.

Example::

    from lidplug.pipeline import load_run, run
    spec, folder = load_run("my_run.toml", ["--train.rounds", "2"])
    arms, evaluation = run(spec, "runs/my_run", folder)
    evaluation.metrics["lidnet_minus_baseline"]["lesion_contrast_recovery"]
"""

from pathlib import Path

from lidplug.metrics import judge
from lidplug.pipeline.build import build_model
from lidplug.pipeline.data import HeldOut, held_out, make_split
from lidplug.pipeline.evaluate import Evaluation
from lidplug.pipeline.outputs import format_summary, verdicts
from lidplug.pipeline.run import comparator, evaluate, retrain_pretrained, run, train
from lidplug.pipeline.runfile import dump_run, load_run
from lidplug.pipeline.spec import (
    ArmSpec,
    DataSpec,
    DenoiserSpec,
    DetectorSpec,
    EvaluateSpec,
    ModelSpec,
    ObserverSpec,
    RunSpec,
    SimulationSpec,
)
from lidplug.pipeline.train import ArmResult, checkpoint_of

_RUNS = Path(__file__).resolve().parent / "runs"
#: The run file of ``lidplug demo``.
DEMO_RUN = _RUNS / "demo.toml"
#: The shipped runs by name (``lidplug demo --run NAME``): the phantom demo, and the same
#: comparison on real chest CT with real nodules (needs the data: ``--data.root``).
SHIPPED_RUNS = {"demo": DEMO_RUN, "real-lung": _RUNS / "real-lung.toml"}

__all__ = [
    "DEMO_RUN",
    "SHIPPED_RUNS",
    "ArmResult",
    "ArmSpec",
    "DataSpec",
    "DenoiserSpec",
    "DetectorSpec",
    "EvaluateSpec",
    "Evaluation",
    "HeldOut",
    "ModelSpec",
    "ObserverSpec",
    "RunSpec",
    "SimulationSpec",
    "build_model",
    "checkpoint_of",
    "comparator",
    "dump_run",
    "evaluate",
    "format_summary",
    "held_out",
    "judge",
    "load_run",
    "make_split",
    "retrain_pretrained",
    "run",
    "train",
    "verdicts",
]
