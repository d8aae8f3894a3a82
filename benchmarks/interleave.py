"""Round-robin timing for shared machines: one call of each entry per round, so every entry sees
the same background load; pytest-benchmark times one entry after another, and on a busy 2-core VM
the load changes between them. Used by the benchmark files' ``__main__``."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_times(runners: dict[str, Callable[[], object]], rounds: int, warmup: int = 3,
                      sync: Callable[[], None] | None = None,
                      clocks: dict[str, Callable[[], float]] | None = None
                      ) -> dict[str, dict[str, list[float]]]:
    """Seconds of each runner's call in each of ``rounds`` rounds after ``warmup`` rounds, by
    clock: ``clocks`` maps a name to a clock (default: wall time, ``{"wall": perf_counter}``).
    With one thread, ``time.thread_time`` leaves out the time other processes hold the core."""
    clocks = clocks or {"wall": time.perf_counter}
    times = {c: {name: [] for name in runners} for c in clocks}
    for r in range(warmup + rounds):
        for name, run in runners.items():
            start = {c: clock() for c, clock in clocks.items()}
            run()
            if sync is not None:
                sync()
            if r >= warmup:
                for c, clock in clocks.items():
                    times[c][name].append(clock() - start[c])
    return times


def interleaved_medians(runners: dict[str, Callable[[], object]], rounds: int, warmup: int = 3,
                        sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Median seconds per call of each runner over ``rounds`` rounds after ``warmup`` rounds."""
    times = interleaved_times(runners, rounds, warmup, sync)["wall"]
    return {name: statistics.median(ts) for name, ts in times.items()}


def print_ratios(title: str, medians: dict[str, float], base: str) -> None:
    """One line per entry: median and ``base / entry`` (above 1: faster than ``base``)."""
    print(title)
    for name, median in medians.items():
        print(f"  {name:12s} {median * 1e3:9.2f} ms   {base} / this = {medians[base] / median:.2f}")
