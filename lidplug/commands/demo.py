"""``lidplug demo``: :func:`lidplug.experiments.run_demo` with a summary table at the end."""

from __future__ import annotations

import argparse

from lidplug.cli import CLIError
from lidplug.commands._common import check_device, user_errors


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.out.is_dir():  # before the heavy imports: fails fast
        raise CLIError(f"--out {args.out}: expected a folder, got an existing file")
    from lidplug.experiments import format_summary, preset, run_demo

    device = check_device(args.device)
    with user_errors():
        cfg = preset("full" if args.full else "quick", device=device, seed=args.seed,
                     threads=args.threads, progress=not args.quiet)
    result = run_demo(cfg, args.out)
    print(format_summary(result["metrics"]))
    print(f"\nwall time {result['timings']['total']:.0f} s; wrote:")
    for path in result["files"].values():
        print(f"  {path}")
    return 0
