"""``lidplug export``: a trained checkpoint's denoiser as TorchScript (.pt) or torch.export (.pt2)."""

from __future__ import annotations

import argparse

from lidplug.cli import CLIError
from lidplug.commands._common import load_config, user_errors


def run(args: argparse.Namespace) -> int:
    from lidplug.deploy import ExportError, export

    if not args.checkpoint.is_file():
        raise CLIError(f"--checkpoint {args.checkpoint}: expected a checkpoint file, got nothing "
                       "there")
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists (pass --overwrite to replace it)")
    rc = load_config(args.config)
    with user_errors():
        denoiser = rc.build_denoiser()
    try:
        with user_errors():
            meta = export(denoiser, args.output, checkpoint=args.checkpoint, dtype=args.dtype,
                          config={"denoiser": rc.denoiser, "wrap": rc.wrap, "train": rc.train},
                          verify=not args.no_verify)
    except ExportError as err:
        raise CLIError(f"cannot export: {err}".replace("\n", " ")) from None
    print(f"lidplug export: wrote {args.output} ({meta['archive']}, {meta['method']}, "
          f"{meta['dtype']})")
    return 0
