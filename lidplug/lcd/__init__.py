"""The FDA's low-contrast detectability (LCD) test for CT denoisers, inside lidplug.

The reference method for asking whether a denoiser keeps low-contrast lesions detectable is the
FDA's LCD-CT toolbox (Regulatory Science Tool RST24MD08.01, github.com/DIDSR/LCD_CT, CC0): the
MITA-LCD phantom (CCT189) scanned at several doses, reconstructed by each method under test, and
scored per disc and dose by a Laguerre-Gauss channelized Hotelling observer (AUC and ``d'``).
This package reads and writes its folder layout and follows its protocol; ``docs/LCD.md`` shows
the agreement with the toolbox's own Python code.

* :mod:`~lidplug.lcd.layout`: the folders (``<recon>/dose_XXX/signal_{present,absent}``).
* :mod:`~lidplug.lcd.discs`: :func:`find_discs` in the ground truth, measured as the toolbox does.
* :mod:`~lidplug.lcd.score`: :func:`score_folder` with an :class:`LCDProtocol` (channels, widths,
  ROI, readers, split: the toolbox's defaults).
* :mod:`~lidplug.lcd.output`: :func:`write_results` (``lcd.json``, ``lcd.csv``, ``lcd.html``).
* :mod:`~lidplug.lcd.phantom`: :func:`cct189` and :func:`write_phantom` (the phantom scanned by
  :mod:`lidplug.simulation`, FBP and denoised sets in the layout).

Command line: ``lidplug lcd score ROOT`` and ``lidplug lcd phantom OUT`` (``docs/CLI.md``).
"""

from lidplug.lcd.discs import Disc, find_discs
from lidplug.lcd.layout import DoseFolder, ReconFolder, find_recons
from lidplug.lcd.output import write_results
from lidplug.lcd.phantom import CCT189_DISCS, cct189, write_phantom
from lidplug.lcd.score import LCDProtocol, LCDResults, score_discs, score_folder

__all__ = ["CCT189_DISCS", "Disc", "DoseFolder", "LCDProtocol", "LCDResults", "ReconFolder",
           "cct189", "find_discs", "find_recons", "score_discs", "score_folder",
           "write_phantom", "write_results"]
