"""Experiments on the built-in phantoms: the ``lidplug demo`` pipeline and the results grid.

* :class:`ExperimentConfig` and :func:`preset` (``"tiny"``, ``"quick"``, ``"full"``).
* :func:`run_demo`: data, detector pretraining, baseline vs LIDnet, evaluation, report, export.
* :func:`build_detector`: the small Faster R-CNN the demo trains from scratch.
* ``python -m lidplug.experiments.results``: regenerates ``docs/RESULTS.md``.
"""

from lidplug.experiments.config import PRESETS, ExperimentConfig, preset
from lidplug.experiments.demo import ARMS, format_summary, run_demo
from lidplug.experiments.detector import build_detector

__all__ = ["ARMS", "PRESETS", "ExperimentConfig", "build_detector", "format_summary", "preset",
           "run_demo"]
