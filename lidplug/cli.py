"""The ``lidplug`` command line: ``lidplug COMMAND ...`` (``lidplug COMMAND --help`` for each).

This module only parses and dispatches: every command's options are defined here, and each runs
``lidplug.commands.<name>.run(args)`` (imported when the command runs, so ``lidplug --help`` stays
fast), which calls the library's public API. To add a command, write ``_add_NAME(subparsers)``
and list it in :data:`_COMMANDS`.

``train``, ``evaluate`` and ``demo`` run one pipeline (:mod:`lidplug.pipeline`) on a run file;
any key of the run file can be overridden on the command line after the options, e.g.
``lidplug train --config run.toml --train.rounds 4 --simulation.dose 0.05``.

Exit status: 0 success; 1 a folder run where some files failed (they are listed, everything else
is written); 2 a user error (bad argument, missing or unreadable input, output exists), printed as
one line ``lidplug: error: ...`` on stderr, never a traceback; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lidplug.version import __version__

__all__ = ["CLIError", "main"]


class CLIError(Exception):
    """A user error: reported as one ``lidplug: error: ...`` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage lines and exit; we want one line
        raise CLIError(f"{message} (see '{self.prog} --help')")


# The smallest dose a copy may have (lidplug.pipeline.spec.MIN_DOSE; not imported, so that
# --help stays fast): below it no photon reaches a detector, and float32 rounds it to 0.
_MIN_DOSE = 1e-6


