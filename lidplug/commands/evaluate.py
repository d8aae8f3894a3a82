"""``lidplug evaluate --config FILE``: the trained arms of ``--out`` on held-out slices."""

from __future__ import annotations

import argparse

from lidplug.commands._common import user_errors
from lidplug.commands._run import read_run


def run(args: argparse.Namespace) -> int:
    from lidplug.pipeline import evaluate, format_summary

    spec, folder, out = read_run(args)
    with user_errors():
        evaluation = evaluate(spec, out, folder, split=args.split, progress=spec.train.progress)
    print(format_summary(evaluation.metrics))
    print(f"\nlidplug evaluate: wrote {out / 'metrics.json'} and {out / 'report.html'}")
    return 0
