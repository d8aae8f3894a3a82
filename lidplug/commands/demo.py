"""``lidplug demo``: a shipped run (the phantom demo, or ``--run real-lung``), trained,
evaluated and reported."""

from __future__ import annotations

import argparse
from pathlib import Path

from lidplug.cli import CLIError
from lidplug.commands._common import user_errors
from lidplug.commands._run import read_run, run_folder, run_inputs

#: Where a shipped run that reads real data finds it when --data.root is not given.
DATA_ENV = "LIDPLUG_DATA"


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import time

    from lidplug.pipeline import SHIPPED_RUNS, format_summary, retrain_pretrained
    from lidplug.pipeline import run as run_pipeline
    from lidplug.pipeline.folder import clear_outputs

    name = args.run
    if args.out is None:
        args.out = Path("lidplug-demo" if name == "demo" else f"lidplug-{name}")
    root_given = any(o == "--data.root" or o.startswith("--data.root=") for o in args.overrides)
    if name != "demo" and not root_given:
        root = os.environ.get(DATA_ENV)
        if not root:
            raise CLIError(f"--run {name}: expected the real CT data folder as --data.root PATH "
                           f"(or in ${DATA_ENV}), got neither (see README: 'Real CT')")
        args.overrides = [*args.overrides, "--data.root", root]
    if args.seed is not None:
        args.overrides = ["--data.seed", str(args.seed), "--train.seed", str(args.seed),
                          *args.overrides]
    if args.threads is not None:
        args.overrides += ["--threads", str(args.threads)]
    if args.quiet:
        args.overrides += ["--train.progress", "false"]
    spec, folder, out = read_run(args, config=SHIPPED_RUNS[name])
    progress = spec.train.progress
    start = time.perf_counter()
    arms = [a.name for a in spec.arms]
    with run_folder(out, "demo", run_inputs(spec, folder, None), arms,
                    overwrite=args.overwrite), user_errors():
        # The demo trains every arm again: nothing of an earlier run stays beside the new one,
        # even when this one is interrupted.
        clear_outputs(out, arms, checkpoints=True)
        if args.from_scratch:
            retrain_pretrained(spec, out, progress=progress)
        _, evaluation = run_pipeline(spec, out, folder, progress=progress)
    print(format_summary(evaluation.metrics))
    print(f"\nwall time {time.perf_counter() - start:.0f} s; wrote {out / 'report.html'}, "
          f"{out / 'metrics.json'}, {out / 'run.json'} and each arm's denoiser.pt")
    if spec.evaluate.real_lesions:
        real = json.loads((out / "metrics-real-lesions.json").read_text())
        print("\nThe held-out patients' own tumours (never inserted):")
        print(format_summary(real))
        print(f"(also in {out / 'metrics-real-lesions.json'} and a section of the report)")
    return 0
