"""Fixtures of the LCD tests: the FDA toolbox's sample, skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The shared data folder: $LIDPLUG_DATA, else ``../shared/data`` next to the repository.
DATA = Path(os.environ.get("LIDPLUG_DATA") or Path(__file__).resolve().parents[3] / "shared"
            / "data")


@pytest.fixture(scope="session")
def lcd_sample() -> Path:
    """The toolbox's sample (fbp and DL_denoised at 10, 55 and 100% dose, 10 + 10 images)."""
    root = DATA / "fda-lcd-ct"
    if not (root / "fbp" / "ground_truth.mhd").is_file():
        pytest.skip(f"the FDA LCD-CT sample is not at {root} (set LIDPLUG_DATA to the folder "
                    "that holds fda-lcd-ct/)")
    return root

