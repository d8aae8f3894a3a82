"""The ``lidplug`` command line: ``lidplug COMMAND ...`` (``lidplug COMMAND --help`` for each).

Commands are argparse subcommands. To add one, write ``_add_NAME(subparsers)`` that builds its
parser and sets ``func`` (a function ``args -> exit status``), and list it in :data:`_COMMANDS`;
import heavy modules inside ``func`` so ``lidplug --help`` stays fast.

Exit status: 0 success; 1 a folder run where some files failed (they are listed, everything else
is written); 2 a user error (bad argument, missing or unreadable input, output exists), printed as
one line ``lidplug: error: ...`` on stderr, never a traceback; 130 interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from lidplug.version import __version__

__all__ = ["CLIError", "main"]


class CLIError(Exception):
    """A user error: reported as one ``lidplug: error: ...`` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage lines and exit; we want one line
        raise CLIError(f"{message} (see '{self.prog} --help')")


def _dose(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"expected a fraction of the scan's dose in (0, 1], got {text!r}"
        )
    return value


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _add_simulate(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="make a low-dose copy of a DICOM file/series or a DeepLesion folder",
        description=(
            "Make a simulated low-dose copy of IN in OUT. IN may be a DICOM file, a DICOM series "
            "folder or a folder of series folders (OUT mirrors it; each series becomes a derived "
            "series 0001.dcm, 0002.dcm, ... whose description names the dose; a folder holding "
            "several series gets one subfolder per SeriesInstanceUID; DICOMDIR files are "
            "ignored), a DeepLesion "
            "folder (DL_info.csv + Images_png/: 16-bit PNGs in the same layout, DL_info.csv "
            "copied) or a single 16-bit PNG (OUT: a .png file or a folder). Noise of each slice "
            "is seeded from --seed and its path, so reruns give the same images. Files that "
            "cannot be read are listed at the end (exit status 1); the rest is written."
        ),
    )
    p.add_argument("input", metavar="IN", type=Path,
                   help="DICOM file/folder, DeepLesion folder or 16-bit PNG")
    p.add_argument("output", metavar="OUT", type=Path,
                   help="output folder (or .png file), not inside IN")
    p.add_argument("--dose", type=_dose, default=0.25,
                   help="dose of the copy as a fraction of the input's dose (default: 0.25)")
    p.add_argument("--method", choices=("insert", "full"), default="insert",
                   help="'insert': noise insertion into real scans (default); 'full': full "
                        "projection-domain simulation, meant for ideal phantoms")
    p.add_argument("--seed", type=_seed, default=0, help="base seed of the noise (default: 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing non-empty OUT, replacing files")
    p.set_defaults(func=_simulate)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _device_option(p, default: str | None = None, what: str = "compute") -> None:
    shown = f"default: {default}; " if default else ""
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=default,
                   help=f"where to {what} ({shown}'auto': the GPU if there is one)")


def _run_file_options(p, checkpoint_help: str) -> None:
    p.add_argument("--config", type=Path, required=True, metavar="FILE",
                   help="the run file the checkpoint was trained with")
    p.add_argument("--checkpoint", type=Path, required=True, help=checkpoint_help)


