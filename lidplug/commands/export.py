"""``lidplug export``: a trained checkpoint's denoiser as TorchScript (.pt) or torch.export (.pt2)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from lidplug.cli import CLIError
from lidplug.commands._common import user_errors
from lidplug.commands._run import run_inputs


def _run_folder_of(path: Path) -> Path | None:
    """The run folder a file belongs to (``DIR/ARM/latest.pt`` -> ``DIR``), if it is in one."""
    from lidplug.pipeline.folder import LOCK_FILE, RUN_FILE

    for folder in (path.parent, path.parent.parent):
        if (folder / RUN_FILE).is_file() or (folder / LOCK_FILE).is_file():
            return folder
    return None


def run(args: argparse.Namespace) -> int:
    from lidplug.deploy import ExportError, export
    from lidplug.pipeline import build_model, dump_run, load_run
    from lidplug.pipeline.folder import check_inputs, locked

    if not args.checkpoint.is_file():
        raise CLIError(f"--checkpoint {args.checkpoint}: expected a checkpoint file, got nothing "
                       "there")
    with user_errors():
        spec, folder = load_run(args.config, args.overrides)
        # Never over an input, even with --overwrite (the checkpoint, the run file, weights).
        check_inputs({**run_inputs(spec, folder, args.config), "--checkpoint": args.checkpoint},
                     output=args.output)
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists (pass --overwrite to replace it)")
    with contextlib.ExitStack() as stack:
        with user_errors():  # the run folders read from and written into: one command at a time
            folders = {f.resolve(): f for f in map(_run_folder_of, (args.checkpoint, args.output))
                       if f is not None}
            for run_folder in folders.values():
                stack.enter_context(locked(run_folder, "export"))
            denoiser = build_model(spec.model_spec("denoiser"), "denoiser", folder, weights=False)
        try:
            with user_errors():
                meta = export(denoiser, args.output, checkpoint=args.checkpoint,
                              dtype=args.dtype, config={"run": dump_run(spec)},
                              verify=not args.no_verify)
        except ExportError as err:
            raise CLIError(f"cannot export: {err}".replace("\n", " ")) from None
    print(f"lidplug export: wrote {args.output} ({meta['archive']}, {meta['method']}, "
          f"{meta['dtype']})")
    return 0