def _float(text: str) -> float:
    """``text`` as a number; NaN, which fails every range check, when it is none."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _dose(text: str) -> float:
    value = _float(text)
    if not _MIN_DOSE <= value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"expected a fraction of the scan's dose in [{_MIN_DOSE:g}, 1], got {text!r}"
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
            "several series gets one subfolder per SeriesInstanceUID; DICOMDIR files and "
            "symbolic links to folders are ignored), a DeepLesion "
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
    p.set_defaults(func=_run("simulate"))


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _device_option(p, default: str | None = None, what: str = "compute") -> None:
    shown = f"default: {default}; " if default else ""
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=default,
                   help=f"where to {what} ({shown}'auto': the GPU if there is one)")


_OVERRIDES = ("any key of the run file can follow as an override, e.g. --train.rounds 4 "
              "--simulation.dose 0.05 (see docs/CLI.md)")


def _run_options(p, *, required: bool = True, out_help: str) -> None:
    p.add_argument("--config", type=Path, required=required, metavar="FILE",
                   help="run file (TOML; see docs/CLI.md)")
    p.add_argument("--out", type=Path, default=None, help=out_help)
    p.set_defaults(overrides_allowed=True)


def _run(module: str):
    """A ``func`` that imports ``lidplug.commands.<module>`` only when the command runs."""

    def func(args: argparse.Namespace) -> int:
        import importlib

        from lidplug.commands._malloc import keep_large_blocks

        keep_large_blocks()  # whole slices through big models: see the module's docstring
        return importlib.import_module(f"lidplug.commands.{module}").run(args)

    return func


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="plain vs LIDnet fine-tuning of a pretrained denoiser on phantoms, reported",
        description=(
            "The shipped demo run (lidplug/pipeline/runs/demo.toml): built-in phantom slices at "
            "a tenth of the normal dose; a shipped plain-pretrained RED-CNN is fine-tuned twice "
            "from the same weights under the same budget, with the pixel loss (baseline) and "
            "wrapped by LIDnet (lesion-detector feedback); the low-dose input, both arms and the "
            "normal dose are scored on held-out slices against the noise-free phantom and by "
            "two observer detectors no arm trained, with paired 95%% intervals. Writes "
            "report.html, metrics.json, run.json and each arm's denoiser (TorchScript) into "
            "--out. A few minutes on 2 CPU cores. " + _OVERRIDES + "."
        ),
    )
    _run_options(p, required=False,
                 out_help="output folder (default: ./lidplug-demo, ./lidplug-real-lung); a "
                          "folder an earlier demo made is replaced, any other non-empty one "
                          "only with --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out even if another command made it")
    p.add_argument("--run", choices=("demo", "real-lung"), default="demo",
                   help="which shipped run: 'demo' (phantoms, default) or 'real-lung' (real "
                        "chest CT with real LIDC nodules inserted, and the held-out patients' "
                        "own tumours; needs --data.root PATH or $LIDPLUG_DATA, about 19 minutes "
                        "on 2 CPU cores, pretraining included)")
    _device_option(p, "cpu", "train")
    p.add_argument("--seed", type=_seed, default=None,
                   help="seed of the data streams and the training (default: the run file's)")
    p.add_argument("--from-scratch", action="store_true",
                   help="retrain the shipped pretrained models first (observers, starting "
                        "denoiser and detector; tens of minutes on a CPU)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads (default: one per core; on a machine busy with other work "
                        "1 is often faster)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run("demo"))


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train every arm of a run file",
        description=(
            "Train the arms of a run file (TOML): [data], [simulation], [denoiser], [detector], "
            "[wrap] (lidplug.WrapConfig), [train] (lidplug.TrainConfig), [evaluate] and "
            "[[arms]]; see docs/CLI.md. Each arm writes <out>/<arm>/: latest.pt (checkpoint), "
            "log.csv, history.json and denoiser.pt (the denoiser alone, TorchScript); "
            "<out>/run.json records the resolved run. " + _OVERRIDES + "."
        ),
    )
    _run_options(p, out_help="output folder (default: the run file's path without its suffix)")
    p.add_argument("--resume", action="store_true", help="continue each arm from its checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start again even if --out holds checkpoints")
    _device_option(p)
    p.set_defaults(func=_run("train"))


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score the trained arms of a run file on held-out slices",
        description=(
            "Score the low-dose input, every trained arm of --out and the references on the "
            "run's held-out slices (EVALUATION.md: RMSE inside the body, PSNR/SSIM on the "
            "display window, lesion contrast recovery, observers' FROC, paired bootstrap "
            "differences). Prints a table and writes metrics.json and report.html into --out. "
            "--split validation scores the validation slices instead (for choices made while "
            "developing a run; never tune on the test slices). " + _OVERRIDES + "."
        ),
    )
    _run_options(p, out_help="the folder 'lidplug train' wrote (default: the run file's path "
                             "without its suffix)")
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="which held-out slices (default: test)")
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
            "Export the denoiser of --checkpoint (built as the run file's [denoiser] table says) "
            "to OUT: TorchScript for any suffix but .pt2, torch.export for .pt2. The file is "
            "verified against eager PyTorch before it is written; it runs without lidplug "
            "(torch.jit.load) and in C++ (libtorch)."
        ),
    )
    p.add_argument("output", metavar="OUT", type=Path, help="output file (.pt or .pt2)")
    p.add_argument("--config", type=Path, required=True, metavar="FILE",
                   help="the run file the checkpoint was trained with (its [denoiser] model)")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="an arm's latest.pt of 'lidplug train' (or a denoiser state dict)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="compute dtype of the exported model (default: float32)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the comparison with eager PyTorch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=_run("export"))


def _positive_float(text: str) -> float:
    value = _float(text)
    if not 0 < value < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _open_fraction(text: str) -> float:
    value = _positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def _add_lcd(sub) -> None:
    p = sub.add_parser(
        "lcd", help="the FDA's low-contrast detectability test (LCD-CT): score, phantom",
        description=(
            "The FDA LCD-CT toolbox's test (MITA-LCD phantom, Laguerre-Gauss channelized "
            "Hotelling observer, AUC vs dose per disc) inside lidplug: 'score' reads a folder "
            "in the toolbox's layout and scores it by the toolbox's protocol; 'phantom' makes "
            "such a folder from a digital MITA-LCD phantom scanned by lidplug's simulator, with "
            "FBP and any exported denoisers. See docs/LCD.md."
        ),
    )
    lcd = p.add_subparsers(dest="lcd_command", metavar="SUBCOMMAND", required=True)
    s = lcd.add_parser(
        "score", help="score a folder in the LCD-CT layout",
        description=(
            "Score ROOT (<recon>/dose_XXX/signal_present|signal_absent/*.mhd with "
            "<recon>/ground_truth.mhd or ROOT/ground_truth.mhd; pixels HU + --offset) by the "
            "toolbox's protocol: the discs are found in the ground truth; per recon, dose and "
            "disc a Laguerre-Gauss CHO on ROIs around the disc, over random train/test splits "
            "of the images ('readers'). Writes lcd.json (AUC and d' per recon, dose and disc: "
            "mean, standard deviation and 2.5-97.5 percentile range over readers), lcd.csv "
            "(one line per reader, the toolbox's columns) and lcd.html (AUC vs dose per disc, "
            "one line per recon) into --out, replacing those files. Defaults are the "
            "toolbox's; --seed selects the same readers as its seed_split."
        ),
    )
    s.add_argument("root", metavar="ROOT", type=Path, help="folder in the LCD-CT layout")
    s.add_argument("--out", type=Path, default=Path("lidplug-lcd"),
                   help="output folder (default: ./lidplug-lcd)")
    s.add_argument("--channels", type=_positive_int, default=None,
                   help="Laguerre-Gauss channels (default: 5)")
    s.add_argument("--channel-width", type=_positive_float, default=None, metavar="FRACTION",
                   help="channel width as a fraction of the disc's diameter (default: 2/3)")
    s.add_argument("--roi-size", type=_positive_int, default=None, metavar="PIXELS",
                   help="ROI side, odd (default: twice the largest disc's diameter, plus 1)")
    s.add_argument("--readers", type=_positive_int, default=None,
                   help="random train/test splits (default: 10)")
    s.add_argument("--train-fraction", type=_open_fraction, default=None,
                   help="fraction of each class that trains a reader (default: 0.5)")
    s.add_argument("--seed", type=_seed, default=None,
                   help="seed of the readers' splits (default: 0)")
    s.add_argument("--offset", type=float, default=None,
                   help="subtracted from the stored values to give HU (default: 1000)")
    s.set_defaults(func=_run("lcd"))
    ph = lcd.add_parser(
        "phantom", help="scan a digital MITA-LCD phantom, write FBP and denoised sets",
        description=(
            "Write into OUT a digital MITA-LCD phantom (the toolbox's CCT189: 200-mm water "
            "cylinder, discs of 3, 5, 7 and 10 mm at 14, 7, 5 and 3 HU) scanned by lidplug's "
            "simulator at each of --doses with --images independent noise realisations per "
            "class (signal present, signal absent), reconstructed by FBP (OUT/fbp) and, for "
            "each --denoiser, denoised from those FBP images (OUT/<name>), in the toolbox's "
            "layout: 'lidplug lcd score OUT' and the toolbox both read it. Noise at full dose "
            "matches the toolbox's sample (about 24 HU in the centre)."
        ),
    )
    ph.add_argument("output", metavar="OUT", type=Path, help="output folder")
    ph.add_argument("--doses", type=_dose, nargs="+", required=True, metavar="DOSE",
                    help="dose fractions, whole percentages (e.g. 0.1 0.55 1.0)")
    ph.add_argument("--images", type=_positive_int, required=True, metavar="N",
                    help="images per class and dose (the toolbox suggests 200)")
    ph.add_argument("--denoiser", action="append", default=[], metavar="[NAME=]MODEL",
                    help="an exported denoiser (lidplug export: .pt or .pt2), repeatable; its "
                         "recon folder is NAME (default: the file's stem)")
    ph.add_argument("--size", type=_positive_int, default=None, metavar="PIXELS",
                    help="image side (default: 320)")
    ph.add_argument("--pixel-size", type=_positive_float, default=None, metavar="MM",
                    help="pixel size in mm (default: 0.7)")
    ph.add_argument("--i0", type=_positive_float, default=None,
                    help="photons per detector bin per view at full dose (default: 3.2e5)")
    ph.add_argument("--seed", type=_seed, default=0, help="base seed of the noise (default: 0)")
    ph.add_argument("--overwrite", action="store_true",
                    help="write into an existing non-empty OUT, replacing files")
    _device_option(ph, "cpu", "simulate and denoise")
    ph.set_defaults(func=_run("lcd"))


_COMMANDS = (_add_simulate, _add_demo, _add_train, _add_evaluate, _add_denoise, _add_export,
             _add_lcd)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lidplug", description="Lesion-aware training for CT denoisers (LIDnet).")
    parser.add_argument("--version", action="version", version=f"lidplug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args, extra = _parser().parse_known_args(argv)
    if extra and not getattr(args, "overrides_allowed", False):
        raise CLIError(f"unrecognized arguments: {' '.join(extra)} (see 'lidplug "
                       f"{args.command} --help')")
    if extra and not extra[0].startswith("--"):
        raise CLIError(f"expected run-file overrides as --section.key VALUE, got {extra[0]!r}")
    args.overrides = extra
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    try:
        args = _parse(argv)
        return int(args.func(args))
    except SystemExit as stop:  # --help and --version
        return stop.code if isinstance(stop.code, int) else 0
    except CLIError as err:
        print(f"lidplug: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lidplug: interrupted (files already written are complete)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run through the imported module: under ``python -m`` this file is ``__main__``, and the
    # commands raise ``lidplug.cli.CLIError``, which ``__main__.CLIError`` would not catch.
    from lidplug.cli import main as _main

    sys.exit(_main())
