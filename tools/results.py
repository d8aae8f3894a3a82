"""The results grid behind ``docs/RESULTS.md`` (a developer tool, not installed).

    python tools/results.py run tuning   [--seeds 0 1]                   # validation split only
    python tools/results.py run grid     [--seeds 0 1 2] [--threads N]   # denoisers x doses
    python tools/results.py run ablation [--seeds 0 1 2] [--threads N]   # the method's parts
    python tools/results.py render                                       # docs/RESULTS.md
    (the real-anatomy section: tools/real_results.py, rendered on the same page)

Every cell is one run of the library's pipeline (``lidplug.pipeline.run``) on the demo's run
file with a few overrides: the same data, simulation, shipped starting models, budget and
evaluation protocol as ``lidplug demo``. A cell of the grid is (denoiser, dose, seed) with the
arms ``baseline`` and ``lidnet``; a cell of the ablation is a seed of RED-CNN at the demo's dose
with one arm per variant, all from the same start. A cell of the tuning is a seed of RED-CNN at
the demo's dose with one arm per candidate setting of the demo's LIDnet arm, scored on the
*validation* split: the demo's options are chosen there, by the rule in :data:`SELECTION`, and
the test slices play no part in it. Each finished cell appends its
``metrics.json`` (and timings) to ``docs/results/runs.jsonl`` at once, so an interrupted part
keeps what it did and a rerun skips it; the parts can run in separate sessions. ``render``
rebuilds the page and its figures from that file alone.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
RUNS = RESULTS / "runs.jsonl"
PAGE = ROOT / "docs" / "RESULTS.md"

DENOISERS = ("redcnn", "dncnn", "unet")
DOSES = (0.25, 0.1, 0.05)
DEMO_DOSE = 0.1
#: Ablation arm -> (feedback, wrap overrides, train overrides); "lidnet" is the demo's arm.
ABLATIONS = {
    "baseline": (False, {}, {}),
    "lidnet": (True, {}, {}),
    "no_roi": (True, {"roi_weight": 0.0, "roi_fraction": 0.0}, {}),
    "no_detection": (True, {"det_weight": 0.0, "det_fraction": 0.0}, {}),
    "frozen": (True, {}, {"mode": "frozen"}),
    "joint": (True, {}, {"mode": "joint"}),
    "roi_proposals": (True, {"roi_source": "proposals"}, {}),
    "roi_both": (True, {"roi_source": "both"}, {}),
    "fixed_weights": (True, {"balance": False}, {}),
}
#: Tuning arm -> (feedback, wrap overrides, train overrides): the demo's candidates, fixed
#: before any was run. All share the demo's schedule and learning rate.
TUNING = {
    "baseline": (False, {}, {}),
    "fixed_default": (True, {"balance": False}, {}),
    "balanced_025": (True, {"balance": True, "det_fraction": 0.25, "roi_fraction": 0.25}, {}),
    "balanced_05": (True, {"balance": True, "det_fraction": 0.5, "roi_fraction": 0.5}, {}),
    "balanced_1": (True, {"balance": True, "det_fraction": 1.0, "roi_fraction": 1.0}, {}),
    "balanced_roi": (True, {"balance": True, "det_fraction": 0.1, "roi_fraction": 0.5}, {}),
}
SELECTION = ("among the candidates whose RMSE inside the body is at most 2% above the plain "
             "arm's (mean over the tuning seeds) and whose lesion contrast recovery is not "
             "below it, the highest mean observer-CPM difference; the fixed default weights "
             "are replaced by balancing only if the chosen candidate is a balanced one")
# Two-sided 95% Student t quantiles by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262}


def _columns():
    # The same metrics, labels and directions as lidplug's own summary table.
    from lidplug.pipeline.outputs import SUMMARY_COLUMNS

    return SUMMARY_COLUMNS


def _records() -> list[dict]:
    if not RUNS.is_file():
        return []
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]


def _cells(part: str, seeds: list[int]) -> list[dict]:
    if part == "tuning":
        return [{"part": "tuning", "denoiser": "redcnn", "dose": DEMO_DOSE, "seed": s}
                for s in seeds]
    if part == "grid":
        return [{"part": "grid", "denoiser": d, "dose": dose, "seed": s}
                for s in seeds for dose in DOSES for d in DENOISERS]
    return [{"part": "ablation", "denoiser": "redcnn", "dose": DEMO_DOSE, "seed": s}
            for s in seeds]


def _key(cell: dict) -> tuple:
    return cell["part"], cell["denoiser"], cell["dose"], cell["seed"]


def _spec(cell: dict, threads: int | None):
    from lidplug.pipeline import DEMO_RUN, ArmSpec, load_run

    overrides = ["--simulation.dose", str(cell["dose"]), "--denoiser.pretrained",
                 cell["denoiser"], "--data.seed", str(cell["seed"]), "--train.seed",
                 str(cell["seed"]), "--train.progress", "false"]
    if threads is not None:
        overrides += ["--threads", str(threads)]
    spec, folder = load_run(DEMO_RUN, overrides)
    variants = {"ablation": ABLATIONS, "tuning": TUNING}.get(cell["part"])
    if variants is not None:
        spec.arms = [ArmSpec(name, feedback=fb, wrap=w, train=t)
                     for name, (fb, w, t) in variants.items()]
        spec.__post_init__()  # check the arms' overrides
    return spec, folder


FIGURES = RESULTS / "figures"


def _figures(cell: dict, spec, folder, evaluation) -> list[str]:
    """Write the seed-0 cell's figures as image files the page shows; returns their names.

    The SVG plots are those of the run's report (one FROC plot per observer, contrast recovery
    per lesion against size and contrast); the example crops are the report's, tiled into one
    PNG (a row per lesion, a column per image set).
    """
    import base64
    import io
    import re

    from PIL import Image

    from lidplug.pipeline import held_out
    from lidplug.report.curves import froc_html
    from lidplug.report.lesions import crops_html, recovery_html

    arms = [a.name for a in spec.arms]
    stem = f"{cell['part']}-{cell['denoiser']}-{cell['dose']:g}"
    FIGURES.mkdir(parents=True, exist_ok=True)
    names = []
    svgs = re.findall(r"<svg.*?</svg>", froc_html(evaluation, arms), re.S)
    svgs += re.findall(r"<svg.*?</svg>", recovery_html(evaluation, arms,
                                                        spacing_mm=spec.data.spacing), re.S)
    labels = [f"froc-{o}" for o in evaluation.froc_curves] + ["recovery-size",
                                                             "recovery-contrast"]
    for label, svg in zip(labels, svgs, strict=False):
        name = f"{stem}-{label}.svg"
        if "xmlns=" not in svg.split(">", 1)[0]:  # a standalone SVG file needs its namespace
            svg = svg.replace("<svg ", "<svg xmlns='http://www.w3.org/2000/svg' ", 1)
        (FIGURES / name).write_text(svg)
        names.append(name)
    held = held_out(spec, "test", folder)
    crops = crops_html(evaluation, held, arms, hit_rule=spec.evaluate.hit_rule,
                       spacing_mm=spec.data.spacing, count=4)
    rows = []
    for row in re.split(r"<div class='row'>", crops)[1:]:
        pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", row)
        if pngs:
            rows.append([Image.open(io.BytesIO(base64.b64decode(p))).convert("RGB")
                         for p in pngs])
    if rows:
        w = max(sum(im.width + 4 for im in r) for r in rows)
        h = sum(max(im.height for im in r) + 4 for r in rows)
        sheet = Image.new("RGB", (w, h), "white")
        y = 0
        for r in rows:
            x = 0
            for im in r:
                sheet.paste(im, (x, y))
                x += im.width + 4
            y += max(im.height for im in r) + 4
        name = f"{stem}-crops.png"
        sheet.save(FIGURES / name, optimize=True)
        names.append(name)
    return names


def run(part: str, seeds: list[int], threads: int | None, out: Path) -> None:
    from lidplug.pipeline import run as run_pipeline

    RESULTS.mkdir(parents=True, exist_ok=True)
    done = {_key(r["cell"]) for r in _records()}
    start = time.perf_counter()
    for cell in _cells(part, seeds):
        if _key(cell) in done:
            continue
        spec, folder = _spec(cell, threads)
        folder_out = out / f"{part}-{cell['denoiser']}-{cell['dose']:g}-s{cell['seed']}"
        t = time.perf_counter()
        if part == "tuning":
            from lidplug.pipeline import evaluate, train

            arms = train(spec, folder_out, folder, progress=False)
            evaluation = evaluate(spec, folder_out, folder, arms=arms, split="validation",
                                  progress=False)
        else:
            arms, evaluation = run_pipeline(spec, folder_out, folder, progress=False)
        record = {"cell": cell, "metrics": evaluation.metrics,
                  "train_s": {n: round(a.seconds, 1) for n, a in arms.items()},
                  "wall_s": round(time.perf_counter() - t, 1), "folder": str(folder_out)}
        if cell["seed"] == min(seeds) and part != "tuning":
            record["figures"] = _figures(cell, spec, folder, evaluation)
        with RUNS.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"{part} {cell}: {record['wall_s']:.0f} s (elapsed "
              f"{time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)


def _t_interval(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = _T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def _cell(values: list[float], digits: int, signed: bool = False) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "n/a"
    mean, lo, hi = _t_interval(values)
    s = "+" if signed else ""
    if math.isnan(lo):
        return f"{mean:{s}.{digits}f}"
    return f"{mean:{s}.{digits}f} [{lo:{s}.{digits}f}, {hi:{s}.{digits}f}]"


def _verdict(values: list[float], higher: bool) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) < 2:
        return ""
    from lidplug.metrics import judge

    verdict = judge(_t_interval(values), higher)
    return verdict if verdict == "not shown" else f"**{verdict}**"


def _mean(metrics: dict, row: str, key: str) -> float | None:
    value = metrics.get(row, {}).get(key)
    return None if value is None else value["mean"]


def render() -> str:
    """The page (also written to docs/RESULTS.md by main)."""
    records = _records()
    lines = ["# Results: plain vs LIDnet-wrapped denoisers, on phantoms and on real anatomy",
             "", "Two studies: the built-in phantoms (this page's first part) and real chest CT "
             "with real nodules and tumours ([Real anatomy](#real-anatomy-real-chest-ct-with-"
             "real-lidc-nodules-hybrid-and-real-tumours), the last part). The FDA's low-contrast "
             "detectability test of plain and LIDnet denoisers is on its own page, "
             "[LCD.md](LCD.md).", "",
             "Regenerate: `python tools/results.py run grid`, `python tools/results.py run "
             "ablation`, then `python tools/results.py render` (raw results: "
             "`docs/results/runs.jsonl`, one line per run, each with its whole `metrics.json`). "
             "Every number below comes from that file; nothing is edited by hand. The protocol "
             "is [EVALUATION.md](EVALUATION.md).", ""]
    if not records:
        return "\n".join([*lines, "No runs recorded yet.", ""])
    lines += (_design() + _setup(records) + _tuning(records) + _grid(records)
              + _ablation(records) + _figures_section(records) + _reading())
    import real_results  # the real-anatomy study (tools/real_results.py), its own section

    lines += real_results.section()
    return "\n".join(lines) + "\n"


def _design() -> list[str]:
    return ["## Design, fixed before any comparison was run", "",
            "- **Question.** Does wrapping an existing, pixel-trained denoiser with lesion "
            "feedback (`lidplug.wrap`) and fine-tuning it make it better at lesions than "
            "fine-tuning it with the pixel loss alone, at what cost in pixel error?",
            "- **Task.** The demo's: 96x96 phantom slices of 3 mm, lesions 10-25 mm of "
            "20-50 HU contrast, low dose = a tenth of the normal dose (about 43 HU of noise in "
            "the liver, 12 HU at normal dose). Doses 0.25 and 0.05 in the grid.",
            "- **Arms.** The same shipped pretrained denoiser and the same shipped detector "
            "(Faster R-CNN, normal-dose pretrained) for every arm; the same schedule (4 rounds "
            "of 50 denoiser steps, batch 4, Adam 1e-4; LIDnet adds 10 detector steps per "
            "round); plain = pixel loss only.",
            "- **Primary outcomes** (LIDnet - plain, paired): lesion contrast recovery and the "
            "observers' CPM. **Constraints:** RMSE inside the body at most 2% above plain; "
            "CHO d' not below plain.",
            "- **Statistics.** Per run, a paired bootstrap over test slices (in each run's "
            "`metrics.json`); across runs, the mean of the per-seed paired differences with a "
            "t-interval over seeds. Options were chosen on the validation split only (next "
            "section); test slices come from streams nothing was tuned on.", ""]


def _figures_section(records: list[dict]) -> list[str]:
    shown = [r for r in records if r.get("figures")]
    if not shown:
        return []
    out = ["## Figures (seed 0 of each cell shown)", ""]
    for r in shown:
        c = r["cell"]
        out.append(f"### {c['part']}: {c['denoiser']}, dose {c['dose']:g}")
        out.append("")
        for name in r["figures"]:
            label = name.rsplit(".", 1)[0].split("-", 3)[-1]
            out.append(f"![{label}](results/figures/{name})")
        out += ["", "Crops, left to right: noise-free phantom, low dose, then each arm in the "
                "order of the tables, normal dose, noise-free reconstruction; green: the "
                "lesion's outline; rectangles: observers' detections.", ""]
    return out


def _reading() -> list[str]:
    notes = RESULTS / "reading.md"
    if not notes.is_file():
        return []
    return ["## Reading (written after the runs, from the tables above)", "",
            notes.read_text().strip(), ""]


def _setup(records: list[dict]) -> list[str]:
    tested = [r for r in records if r["cell"]["part"] != "tuning"]
    proto = (tested or records)[0]["metrics"]["protocol"]
    wall = sum(r["wall_s"] for r in records)
    return ["## Setup", "",
            f"- Each run: the demo's run file (`lidplug/pipeline/runs/demo.toml`) with the cell's "
            f"denoiser, dose and seed; {proto['n_slices']} test slices with "
            f"{proto['n_lesions']} lesions (seed 0); every arm fine-tunes the same shipped "
            "pretrained denoiser under the same budget.",
            f"- Reference: {proto['reference']}. Window {proto['window']['lo_hu']:g}.."
            f"{proto['window']['hi_hu']:g} HU (data range {proto['window']['data_range_hu']:g})."
            f" Hit rule: {proto['hit_rule']}. Observers: {', '.join(proto['observers'])}.",
            "- Cells: mean over seeds [95% t-interval over seeds]. Differences are paired: "
            "LIDnet - plain within each seed (same data, same start), then averaged; "
            "**better** / **worse** when the interval over seeds excludes 0, else not shown.",
            f"- Wall time of all {len(records)} recorded runs: {wall / 60:.0f} min "
            "(2-core CPU, shared).", ""]


def _variants_table(rows: list[dict], variants, title: str) -> list[str]:
    out = [title, "", "| variant | " + " | ".join(label for _, label, _, _ in _columns()) + " |",
           "|---|" + "---|" * len(_columns())]
    for arm in variants:
        if arm == "baseline":
            continue
        cells = []
        for key, _, digits, higher in _columns():
            diff = [_mean(r["metrics"], f"{arm}_minus_baseline", key) for r in rows]
            cells.append(f"{_cell(diff, digits, True)} {_verdict(diff, higher)}".strip())
        out.append(f"| {arm} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _tuning(records: list[dict]) -> list[str]:
    rows = [r for r in records if r["cell"]["part"] == "tuning"]
    if not rows:
        return []
    seeds = sorted(r["cell"]["seed"] for r in rows)
    out = _variants_table(rows, TUNING, f"## How the demo's LIDnet options were chosen "
                                        f"(validation split, seeds {seeds}): candidate - plain")
    return [*out, f"Rule, fixed before the runs: {SELECTION}.", ""]


def _grid(records: list[dict]) -> list[str]:
    grid = [r for r in records if r["cell"]["part"] == "grid"]
    if not grid:
        return []
    out = ["## Plain vs LIDnet: three denoisers at three doses", ""]
    for key, label, digits, higher in _columns():
        out += [f"### {label}", "", "| denoiser | dose | seeds | low-dose input | plain | LIDnet "
                "| LIDnet - plain | |", "|---|---|---|---|---|---|---|---|"]
        for d in DENOISERS:
            for dose in DOSES:
                rows = [r for r in grid if r["cell"]["denoiser"] == d
                        and r["cell"]["dose"] == dose]
                if not rows:
                    continue
                col = {row: [_mean(r["metrics"], row, key) for r in rows]
                       for row in ("low_dose", "baseline", "lidnet")}
                diff = [_mean(r["metrics"], "lidnet_minus_baseline", key) for r in rows]
                out.append(f"| {d} | {dose:g} | {len(rows)} | {_cell(col['low_dose'], digits)} | "
                           f"{_cell(col['baseline'], digits)} | {_cell(col['lidnet'], digits)} "
                           f"| {_cell(diff, digits, True)} | {_verdict(diff, higher)} |")
        out.append("")
    return out


def _ablation(records: list[dict]) -> list[str]:
    rows = [r for r in records if r["cell"]["part"] == "ablation"]
    if not rows:
        return []
    return _variants_table(rows, ABLATIONS, f"## The method's parts (RED-CNN, dose "
                                            f"{DEMO_DOSE:g}, test split): variant - plain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the missing cells of a part")
    r.add_argument("part", choices=("tuning", "grid", "ablation"))
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--out", type=Path, default=ROOT / "build" / "results")
    sub.add_parser("render", help="rebuild docs/RESULTS.md from docs/results/runs.jsonl")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.part, args.seeds, args.threads, args.out)
    PAGE.write_text(render())
    print(f"wrote {PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
