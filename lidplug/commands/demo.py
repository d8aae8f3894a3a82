"""``lidplug demo``: the shipped demo run, trained, evaluated and reported."""

from __future__ import annotations

import argparse
from pathlib import Path

from lidplug.commands._common import user_errors
from lidplug.commands._run import read_run


def run(args: argparse.Namespace) -> int:
    import time

    from lidplug.pipeline import DEMO_RUN, format_summary, retrain_pretrained
    from lidplug.pipeline import run as run_pipeline

    if args.out is None:
        args.out = Path("lidplug-demo")
    if args.seed is not None:
        args.overrides = ["--data.seed", str(args.seed), "--train.seed", str(args.seed),
                          *args.overrides]
    if args.threads is not None:
        args.overrides += ["--threads", str(args.threads)]
    if args.quiet:
        args.overrides += ["--train.progress", "false"]
    spec, folder, out = read_run(args, config=DEMO_RUN)
    progress = spec.train.progress
    start = time.perf_counter()
    with user_errors():
        if args.from_scratch:
            retrain_pretrained(spec, out, progress=progress)
        _, evaluation = run_pipeline(spec, out, folder, progress=progress)
    print(format_summary(evaluation.metrics))
    print(f"\nwall time {time.perf_counter() - start:.0f} s; wrote {out / 'report.html'}, "
          f"{out / 'metrics.json'}, {out / 'run.json'} and each arm's denoiser.pt")
    return 0
