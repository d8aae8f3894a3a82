"""``lidplug denoise IN OUT --model MODEL``: a DICOM file or series through an exported model."""

from __future__ import annotations

import argparse
import warnings

from lidplug.cli import CLIError
from lidplug.commands._common import check_device, user_errors

_BATCH = 4


def run(args: argparse.Namespace) -> int:
    import torch

    from lidplug.cli import _check_output
    from lidplug.deploy import load
    from lidplug.io import read_dicom, write_dicom

    if not args.input.exists():
        raise CLIError(f"{args.input}: expected a DICOM file or series folder, got nothing there")
    if not args.model.is_file():
        raise CLIError(f"--model {args.model}: expected a file written by 'lidplug export' or "
                       "'lidplug train', got nothing there")
    _check_output(args.input, args.output, args.overwrite)
    device = check_device(args.device)
    with user_errors(f"--model {args.model}"):
        model = load(args.model, map_location=device)
    with user_errors(f"cannot read {args.input}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are listed below instead
        image, meta = read_dicom(args.input)
    if image.dim() == 3:  # [N, H, W] slices -> [N, 1, H, W], the model's layout
        image = image.unsqueeze(1)
    with torch.no_grad():
        batches = [model.denoise_hu(image[k:k + _BATCH].to(device)).cpu()
                   for k in range(0, image.shape[0], _BATCH)]
    name = model.metadata.get("denoiser", "model") if hasattr(model, "metadata") else "model"
    with user_errors(f"cannot write {args.output}"):
        written = write_dicom(torch.cat(batches), meta, args.output,
                              description=f"lidplug denoised ({name})",
                              overwrite=args.overwrite)
    print(f"lidplug denoise: wrote {len(written)} slice(s) to {args.output}")
    for path, reason in meta.skipped:
        print(f"  skipped {path}: {reason}")
    return 0
