"""``lidplug denoise IN OUT --model MODEL``: a DICOM file or series through an exported model.

Every failure is one line (exit status 2): a file that is no lidplug export or that lidplug
refuses to load (:func:`lidplug.deploy.load`), slices the model does not accept (too small, a
size it cannot take: the message names the sizes it accepts), a model that fails or returns
something else than a denoised slice (another shape, NaN or inf), an output that cannot be
written (a full disk: the files written before stay complete). Files of a folder that cannot be
read are skipped and listed (exit status 1; the rest is written).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from lidplug.cli import CLIError
from lidplug.commands._common import check_device, check_output, user_errors

_BATCH = 4
_DESCRIPTION_MAX = 64  # characters of a LO value (write_dicom's description ends SeriesDescription)


def run(args: argparse.Namespace) -> int:
    from lidplug.deploy import load
    from lidplug.io import read_dicom, write_dicom

    if not args.input.exists():
        raise CLIError(f"{args.input}: expected a DICOM file or series folder, got nothing there")
    if not args.model.is_file():
        raise CLIError(f"--model {args.model}: expected a file written by 'lidplug export' or "
                       "'lidplug train', got nothing there")
    check_output(args.input, args.output, args.overwrite)
    device = check_device(args.device)
    try:
        with user_errors(f"--model {args.model}"):
            model = load(args.model, map_location=device)
    except RuntimeError as err:  # the model calls lidplug's ops and their library is missing
        raise CLIError(f"--model {args.model}: {err}".replace("\n", " ")) from None
    with user_errors(f"cannot read {args.input}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are listed below instead
        image, meta = read_dicom(args.input)
    if image.dim() == 3:  # [N, H, W] slices -> [N, 1, H, W], the model's layout
        image = image.unsqueeze(1)
    description = _description(str(model.metadata.get("denoiser") or "model"))
    denoised = _denoise(model, image, device, args)
    with user_errors(f"cannot write {args.output}"):
        written = write_dicom(denoised, meta, args.output, description=description,
                              overwrite=args.overwrite)
    print(f"lidplug denoise: wrote {len(written)} slice(s) to {args.output}")
    if meta.skipped:
        print(f"lidplug denoise: {len(meta.skipped)} file(s) of {args.input} could not be read "
              "and were skipped:", file=sys.stderr)
        for path, reason in meta.skipped:
            print(f"  {path.name}: {reason}".replace("\n", " "), file=sys.stderr)
        return 1
    return 0


def _description(name: str) -> str:
    """``lidplug denoised (NAME)`` within the 64 characters of a DICOM SeriesDescription (LO):
    a longer model name is cut, never the marker, so a long name cannot fail the write after
    the slices were denoised."""
    room = _DESCRIPTION_MAX - len("lidplug denoised ()")
    return f"lidplug denoised ({name if len(name) <= room else name[:room - 3] + '...'})"


def _denoise(model, image, device: str, args: argparse.Namespace):
    """The model's output for ``image`` [N, 1, H, W] (HU), checked before anything is written."""
    import torch

    from lidplug.deploy import model_error

    what = f"{args.input} ({image.shape[0]} slice(s) of {image.shape[-2]}x{image.shape[-1]} pixels)"
    try:
        with torch.no_grad():
            out = torch.cat([model.denoise_hu(image[k:k + _BATCH].to(device)).cpu()
                             for k in range(0, image.shape[0], _BATCH)])
    except ValueError as err:  # slices the model does not accept: the message names the sizes
        raise CLIError(f"--model {args.model} cannot denoise {what}: {err}".replace("\n", " ")
                       ) from None
    except Exception as err:  # the model itself failed (out of memory, a device error, ...)
        raise CLIError(f"--model {args.model} failed on {what}: {model_error(err)}") from None
    if out.shape != image.shape:
        raise CLIError(f"--model {args.model}: expected the denoised slices in the input's shape "
                       f"{list(image.shape)}, got {list(out.shape)}; nothing was written")
    bad = (~torch.isfinite(out)).flatten(1).any(1).nonzero().flatten().tolist()
    if bad:
        raise CLIError(f"--model {args.model}: expected finite values, got NaN or inf in slice(s) "
                       f"{bad[:10]} of {what}; nothing was written")
    return out
