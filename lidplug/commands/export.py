"""``lidplug export``: a trained checkpoint's denoiser as TorchScript (.pt) or torch.export (.pt2)."""

from __future__ import annotations

import argparse

from lidplug.cli import CLIError
from lidplug.commands._common import user_errors


def run(args: argparse.Namespace) -> int:
    from lidplug.deploy import ExportError, export
    from lidplug.pipeline import build_model, dump_run, load_run

    if not args.checkpoint.is_file():
        raise CLIError(f"--checkpoint {args.checkpoint}: expected a checkpoint file, got nothing "
                       "there")
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists (pass --overwrite to replace it)")
    with user_errors():
        spec, folder = load_run(args.config, args.overrides)
        denoiser = build_model(spec.model_spec("denoiser"), "denoiser", folder, weights=False)
    try:
        with user_errors():
            meta = export(denoiser, args.output, checkpoint=args.checkpoint, dtype=args.dtype,
                          config={"run": dump_run(spec)}, verify=not args.no_verify)
    except ExportError as err:
        raise CLIError(f"cannot export: {err}".replace("\n", " ")) from None
    print(f"lidplug export: wrote {args.output} ({meta['archive']}, {meta['method']}, "
          f"{meta['dtype']})")
    return 0
