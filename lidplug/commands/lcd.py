"""``lidplug lcd score ROOT`` and ``lidplug lcd phantom OUT``: the FDA LCD-CT test
(:mod:`lidplug.lcd`; the options are defined in :mod:`lidplug.cli`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lidplug.cli import CLIError
from lidplug.commands._common import check_device, user_errors

#: ``lidplug lcd score`` option -> :class:`lidplug.lcd.LCDProtocol` field (None: its default).
_PROTOCOL = {"channels": "channels", "channel_width": "channel_width", "roi_size": "roi_size",
             "readers": "readers", "train_fraction": "train_fraction", "seed": "seed",
             "offset": "offset"}
#: ``lidplug lcd phantom`` option -> :func:`lidplug.lcd.write_phantom` keyword.
_PHANTOM = {"size": "size", "pixel_size": "pixel_mm", "i0": "i0"}


def run(args: argparse.Namespace) -> int:
    return _score(args) if args.lcd_command == "score" else _phantom(args)


def _given(args: argparse.Namespace, names: dict[str, str]) -> dict[str, object]:
    """The options the user gave, under the library's names (the library holds the defaults)."""
    return {key: getattr(args, opt) for opt, key in names.items()
            if getattr(args, opt) is not None}


def _score(args: argparse.Namespace) -> int:
    from lidplug.lcd import LCDProtocol, score_folder, write_results

    if args.out.is_file():
        raise CLIError(f"{args.out}: expected an output folder, got an existing file")
    with user_errors():
        protocol = LCDProtocol(**_given(args, _PROTOCOL))
        results = score_folder(args.root, protocol,
                               progress=lambda line: print(f"lidplug lcd score: {line}"))
    with user_errors(f"cannot write {args.out}"):
        paths = write_results(results, args.out)
    _print_table(results)
    for note in results.notes:
        print(f"lidplug lcd score: note: {note}", file=sys.stderr)
    print(f"lidplug lcd score: {len(results.rows)} recon/dose/disc scores in "
          f"{results.seconds:.1f} s; wrote {', '.join(p.name for p in paths)} to {args.out}")
    return 0


def _print_table(results) -> None:
    """Mean AUC over readers: one line per recon and dose, one column per disc."""
    labels = [d.label(results.spacing_mm) for d in results.discs]
    width = max(len(r) for r in results.recons()) + 8
    print("mean AUC".ljust(width) + "".join(f"{label:>16}" for label in labels))
    for recon in results.recons():
        for dose in results.doses():
            rows = sorted((r for r in results.rows if r["recon"] == recon and r["dose"] == dose),
                          key=lambda r: r["disc"])
            if rows:
                cells = "".join(f"{r['auc']['mean']:>16.3f}" for r in rows)
                print(f"{recon} {dose:g}%".ljust(width) + cells)


def _denoisers(specs: list[str], device: str) -> dict[str, object]:
    """``[NAME=]MODEL`` -> name -> the loaded model's HU-to-HU function."""
    import lidplug

    named: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        model = Path(path if sep else spec)
        name = name if sep else model.stem
        if name in named:
            raise CLIError(f"--denoiser {spec}: expected distinct names, got {name!r} twice "
                           "(name them: --denoiser NAME=MODEL)")
        if not model.is_file():
            raise CLIError(f"--denoiser {spec}: expected an exported model file, got nothing "
                           f"at {model}")
        named[name] = model
    loaded = {}
    for name, model in named.items():
        with user_errors(f"--denoiser {model}"):
            loaded[name] = lidplug.load(model).to(device).eval().denoise_hu
    return loaded


def _phantom(args: argparse.Namespace) -> int:
    from lidplug.lcd import write_phantom

    out = args.output
    if out.is_file():
        raise CLIError(f"{out}: expected an output folder, got an existing file")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise CLIError(f"{out}: already exists and is not empty "
                       "(pass --overwrite to write into it)")
    device = check_device(args.device)
    denoisers = _denoisers(args.denoiser, device)
    start = time.perf_counter()
    with user_errors():
        seconds = write_phantom(out, args.doses, args.images, denoisers=denoisers,
                                seed=args.seed, device=device, **_given(args, _PHANTOM))
    total = time.perf_counter() - start
    parts = ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items())
    count = 2 * args.images * len(args.doses)
    print(f"lidplug lcd phantom: wrote {count} images per recon ({1 + len(denoisers)} recon(s)) "
          f"to {out} in {total:.1f} s ({parts})")
    return 0