def _run(module: str):
    """A ``func`` that imports ``lidplug.commands.<module>`` only when the command runs."""

    def func(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(f"lidplug.commands.{module}").run(args)

    return func


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="train a baseline and a LIDnet denoiser on phantoms, report both",
        description=(
            "Generate the built-in phantom set, pretrain a lesion detector, train a baseline "
            "denoiser (pixel loss) and the same denoiser wrapped by LIDnet under the same budget, "
            "evaluate both and the low-dose input on held-out slices, and write report.html, "
            "metrics.json, run.json and the LIDnet denoiser as TorchScript (lidnet_denoiser.pt) "
            "into --out. A few minutes on 2 CPU cores; --full runs a larger configuration "
            "(meant for a GPU)."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("lidplug-demo"),
                   help="output folder (default: ./lidplug-demo; the demo's files are replaced)")
    _device_option(p, "cpu", "train")
    p.add_argument("--full", action="store_true",
                   help="the larger configuration (128x128 slices, 10x the steps)")
    p.add_argument("--seed", type=_seed, default=0, help="training seed (default: 0)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads (default: one per core; on a machine busy with other work "
                        "1 is often faster)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run("demo"))


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="collaborative (LIDnet) training from a run file",
        description=(
            "Train a denoiser with lesion-detector feedback as the run file (TOML or JSON) says: "
            "[data] (phantom, deeplesion or paired_dicom), [denoiser], [detector], [wrap] "
            "(lidplug.WrapConfig) and [train] (lidplug.TrainConfig) tables; see docs/CLI.md. "
            "Writes the checkpoint latest.pt, log.csv, history.json, a copy of the run file "
            "and the trained denoiser as TorchScript (denoiser.pt) into --out."
        ),
    )
    p.add_argument("--config", type=Path, required=True, metavar="FILE",
                   help="run file (.toml or .json)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: the run file's path without its suffix)")
    p.add_argument("--resume", action="store_true", help="continue from --out/latest.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start again even if --out holds a checkpoint")
    _device_option(p)
    p.set_defaults(func=_run("train"))


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="metrics of a trained checkpoint on held-out data",
        description=(
            "Evaluate the low-dose input and the checkpoint's denoised images against the "
            "normal-dose images of the run file's held-out set ([evaluate] table; default: "
            "DeepLesion's test split, or new phantoms): PSNR, SSIM, RMSE (HU), mAP@0.5 and "
            "FROC of the checkpoint's detector, with 95%% bootstrap intervals. Prints a table; "
            "--out writes metrics.json."
        ),
    )
    _run_file_options(p, "latest.pt written by 'lidplug train'")
    p.add_argument("--out", type=Path, default=None, help="write the metrics as JSON here")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="evaluate only the first N held-out slices")
    p.add_argument("--resamples", type=_positive_int, default=1000,
                   help="bootstrap replicates (default: 1000)")
    _device_option(p, "cpu", "run the models")
    p.set_defaults(func=_run("evaluate"))


def _add_denoise(sub) -> None:
    p = sub.add_parser(
        "denoise", help="denoise a DICOM file or series with an exported model",
        description=(
            "Denoise IN (a DICOM file or a series folder) with MODEL (a file written by "
            "'lidplug export', 'lidplug train' or 'lidplug demo') and write a derived DICOM "
            "series into OUT (0001.dcm, 0002.dcm, ...; new series UID, source references kept)."
        ),
    )
    p.add_argument("input", metavar="IN", type=Path, help="DICOM file or series folder")
    p.add_argument("output", metavar="OUT", type=Path, help="output folder, not inside IN")
    p.add_argument("--model", type=Path, required=True, help="exported denoiser (.pt or .pt2)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing non-empty OUT, replacing files")
    _device_option(p, "cpu", "run the model")
    p.set_defaults(func=_run("denoise"))


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint's denoiser (TorchScript or torch.export)",
        description=(
            "Export the denoiser of CHECKPOINT (built as the run file's [denoiser] table says) "
            "to OUT: TorchScript for any suffix but .pt2, torch.export for .pt2. The file is "
            "verified against eager PyTorch before it is written; it runs without lidplug "
            "(torch.jit.load) and in C++ (libtorch)."
        ),
    )
    p.add_argument("output", metavar="OUT", type=Path, help="output file (.pt or .pt2)")
    _run_file_options(p, "latest.pt of 'lidplug train' (or a denoiser state dict)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="compute dtype of the exported model (default: float32)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the comparison with eager PyTorch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=_run("export"))


