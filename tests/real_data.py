"""Where the tests find the real CT samples (never part of the repository): ``$LIDPLUG_DATA``,
else ``../shared/data`` beside the checkout. Tests that need them skip with this reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ENV = "LIDPLUG_DATA"
_BESIDE = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_root() -> Path | None:
    """The real-data folder, or None when neither place holds it."""
    given = os.environ.get(DATA_ENV)
    root = Path(given) if given else _BESIDE
    return root if root.is_dir() else None


def need(*parts: str) -> Path:
    """``<data root>/<parts>``, or skip the test saying what is missing and where it looked."""
    root = data_root()
    where = os.environ.get(DATA_ENV) or str(_BESIDE)
    if root is None or not root.joinpath(*parts).exists():
        pytest.skip(f"real CT sample {'/'.join(parts)} not found under {where} (set "
                    f"${DATA_ENV} to the folder described in the README to run this test)")
    return root.joinpath(*parts)
