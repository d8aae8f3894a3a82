"""Training log: a CSV of every term at every logged step, optional TensorBoard, a progress bar.

The CSV is long-format (``step, phase, term, value``): the terms differ between phases and
detectors (each detector loss is its own term), and a long table holds them all without a fixed
header (``pandas.read_csv(...).pivot(index="step", columns="term")`` widens it). Only rank 0 logs.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tqdm.auto import tqdm

__all__ = ["TrainLogger"]

_FIELDS = ("step", "phase", "term", "value")


class TrainLogger:
    """Writes log records; inert (but still callable) on ranks other than 0.

    Args:
        out_dir: folder for ``log.csv`` and ``tensorboard/``; None writes no files.
        total: steps in the run (for the progress bar).
        start: steps already done (a resumed run starts later); CSV rows of later steps, left by
            an interrupted run, are dropped so the log has each step once. Records are numbered
            by steps done, 1 for the first.
        enabled: False on ranks other than 0.
        tensorboard: also write TensorBoard events.
        progress: show a progress bar.
    """

    def __init__(self, out_dir: str | None, *, total: int, start: int = 0, enabled: bool = True,
                 tensorboard: bool = False, progress: bool = True) -> None:
        self.enabled = enabled
        self._csv = self._tb = self._bar = None
        if not enabled:
            return
        if out_dir is not None:
            path = Path(out_dir) / "log.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = self._rows_before(path, start)
            self._csv_file = open(path, "w", newline="")  # noqa: SIM115 (closed in close())
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(_FIELDS)
            self._csv.writerows(kept)
            if tensorboard:
                self._tb = self._tensorboard(Path(out_dir) / "tensorboard", start)
        elif tensorboard:
            raise ValueError("tensorboard=True needs out_dir: expected a folder for the events")
        if progress:
            self._bar = tqdm(total=total, initial=start, desc="lidplug", dynamic_ncols=True)

    @staticmethod
    def _rows_before(path: Path, start: int) -> list[list[str]]:
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        return [r for r in rows if r and int(r[0]) <= start]

    @staticmethod
    def _tensorboard(folder: Path, start: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError("tensorboard=True: expected the tensorboard package "
                              "(pip install tensorboard)") from err
        return SummaryWriter(str(folder), purge_step=start + 1)

    def log(self, step: int, phase: str, terms: dict[str, float]) -> None:
        """Record the terms of one step."""
        if not self.enabled:
            return
        if self._csv is not None:
            self._csv.writerows([step, phase, k, f"{v:.8g}"] for k, v in terms.items())
            self._csv_file.flush()
        if self._tb is not None:
            for k, v in terms.items():
                self._tb.add_scalar(k, v, step)

    def advance(self, phase: str, terms: dict[str, float] | None = None) -> None:
        """Move the progress bar by one step, showing the latest terms."""
        if self._bar is None:
            return
        if terms:
            shown = {k: f"{v:.3g}" for k, v in terms.items() if "/" not in k}
            self._bar.set_postfix({"phase": phase, **shown}, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._csv is not None:
            self._csv_file.close()
        self._csv = self._tb = self._bar = None