_COMMANDS = (_add_simulate, _add_demo, _add_train, _add_evaluate, _add_denoise, _add_export)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lidplug", description="Lesion-aware training for CT denoisers (LIDnet).")
    parser.add_argument("--version", action="version", version=f"lidplug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    try:
        args = _parser().parse_args(argv)
        return int(args.func(args))
    except SystemExit as stop:  # --help and --version
        return stop.code if isinstance(stop.code, int) else 0
    except CLIError as err:
        print(f"lidplug: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lidplug: interrupted (files already written are complete)", file=sys.stderr)
        return 130


# ---- simulate ---------------------------------------------------------------------------------


def _simulate(args: argparse.Namespace) -> int:
    src, out = args.input, args.output
    if not src.exists():
        raise CLIError(f"{src}: expected an input file or folder, got nothing there")
    _check_output(src, out, args.overwrite)
    failures: list[tuple[str, str]] = []
    if src.is_file() and src.suffix.lower() == ".png":
        target = out if out.suffix.lower() == ".png" else out / src.name
        _simulate_png(src, target, src.name, args, failures=None)
        written = 1
    elif src.is_file():
        written = _simulate_series(src, out, src.name, args, failures=None)
    elif (src / "DL_info.csv").is_file() or (src / "Images_png").is_dir():
        written = _simulate_deeplesion(src, out, args, failures)
    else:
        folders = _series_folders(src)
        if not folders:
            raise CLIError(f"{src}: expected DICOM files in the folder or below it, got none")
        written = 0
        for folder in folders:
            rel = folder.relative_to(src)
            written += _simulate_series(folder, out / rel, rel.as_posix(), args, failures)
    print(f"lidplug simulate: wrote {written} file(s) to {out} (dose {args.dose:g}, {args.method})")
    if failures:
        print(f"lidplug simulate: {len(failures)} input(s) failed and were not written:",
              file=sys.stderr)
        for name, reason in failures:
            print(f"  {name}: {reason}", file=sys.stderr)
        return 1
    return 0


def _check_output(src: Path, out: Path, overwrite: bool) -> None:
    s, o = src.resolve(), out.resolve()
    # A file's folder counts as input too: a derived series mixed into it would spoil it.
    folder = o.parent if src.is_file() and out.suffix.lower() == ".png" else o
    if o == s or (src.is_dir() and s in o.parents) or (src.is_file() and folder == s.parent):
        raise CLIError(f"{out}: expected an output outside the input {src} and its folder, got "
                       "a path inside (refusing to write into the input)")
    if o.is_file() and out.suffix.lower() != ".png":
        raise CLIError(f"{out}: expected an output folder, got an existing file")
    exists = o.is_file() or (o.is_dir() and any(o.iterdir()))
    if exists and not overwrite:
        raise CLIError(f"{out}: already exists and is not empty "
                       "(pass --overwrite to write into it)")


def _low_dose(hu, key: str, args: argparse.Namespace, spacing: float | None):
    from lidplug.data.sample import derive_seed
    from lidplug.simulation import simulate_low_dose

    # Noise depends on the attenuation path in cm, so the pixel size matters; unknown -> default.
    options = {} if spacing is None else {"pixel_spacing": spacing}
    return simulate_low_dose(hu, args.dose, method=args.method, seed=derive_seed(args.seed, key),
                             **options)


def _simulate_png(src: Path, target: Path, key: str, args, failures, spacing=None) -> bool:
    from lidplug.data.png import read_png_hu, write_png_hu

    try:
        low = _low_dose(read_png_hu(src), key, args, spacing)
        write_png_hu(low, target, overwrite=args.overwrite)
    except (OSError, ValueError) as err:
        _fail(failures, key, f"cannot convert {src}", err)
        return False
    return True


def _fail(failures: list[tuple[str, str]] | None, key: str, what: str, err: Exception) -> None:
    """Record one input's failure; with no list (a single input file) it is the command's."""
    if failures is None:
        raise CLIError(f"{what}: {err}".replace("\n", " ")) from None
    failures.append((key, str(err).replace("\n", " ")))


def _simulate_deeplesion(src: Path, out: Path, args, failures) -> int:
    pngs = sorted((src / "Images_png").rglob("*.png")) if (src / "Images_png").is_dir() else []
    if not pngs:
        raise CLIError(f"{src}: expected DeepLesion slices in Images_png/<series>/<slice>.png, "
                       "got none")
    spacing = {}  # series folder -> column spacing, as DeepLesionDataset passes it
    if (src / "DL_info.csv").is_file():
        from lidplug.data.deeplesion import read_dl_info

        try:
            records = read_dl_info(src / "DL_info.csv")
        except ValueError as err:
            raise CLIError(str(err)) from None
        spacing = {rec["image"].rpartition("/")[0]: rec["spacing"][1] for rec in records}
    written = 0
    for png in pngs:
        key = png.relative_to(src).as_posix()  # the same key DeepLesionDataset seeds with
        written += _simulate_png(png, out / key, key, args, failures,
                                 spacing.get(key.rpartition("/")[0]))
    if (src / "DL_info.csv").is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "DL_info.csv", out / "DL_info.csv")
    return written


