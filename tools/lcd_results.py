"""The tables of ``docs/LCD.md`` (a developer tool, not installed).

    python tools/lcd_results.py agreement ROOT --toolbox LCD_CT/src [--seeds 0 1 2 3 4]
    python tools/lcd_results.py arms SCORES/lcd.json --arms plain lidnet --seeds 0 1 2 \
        [--figures docs/lcd/figures]

**agreement**: lidplug's LCD scores vs the FDA LCD-CT toolbox's own Python code on the same
files. ``--toolbox`` is the ``src`` folder of a checkout of github.com/DIDSR/LCD_CT (its package
``lcdct``), importable with its own dependencies (SimpleITK, scikit-image, scikit-learn,
pandas); it is run, never copied into lidplug. For every recon and dose of ROOT the toolbox
scores the discs as its demo ``demo_03_tworecon_dosecurve_LCD.py`` does (``load_dataset`` with
offset 1000, ``measure_LCD`` against the recon's ground truth minus 1000), once per reader seed
(``seed_split``); lidplug scores ROOT with :func:`lidplug.lcd.score_folder` at seed 0. The
toolbox's rows are matched to lidplug's discs by their diameter (its ``insert_diameter_pix``):
its ``insert_HU`` column holds the last disc's contrast on every row.

Prints a Markdown table: per recon, dose and disc the mean AUC over readers of lidplug (seed 0),
of the toolbox at seed 0 (the same splits: the numbers should be equal), and of the toolbox at
the other seeds (other splits of the same images: how much the readers' draw alone moves the
mean), then the mean and largest absolute differences.

**arms**: from an ``lcd.json`` of ``lidplug lcd score`` over a phantom set holding FBP and, per
training seed ``s``, one recon per arm named ``<arm>-s<s>`` (``lidplug lcd phantom
--denoiser plain-s0=...``): per disc and dose the mean AUC over readers of FBP and of each arm
(mean over seeds [range]), and the paired difference of the second arm minus the first: within a
seed reader by reader (the same splits of the same images: every denoiser ran on the same FBP
images), averaged over the readers, then the mean over seeds with a 95% t-interval over seeds;
"better"/"worse" when that interval excludes 0, else "not shown" (docs/EVALUATION.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _toolbox_scores(root: Path, seeds: list[int], toolbox: Path) -> dict:
    """(recon, dose, toolbox diameter) -> seed -> (mean AUC, mean d') over the readers."""
    sys.path.insert(0, str(toolbox))
    import numpy as np
    from lcdct import load_dataset, measure_LCD, read_mhd

    from lidplug.lcd import find_recons

    scores: dict = {}
    for recon in find_recons(root):
        truth = read_mhd(str(recon.truth)).astype(np.float32) - 1000
        for dose in recon.doses:
            present, absent = load_dataset(dose.path, offset=1000)
            for seed in seeds:
                table = measure_LCD(present, absent, truth, observers=["LG_CHO_2D"],
                                    seed_split=seed)
                for size, rows in table.groupby("insert_diameter_pix"):
                    key = (recon.name, dose.percent, int(size) // 2)
                    scores.setdefault(key, {})[seed] = (float(rows.auc.mean()),
                                                        float(rows.snr.mean()))
    return scores


def agreement(args: argparse.Namespace) -> None:
    """Print the agreement table of ``args.root`` (module docstring)."""
    from lidplug.lcd import score_folder

    start = time.perf_counter()
    ours = score_folder(args.root)
    lidplug_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = _toolbox_scores(args.root, args.seeds, args.toolbox)
    toolbox_s = (time.perf_counter() - start) / len(args.seeds)
    others = [s for s in args.seeds if s != 0]
    lines = ["| recon | dose | disc | lidplug AUC | toolbox AUC, same splits | difference | "
             f"toolbox AUC, seeds {', '.join(map(str, others))} (mean, range) | "
             "largest difference |", "|---|---|---|---|---|---|---|---|"]
    same, other_diffs, records = [], [], []
    for row in ours.rows:
        disc = ours.discs[row["disc"]]
        got = theirs.get((row["recon"], row["dose"], disc.diameter_px))
        if got is None:
            lines.append(f"| {row['recon']} | {row['dose']:g}% | {disc.label(ours.spacing_mm)} "
                         f"| {row['auc']['mean']:.4f} | not scored by the toolbox | | | |")
            continue
        auc = row["auc"]["mean"]
        diff = auc - got[0][0]
        same.append(abs(diff))
        spread = [got[s][0] for s in others]
        worst = max(abs(auc - a) for a in spread) if spread else float("nan")
        other_diffs += [abs(auc - a) for a in spread]
        records.append({"recon": row["recon"], "dose": row["dose"],
                        "disc": disc.label(ours.spacing_mm), "lidplug_auc": auc,
                        "lidplug_d_prime": row["d_prime"]["mean"], "toolbox": got})
        tail = (f"{statistics.fmean(spread):.4f} ({min(spread):.4f}-{max(spread):.4f}) | "
                f"{worst:.4f}" if spread else " | ")
        lines.append(f"| {row['recon']} | {row['dose']:g}% | {disc.label(ours.spacing_mm)} | "
                     f"{auc:.4f} | {got[0][0]:.4f} | {diff:+.1e} | {tail} |")
    print("\n".join(lines))
    print(f"\nSame splits (seed 0): mean |difference| {statistics.fmean(same):.1e}, largest "
          f"{max(same):.1e} over {len(same)} recon/dose/disc.")
    if other_diffs:
        print(f"Other splits (seeds {', '.join(map(str, others))}): mean |difference| "
              f"{statistics.fmean(other_diffs):.4f}, largest {max(other_diffs):.4f}.")
    print(f"Time per scoring of the folder: lidplug {lidplug_s:.1f} s (with reading), toolbox "
          f"{toolbox_s:.1f} s.")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")


def _t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds (two-sided)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def arms(args: argparse.Namespace) -> None:
    """Print the plain-vs-LIDnet table of ``args.scores`` (module docstring)."""
    data = json.loads(args.scores.read_text())
    rows = {(r["recon"], r["dose"], r["disc"]): r for r in data["results"]}
    first, second = args.arms
    lines = [f"| disc | dose | FBP | {first} | {second} | {second} - {first} | |",
             "|---|---|---|---|---|---|---|"]
    for disc in data["discs"]:
        for dose in data["doses"]:
            def auc(recon, d=disc["index"], dose=dose):
                return rows[(recon, dose, d)]["auc"]

            per_seed = {arm: [auc(f"{arm}-s{s}")["mean"] for s in args.seeds] for arm in args.arms}
            diffs = [statistics.fmean(b - a for a, b in zip(
                auc(f"{first}-s{s}")["readers"], auc(f"{second}-s{s}")["readers"], strict=True))
                for s in args.seeds]
            mean, low, high = _t_interval(diffs)
            verdict = ("**better**" if low > 0 else "**worse**" if high < 0 else "not shown")
            cells = [f"{statistics.fmean(v):.3f} [{min(v):.3f}, {max(v):.3f}]"
                     for v in per_seed.values()]
            lines.append(f"| {disc['label']} | {dose:g}% | {auc('fbp')['mean']:.3f} | "
                         f"{cells[0]} | {cells[1]} | {mean:+.3f} [{low:+.3f}, {high:+.3f}] | "
                         f"{verdict} |")
    print("\n".join(lines))
    if args.figures:
        _figures(data, rows, args)
    readers = len(next(iter(rows.values()))["auc"]["readers"])
    print(f"\nMean AUC over {readers} readers; arms: mean over seeds {args.seeds} [range]; "
          f"difference: paired by reader within a seed, mean over seeds [95% t-interval].")


def _figures(data: dict, rows: dict, args: argparse.Namespace) -> None:
    """One SVG per disc: mean AUC vs dose of FBP and of each arm (mean over seeds, dashed: the
    lowest and highest seed)."""
    from lidplug.report.svg import PALETTE, Series, line_plot

    args.figures.mkdir(parents=True, exist_ok=True)
    doses = data["doses"]
    for disc in data["discs"]:
        k = disc["index"]
        series = [Series("FBP", doses, [rows[("fbp", d, k)]["auc"]["mean"] for d in doses],
                         color=PALETTE[6])]
        for colour, arm in zip(PALETTE, args.arms, strict=False):
            per_dose = [[rows[(f"{arm}-s{s}", d, k)]["auc"]["mean"] for s in args.seeds]
                        for d in doses]
            series.append(Series(f"{arm} (mean of {len(args.seeds)} seeds)", doses,
                                 [statistics.fmean(v) for v in per_dose], color=colour))
            for pick in (min, max):
                series.append(Series("", doses, [pick(v) for v in per_dose], color=colour,
                                     dashed=True))
        svg = line_plot(series, title=f"Disc {k + 1}: {disc['label']}", xlabel="dose (% of full)",
                        ylabel="AUC", ylim=(0.5, 1.0), width=380, height=280,
                        hlines=((0.5, "chance"),))
        (args.figures / f"auc-disc{k + 1}.svg").write_text(svg + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("agreement", help="lidplug vs the toolbox's code on one folder")
    a.add_argument("root", type=Path, help="a folder in the LCD-CT layout")
    a.add_argument("--toolbox", type=Path, required=True,
                   help="the src folder of a DIDSR/LCD_CT checkout (holds lcdct/)")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                   help="the toolbox's reader seeds; 0 is lidplug's (default: 0 1 2 3 4)")
    a.add_argument("--json", type=Path, help="also write the numbers here")
    b = sub.add_parser("arms", help="FBP and two arms over training seeds, from an lcd.json")
    b.add_argument("scores", type=Path, help="lcd.json of 'lidplug lcd score'")
    b.add_argument("--arms", nargs=2, default=["plain", "lidnet"], help="first, second arm")
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    b.add_argument("--figures", type=Path, help="write one SVG per disc into this folder")
    args = parser.parse_args()
    if args.command == "agreement":
        if 0 not in args.seeds:
            parser.error("--seeds: expected 0 among them (lidplug's seed)")
        agreement(args)
    else:
        arms(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
