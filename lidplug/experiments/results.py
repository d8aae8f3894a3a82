"""The results grid behind ``docs/RESULTS.md``: plain vs LIDnet-wrapped denoisers, and ablations.

    python -m lidplug.experiments.results --quick --out docs/RESULTS.md

Grid: RED-CNN, DnCNN and U-Net at three doses (0.5, 0.25, 0.1 of the normal dose), each trained
plain (pixel loss) and LIDnet-wrapped under the same budget, for three seeds; plus the ablation
(no ROI term, no detection term, and the ``frozen`` / ``alternating`` / ``joint`` schedules) for
RED-CNN at the lowest dose. Per seed one detector is pretrained on normal-dose slices (they are
the same images at every dose: the phantoms seed their normal-dose noise independently of the
low dose) and shared by every arm of that seed, for training and for scoring.

Each finished run is appended to ``<out>.jsonl`` at once, so an interrupted grid keeps its
results and ``--resume`` skips them; the Markdown is rebuilt from that file at the end. Numbers
are means over seeds with a 95% t-interval over seeds, and the paired difference LIDnet - plain
(same seed, same data, same detector) with its own interval.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from lidplug.experiments.config import ExperimentConfig, preset
from lidplug.experiments.data import make_datasets
from lidplug.experiments.evaluate import denoise, evaluate_arm
from lidplug.experiments.train import pretrain, train_arm

__all__ = ["ABLATIONS", "DENOISERS", "DOSES", "grid_config", "main", "render_markdown"]

DOSES = (0.5, 0.25, 0.1)
#: Registry name -> constructor options of the quick grid (sized for 2 CPU cores).
DENOISERS = {"redcnn": {"channels": 16}, "dncnn": {"depth": 8, "channels": 24},
             "unet": {"base_channels": 12, "depth": 3}}
#: Ablation name -> train_arm options (the full method is "alternating").
ABLATIONS = {"alternating": {}, "frozen": {"mode": "frozen"}, "joint": {"mode": "joint"},
             "no_roi": {"roi_weight": 0.0}, "no_detection": {"det_weight": 0.0}}
_METRICS = (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4), ("cpm", "FROC CPM", 3),
            ("map50", "mAP@0.5", 3))
# Two-sided 95% Student t quantiles by degrees of freedom (n seeds - 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228}


def grid_config(quick: bool) -> ExperimentConfig:
    """The per-run configuration: ``quick`` for 2 CPU cores, else larger (for a GPU)."""
    if quick:
        return preset("quick", progress=False, test_samples=32, detector_pretrain_steps=250,
                      warmup_steps=60, rounds=2, denoiser_steps=15, detector_steps=5,
                      bootstrap_resamples=300, map_resamples=30)
    return preset("full", progress=False)


def _record(out: dict, kind: str, seed: int, dose: float, denoiser: str, arm: str,
            metrics: dict) -> dict:
    flat = {k: metrics[k]["mean"] for k, _, _ in _METRICS}
    return {**out, "kind": kind, "seed": seed, "dose": dose, "denoiser": denoiser, "arm": arm,
            **flat}


def _done(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_grid(base: ExperimentConfig, seeds: list[int], jsonl: Path, *, resume: bool,
             cache: Path | None, log=print) -> list[dict]:
    """Run every missing grid cell; returns all records (also appended to ``jsonl``)."""
    records = _done(jsonl) if resume else []
    if not resume:
        jsonl.write_text("")
    keys = {(r["kind"], r["seed"], r["dose"], r["denoiser"], r["arm"]) for r in records}

    def emit(rec: dict) -> None:
        records.append(rec)
        with jsonl.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    start = time.perf_counter()
    for seed in seeds:
        detector = None
        for dose in DOSES:
            cfg0 = base.replace(dose=dose, seed=seed)
            train, test = make_datasets(cfg0, cache=cache)
            if detector is None:  # normal-dose images are the same at every dose
                t = time.perf_counter()
                detector = pretrain(cfg0.replace(warmup_steps=0), train).model.detector
                log(f"seed {seed}: detector pretrained in {time.perf_counter() - t:.0f} s")
            if ("grid", seed, dose, "-", "low_dose") not in keys:
                m = evaluate_arm(test.low, test, detector, resamples=base.bootstrap_resamples,
                                 map_resamples=base.map_resamples, seed=0).metrics
                emit(_record({}, "grid", seed, dose, "-", "low_dose", m))
            for name, options in DENOISERS.items():
                cfg = cfg0.replace(denoiser=name, denoiser_kwargs=options)
                arms = {"plain": {"lidnet": False}, "lidnet": {"lidnet": True}}
                if name == "redcnn" and dose == min(DOSES):
                    arms.update({f"ablation:{a}": {"lidnet": True, **o}
                                 for a, o in ABLATIONS.items() if a != "alternating"})
                todo = {a: o for a, o in arms.items()
                        if ("grid", seed, dose, name, a) not in keys}
                if not todo:
                    continue
                t = time.perf_counter()
                warm = pretrain(cfg.replace(detector_pretrain_steps=0), train,
                                detector=copy.deepcopy(detector))
                for arm, options_ in todo.items():
                    stage = train_arm(cfg, warm.model, train, **options_)
                    images = denoise(stage.model.denoiser, test.low)
                    m = evaluate_arm(images, test, detector, resamples=base.bootstrap_resamples,
                                     map_resamples=base.map_resamples, seed=0).metrics
                    emit(_record({"train_s": round(stage.seconds, 1)}, "grid", seed, dose, name,
                                 arm, m))
                log(f"seed {seed} dose {dose:g} {name}: {len(todo)} arm(s) in "
                    f"{time.perf_counter() - t:.0f} s (elapsed {time.perf_counter() - start:.0f} s)")
    return records


def _interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds (the mean alone for one seed)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = _T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def _fmt(values: list[float], digits: int, signed: bool = False) -> str:
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return "n/a"
    mean, lo, hi = _interval(values)
    sign = "+" if signed else ""
    if math.isnan(lo):
        return f"{mean:{sign}.{digits}f}"
    return f"{mean:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


def _values(records: list[dict], key: str, **where) -> dict[int, float]:
    return {r["seed"]: r[key] for r in records
            if all(r[k] == v for k, v in where.items()) and r.get(key) is not None}


def render_markdown(records: list[dict], base: ExperimentConfig, *, command: str,
                    elapsed_s: float | None) -> str:
    """The RESULTS.md text from the grid records."""
    seeds = sorted({r["seed"] for r in records})
    lines = ["# Results: plain vs LIDnet-wrapped denoisers on the built-in phantoms", "",
             f"Regenerate with `{command}` (this run: about "
             f"{'?' if elapsed_s is None else round(elapsed_s / 60)} minutes on a shared "
             "2-core CPU). "
             "Every number below was produced by that command; nothing is edited by hand.", "",
             "## Setup", "",
             f"- Phantoms {base.size}x{base.size}, {base.spacing:g} mm pixels, lesions "
             f"{base.lesion_diameter_mm[0]:g}-{base.lesion_diameter_mm[1]:g} mm, "
             f"{base.train_samples} training and {base.test_samples} held-out slices "
             f"(the same slices for every dose, seed and model), i0 = {base.i0:g}.",
             f"- Per seed ({len(seeds)} seeds: {seeds}) one detector (Faster R-CNN, ResNet-18 FPN "
             f"from scratch) pretrained {base.detector_pretrain_steps} steps of "
             f"{base.detector_batch_size} normal-dose "
             "slices, shared by all arms of that seed for training and scoring.",
             f"- Each denoiser: {base.warmup_steps} warm-up steps (pixel loss), then "
             f"{base.denoiser_updates} steps of {base.batch_size} slices: plain = pixel loss; "
             "LIDnet = "
             f"`wrap(denoiser, detector)` with det_weight {base.det_weight:g}, roi_weight "
             f"{base.roi_weight:g}, mode alternating ({base.rounds} rounds of "
             f"{base.denoiser_steps} denoiser + {base.detector_steps} detector steps); Adam, "
             f"lr {base.lr_denoiser:g} (denoiser), {base.lr_detector:g} (detector).",
             f"- Denoisers (sized for CPU): {DENOISERS}.",
             "- PSNR/SSIM on the full HU window against the normal-dose slice; FROC CPM (mean "
             "sensitivity at 0.125-8 FP/image) and mAP@0.5 of the seed's detector on each arm's "
             "images. Cells: mean over seeds [95% t-interval over seeds]; Δ = LIDnet - plain, "
             "paired by seed.", ""]
    doses = sorted({r["dose"] for r in records}, reverse=True)
    grid = [r for r in records if r["kind"] == "grid"]
    for key, label, digits in _METRICS:
        lines += [f"## {label}", "", "| denoiser | dose | low-dose input | plain | LIDnet | "
                  "Δ (LIDnet - plain) |", "|---|---|---|---|---|---|"]
        for name in DENOISERS:
            for dose in doses:
                low = _values(grid, key, dose=dose, arm="low_dose")
                plain = _values(grid, key, dose=dose, denoiser=name, arm="plain")
                lid = _values(grid, key, dose=dose, denoiser=name, arm="lidnet")
                if not plain and not lid:
                    continue
                paired = [lid[s] - plain[s] for s in plain if s in lid]
                lines.append(f"| {name} | {dose:g} | {_fmt(list(low.values()), digits)} | "
                             f"{_fmt(list(plain.values()), digits)} | "
                             f"{_fmt(list(lid.values()), digits)} | "
                             f"{_fmt(paired, digits, signed=True)} |")
        lines.append("")
    low_dose = min(doses) if doses else None
    lines += [f"## Ablation (RED-CNN, dose {low_dose:g})" if low_dose else "## Ablation", "",
              "| variant | " + " | ".join(label for _, label, _ in _METRICS) + " |",
              "|---|" + "---|" * len(_METRICS)]
    variants = [("plain (pixel loss)", "plain"), ("LIDnet, alternating (full)", "lidnet")] + [
        (f"LIDnet, {a.replace('_', ' ')}", f"ablation:{a}") for a in ABLATIONS
        if a != "alternating"]
    for label, arm in variants:
        cells = [_fmt(list(_values(grid, key, dose=low_dose, denoiser="redcnn",
                                   arm=arm).values()), digits) for key, _, digits in _METRICS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lidplug.experiments.results",
                                     description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", action="store_true", help="the CPU configuration")
    size.add_argument("--full", action="store_true", help="the larger (GPU) configuration")
    parser.add_argument("--out", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: one per core; 1 on a busy machine)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder to cache phantom slices in (shared between runs)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in <out>.jsonl and do the rest")
    parser.add_argument("--render-only", action="store_true",
                        help="rebuild <out> from the runs in <out>.jsonl, training nothing")
    args = parser.parse_args(argv)
    base = grid_config(args.quick).replace(device=args.device)
    jsonl = args.out.with_suffix(".jsonl")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.render_only:
        records, elapsed = _done(jsonl), None
    else:
        records = run_grid(base, list(range(args.seeds)), jsonl, resume=args.resume,
                           cache=args.cache, log=lambda s: print(s, file=sys.stderr, flush=True))
        elapsed = time.perf_counter() - start
    command = ("python -m lidplug.experiments.results " + ("--quick" if args.quick else "--full")
               + f" --out {args.out}")
    args.out.write_text(render_markdown(records, base, command=command, elapsed_s=elapsed))
    print(f"wrote {args.out} ({len(records)} runs)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
