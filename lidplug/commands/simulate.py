"""``lidplug simulate IN OUT``: a simulated low-dose copy of a DICOM file/series, a folder of
series, a DeepLesion folder or a 16-bit PNG (the help text in :mod:`lidplug.cli` says how each
is laid out). Files that cannot be read are listed at the end (exit status 1); the rest is
written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

from lidplug.cli import CLIError
from lidplug.commands._common import check_output


def run(args: argparse.Namespace) -> int:
    src, out = args.input, args.output
    if not src.exists():
        raise CLIError(f"{src}: expected an input file or folder, got nothing there")
    check_output(src, out, args.overwrite)
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
    pngs = (sorted(p for f in _folders(src / "Images_png") for p in f.glob("*.png"))
            if (src / "Images_png").is_dir() else [])
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


def _folders(root: Path) -> list[Path]:
    """``root`` and every folder below it, sorted; symbolic links to folders are not followed
    (a link to a series beside it would write that series twice, a link up the tree loops)."""
    found = [root]
    for parent, names, _ in os.walk(root):  # followlinks=False: links are listed, not entered
        found += [Path(parent) / n for n in names if not (Path(parent) / n).is_symlink()]
    return [root, *sorted(found[1:])]


def _series_folders(root: Path) -> list[Path]:
    """``root`` and every folder below it that directly holds image files (see :func:`_inputs`)."""
    return [f for f in _folders(root) if _inputs(f)]


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
    """Simulate a DICOM file or folder; a folder of several series gives one folder per series,
    ``out/<SeriesInstanceUID>/`` (``out/series-<n>/`` when the UID is not a well-formed UID)."""
    uids = _series_uids(src) if src.is_dir() else []
    if len(uids) <= 1:
        return _simulate_one_series(src, None, out, key, args, failures)
    from lidplug.io import ensure_inside, series_folder_name

    written = 0
    for index, series_uid in enumerate(uids, start=1):
        # The UID is text from a file: a well-formed one names the folder, anything else a number.
        name = series_folder_name(series_uid, index)
        written += _simulate_one_series(src, series_uid, ensure_inside(out, out / name),
                                        f"{key}/{name}", args, failures)
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
