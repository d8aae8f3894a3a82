"""``lidplug train --config FILE``: every arm of the run, written into ``--out``."""

from __future__ import annotations

import argparse

from lidplug.cli import CLIError
from lidplug.commands._common import user_errors
from lidplug.commands._run import read_run


def run(args: argparse.Namespace) -> int:
    from lidplug.pipeline import checkpoint_of, train

    spec, folder, out = read_run(args)
    done = [a.name for a in spec.arms if checkpoint_of(out, a.name).exists()]
    if done and not (args.resume or args.overwrite):
        raise CLIError(f"{out}: already holds checkpoints of {done} (pass --resume to continue "
                       "them or --overwrite to start again)")
    with user_errors():
        arms = train(spec, out, folder, resume=bool(args.resume), progress=spec.train.progress)
    for name, arm in arms.items():
        print(f"lidplug train: arm {name!r}: {len(arm.history)} steps in {arm.seconds:.0f} s; "
              f"{arm.folder}")
    return 0
