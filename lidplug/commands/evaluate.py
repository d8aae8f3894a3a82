"""``lidplug evaluate --config FILE``: the trained arms of ``--out`` on held-out slices."""

from __future__ import annotations

import argparse

from lidplug.commands._common import user_errors
from lidplug.commands._run import read_run, run_folder, run_inputs


def run(args: argparse.Namespace) -> int:
    from lidplug.pipeline import evaluate, format_summary
    from lidplug.pipeline.outputs import split_file

    spec, folder, out = read_run(args)
    with run_folder(out, "evaluate", run_inputs(spec, folder, args.config),
                    [a.name for a in spec.arms], training=False), user_errors():
        evaluation = evaluate(spec, out, folder, split=args.split, progress=spec.train.progress)
    print(format_summary(evaluation.metrics))
    metrics, report = (out / split_file(name, args.split) for name in ("metrics.json",
                                                                     "report.html"))
    print(f"\nlidplug evaluate ({args.split} split): wrote {metrics} and {report}")
    return 0
