"""``lidplug train --config FILE``: every arm of the run, written into ``--out``."""

from __future__ import annotations

import argparse

from lidplug.cli import CLIError
from lidplug.commands._common import user_errors
from lidplug.commands._run import read_run, run_folder, run_inputs


def run(args: argparse.Namespace) -> int:
    from lidplug.pipeline import checkpoint_of, train
    from lidplug.pipeline.folder import clear_outputs

    spec, folder, out = read_run(args)
    arms = [a.name for a in spec.arms]
    with run_folder(out, "train", run_inputs(spec, folder, args.config), arms,
                    overwrite=args.overwrite):
        done = [a for a in arms if checkpoint_of(out, a).exists()]
        if done and not (args.resume or args.overwrite):
            raise CLIError(f"{out}: already holds checkpoints of {done} (pass --resume to "
                           "continue them or --overwrite to start again)")
        with user_errors():
            # Evaluations of the checkpoints about to change go; starting again, the arms too.
            clear_outputs(out, arms, checkpoints=not args.resume)
            results = train(spec, out, folder, resume=bool(args.resume),
                            progress=spec.train.progress)
    for name, arm in results.items():
        print(f"lidplug train: arm {name!r}: {len(arm.history)} steps in {arm.seconds:.0f} s; "
              f"{arm.folder}")
    return 0
