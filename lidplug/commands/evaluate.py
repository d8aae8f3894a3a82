"""``lidplug evaluate --config FILE``: the trained arms of ``--out`` on held-out slices."""

from __future__ import annotations

import argparse

from lidplug.commands._common import user_errors
from lidplug.commands._run import read_run, run_folder, run_inputs


def run(args: argparse.Namespace) -> int:
    from lidplug.pipeline import evaluate, format_summary

    spec, folder, out = read_run(args)
    with run_folder(out, "evaluate", run_inputs(spec, folder, args.config),
                    [a.name for a in spec.arms], training=False), user_errors():
        evaluation = evaluate(spec, out, folder, split=args.split, progress=spec.train.progress)
    print(format_summary(evaluation.metrics))
    print(f"\nlidplug evaluate: wrote {out / 'metrics.json'} and {out / 'report.html'}")
    return 0
