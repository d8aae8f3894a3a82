"""``lidplug train --config FILE``: collaborative training on the run file's data, then export."""

from __future__ import annotations

import argparse
import json
import shutil

from lidplug.cli import CLIError
from lidplug.commands._common import check_device, load_config, user_errors


def run(args: argparse.Namespace) -> int:
    from lidplug.deploy import export
    from lidplug.training import CHECKPOINT_NAME, CollaborativeTrainer
    from lidplug.wrapper import wrap

    rc = load_config(args.config)
    out = args.out if args.out is not None else args.config.with_suffix("")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: expected a folder, got an existing file")
    if (out / CHECKPOINT_NAME).exists() and not (args.resume or args.overwrite):
        raise CLIError(f"{out}: already holds a checkpoint (pass --resume to continue it or "
                       "--overwrite to start again)")
    with user_errors():
        tc = rc.train_config(out)
        if args.device is not None:
            tc.device = check_device(args.device)
        dataset = rc.dataset()
        model = wrap(rc.build_denoiser(), rc.build_detector(), **rc.wrap_options())
        if len(dataset) < tc.batch_size:
            raise ValueError(f"[data]: expected at least batch_size={tc.batch_size} samples, got "
                             f"{len(dataset)}")
        trainer = CollaborativeTrainer(model, dataset, tc, resume=bool(args.resume))
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.config, out / f"run{args.config.suffix}")
    trainer.fit()
    model.cpu()
    with user_errors("export"):
        export(model, out / "denoiser.pt")
    (out / "history.json").write_text(json.dumps(trainer.history) + "\n")
    print(f"lidplug train: {trainer.step} steps done; checkpoint {out / CHECKPOINT_NAME}, "
          f"TorchScript denoiser {out / 'denoiser.pt'}")
    return 0