def _series_folders(root: Path) -> list[Path]:
    """``root`` and every folder below it that directly holds image files (see :func:`_inputs`)."""
    folders = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
    return [f for f in folders if _inputs(f)]


def _inputs(folder: Path) -> list[Path]:
    """Files of ``folder`` that may hold images: hidden files and DICOMDIR indexes left out."""
    return sorted(c for c in folder.iterdir() if c.is_file() and not c.name.startswith(".")
                  and c.name.upper() != "DICOMDIR")


def _series_uids(folder: Path) -> list[str]:
    """SeriesInstanceUIDs found in the files of ``folder`` (unparsable files are ignored here:
    reading the series reports them)."""
    import pydicom

    uids = set()
    for file in _inputs(folder):
        try:
            ds = pydicom.dcmread(file, specific_tags=["SeriesInstanceUID"],
                                 stop_before_pixels=True)
            uids.add(str(ds.get("SeriesInstanceUID") or ""))
        except Exception:  # pydicom raises many types on non-DICOM files
            continue
    return sorted(uids)


def _simulate_series(src: Path, out: Path, key: str, args, failures) -> int:
    """Simulate a DICOM file or folder; a folder of several series gives ``out/<SeriesUID>/``."""
    uids = _series_uids(src) if src.is_dir() else []
    if len(uids) <= 1:
        return _simulate_one_series(src, None, out, key, args, failures)
    written = 0
    for series_uid in uids:
        written += _simulate_one_series(src, series_uid, out / series_uid,
                                        f"{key}/{series_uid}", args, failures)
    return written


def _simulate_one_series(src: Path, series_uid: str | None, out: Path, key: str, args,
                         failures) -> int:
    import torch

    from lidplug.io import read_dicom, write_dicom

    try:
        with warnings.catch_warnings():  # skipped files are reported in our own list instead
            warnings.simplefilter("ignore")
            image, meta = read_dicom(src, series_uid=series_uid)
    except (OSError, ValueError) as err:
        _fail(failures, key, f"cannot read {src}", err)
        return 0
    # One seed per slice (not per series): a slice's noise does not depend on its neighbours.
    spacing = None if meta.pixel_spacing is None else meta.pixel_spacing[1]
    try:
        low = torch.cat([_low_dose(image[k : k + 1], f"{key}#{k}", args, spacing)
                         for k in range(len(image))])
    except ValueError as err:  # images the simulation refuses (too small, pixels too large...)
        _fail(failures, key, f"cannot simulate {src}", err)
        return 0
    if failures is not None:
        # With several series, every read of the folder skips the same files: list them once.
        folder_key = key if series_uid is None else key.rpartition("/")[0]
        for p, reason in meta.skipped:
            if (f"{folder_key}/{p.name}", reason) not in failures:
                failures.append((f"{folder_key}/{p.name}", reason))
    description = f"lidplug simulated {args.dose:g} dose ({args.method})"
    try:
        return len(write_dicom(low, meta, out, description=description, overwrite=args.overwrite))
    except (OSError, ValueError) as err:
        _fail(failures, key, f"cannot write {out}", err)
        return 0


if __name__ == "__main__":
    # Run through the imported module: under ``python -m`` this file is ``__main__``, and the
    # commands raise ``lidplug.cli.CLIError``, which ``__main__.CLIError`` would not catch.
    from lidplug.cli import main as _main

    sys.exit(_main())
