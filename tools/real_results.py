"""The real-anatomy study behind the "Real anatomy" section of ``docs/RESULTS.md`` (a developer
tool, not installed).

    python tools/real_results.py validate [--set KEY=VALUE ...]    # validation split only
    python tools/real_results.py run [--denoisers redcnn dncnn] [--seeds 0 1 2] [--threads N]
    python tools/results.py render                                  # the page, both parts

Every cell is one run of the library's pipeline on the shipped run file
``lidplug/pipeline/runs/real-lung.toml`` (``lidplug demo --run real-lung``) with the data root,
the denoiser's pretraining run and the seed as overrides, nothing else. The pretraining runs
(denoisers, feedback detector, observers) are shared by every cell through one pretrained
folder, as the shipped run shares them between its own commands. ``validate`` scores only the
task on the validation patient (observers at normal and low dose, the pretrained denoiser's
RMSE), never an arm: the design's choices (docs/results/real-design.md) are made there. Each
finished cell appends a line to ``docs/results/real-runs.jsonl`` (validation:
``real-validation.jsonl``) at once, so an interrupted study keeps what it did.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import results  # the phantom study's tool: the same interval and verdict rules

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
RUNS = RESULTS / "real-runs.jsonl"
VALIDATION = RESULTS / "real-validation.jsonl"
READING = RESULTS / "real-reading.md"
DATA_ENV = "LIDPLUG_DATA"
DENOISERS = ("redcnn", "dncnn")


def _data_root(given: str | None) -> str:
    root = given or os.environ.get(DATA_ENV) or str(ROOT.parent / "shared" / "data")
    if not Path(root).is_dir():
        raise SystemExit(f"real_results: expected the real-CT data folder (--data or "
                         f"${DATA_ENV}), got {root!r}")
    return root


def _spec(root: str, denoiser: str, seed: int, threads: int | None, sets: list[str] = ()):
    """The shipped real-lung run with the data root, denoiser and seed; ``sets`` are
    ``KEY=VALUE`` changes for validation (``data.options.*`` keys set one option, the value
    read as JSON)."""
    from lidplug.pipeline import SHIPPED_RUNS, load_run

    overrides = ["--data.root", root, "--denoiser.run", f"real-lung/{denoiser}.toml",
                 "--data.seed", str(seed), "--train.seed", str(seed),
                 "--train.progress", "false"]
    options = {}
    for item in sets:
        key, _, value = item.partition("=")
        if key.startswith("data.options."):
            options[key.removeprefix("data.options.")] = json.loads(value)
        else:
            overrides += [f"--{key}", value]
    if threads is not None:
        overrides += ["--threads", str(threads)]
    spec, folder = load_run(SHIPPED_RUNS["real-lung"], overrides)
    spec.data.options.update(options)
    return spec, folder


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validate(root: str, sets: list[str], threads: int | None, pretrained: Path) -> dict:
    """The task on the validation patient: the observers' and the feedback detector's CPM at
    normal and low dose, and the pretrained denoiser's RMSE (no arm)."""
    import torch

    from lidplug.metrics import froc_from_matches, match_detections, rmse_hu
    from lidplug.pipeline import build_model, held_out
    from lidplug.pipeline.evaluate import denoise, detect
    from lidplug.pipeline.run import observer_names, resolve_model_runs

    spec, folder = _spec(root, "redcnn", 0, threads, sets)
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    t = time.perf_counter()
    resolve_model_runs(spec, folder, pretrained, progress=True)
    pretrain_s = time.perf_counter() - t
    held = held_out(spec, "validation", folder)
    images = {"low_dose": held.low, "normal_dose": held.normal,
              "pretrained": denoise(build_model(spec.denoiser, "denoiser", folder), held.low)}
    normal = held.window.inverse(held.normal)
    record = {"kind": "validation", "set": sets, "pretrain_s": round(pretrain_s), "n_slices": len(held),
              "n_lesions": sum(len(x["boxes"]) for x in held.targets),
              "threads": torch.get_num_threads(),
              "noise": [{k: r[k] for k in ("patient", "normal_dose_noise_hu",
                                            "low_dose_noise_hu_target")}
                        for r in _noise(held)]}
    for name, x in images.items():
        record[f"rmse_hu/{name}"] = round(float(rmse_hu(
            held.window.inverse(x), normal, window=None, mask=held.body).mean()), 2)
    detectors = dict(zip(observer_names(spec), spec.evaluate.observer_specs(), strict=True))
    detectors["feedback-detector"] = spec.detector
    for name, model_spec in detectors.items():
        model = build_model(model_spec, "detector", folder)
        for s in ("normal_dose", "low_dose"):
            matches = match_detections(detect(model, images[s]), held.targets,
                                       criterion=spec.evaluate.hit_rule)
            record[f"cpm/{name}/{s}"] = round(froc_from_matches(matches).as_dict()["cpm"], 3)
    observers = observer_names(spec)
    gap = [record[f"cpm/{o}/normal_dose"] - record[f"cpm/{o}/low_dose"] for o in observers]
    record["headroom"] = round(statistics.fmean(gap), 3)
    record["cpm_normal_dose"] = round(statistics.fmean(
        record[f"cpm/{o}/normal_dose"] for o in observers), 3)
    record["eval_s"] = round(time.perf_counter() - t - pretrain_s)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with VALIDATION.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def _noise(held) -> list[dict]:
    rows = {}
    for meta in held.meta:
        rows.setdefault(meta["scan"], {"patient": meta["patient"],
                                       "normal_dose_noise_hu": round(meta["noise_hu"], 2),
                                       "low_dose_noise_hu_target":
                                           round(meta["low_dose_noise_hu"], 2)})
    return list(rows.values())


def run(root: str, denoisers: list[str], seeds: list[int], threads: int | None, out: Path,
        pretrained: Path) -> None:
    from lidplug.pipeline import evaluate, train

    RESULTS.mkdir(parents=True, exist_ok=True)
    done = {(r["denoiser"], r["seed"]) for r in _records(RUNS)}
    for denoiser in denoisers:
        for seed in seeds:
            if (denoiser, seed) in done:
                continue
            spec, folder = _spec(root, denoiser, seed, threads)
            target = out / f"real-{denoiser}-s{seed}"
            t = time.perf_counter()
            arms = train(spec, target, folder, progress=False, pretrained=pretrained)
            pretrain_s = json.loads((target / "run.json").read_text())["timings_s"]["pretrain"]
            evaluation = evaluate(spec, target, folder, arms=arms, progress=False,
                                  pretrained=pretrained)
            real = json.loads((target / "metrics-real-lesions.json").read_text())
            record = {"denoiser": denoiser, "seed": seed, "metrics": evaluation.metrics,
                      "real_lesions": real,
                      "train_s": {n: round(a.seconds, 1) for n, a in arms.items()},
                      "pretrain_s": round(pretrain_s, 1),
                      "wall_s": round(time.perf_counter() - t, 1), "folder": str(target)}
            with RUNS.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"real {denoiser} seed {seed}: {record['wall_s']:.0f} s", file=sys.stderr,
                  flush=True)


def _differences(records: list[dict], key: str, source: str = "metrics") -> list[float]:
    out = []
    for r in records:
        value = r[source].get("lidnet_minus_baseline", {}).get(key)
        if value is not None and value["mean"] is not None and math.isfinite(value["mean"]):
            out.append(value["mean"])
    return out


def _level(records: list[dict], row: str, key: str, source: str = "metrics") -> list[float]:
    out = []
    for r in records:
        value = r[source].get(row, {}).get(key)
        if value is not None and value["mean"] is not None and math.isfinite(value["mean"]):
            out.append(value["mean"])
    return out


def section() -> list[str]:
    """The "Real anatomy" section of docs/RESULTS.md, from the recorded runs alone."""
    records = _records(RUNS)
    lines = ["## Real anatomy: real chest CT with real LIDC nodules (hybrid) and real tumours",
             "", "Design fixed before any comparison: [results/real-design.md]"
             "(results/real-design.md) (data, splits by patient, task, budget, statistics; the "
             "validation numbers behind each choice). Regenerate: `python "
             "tools/real_results.py run`, then `python tools/results.py render` (raw results: "
             "`docs/results/real-runs.jsonl`). Run it yourself: `lidplug demo --run real-lung "
             "--data.root PATH` (README).", ""]
    if not records:
        return [*lines, "No runs recorded yet.", ""]
    columns = results._columns()
    seeds = sorted({r["seed"] for r in records})
    lines += [f"Seeds {seeds}; each cell: the mean over seeds of the per-seed paired "
              "difference LIDnet - plain on the test slices, with a 95% t-interval over seeds; "
              "**better** / **worse** when it excludes 0.", ""]
    for title, source, keys in (
            ("Inserted nodules (48 whole test slices of 2 held-out patients)", "metrics",
             [c for c in columns]),
            ("Real tumours of the held-out patients (never inserted)", "real_lesions",
             [c for c in columns if c[0] not in ("model_observer_dprime",)])):
        lines += [f"### {title}", "",
                  "| denoiser | " + " | ".join(c[1] for c in keys) + " |",
                  "|---|" + "---|" * len(keys)]
        for denoiser in DENOISERS:
            rows = [r for r in records if r["denoiser"] == denoiser]
            if not rows:
                continue
            cells = []
            for key, _, digits, higher in keys:
                values = _differences(rows, key, source)
                text = results._cell(values, digits, signed=True)
                verdict = results._verdict(values, higher)
                cells.append(f"{text} {verdict}".strip())
            lines.append(f"| {denoiser} ({len(rows)} seeds) | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Levels (mean over seeds; the normal dose is the reference of RMSE and of "
              "contrast)", "",
              "| denoiser | set | RMSE HU | contrast rec. | observer CPM | CHO d' |",
              "|---|---|---|---|---|---|"]
    for denoiser in DENOISERS:
        rows = [r for r in records if r["denoiser"] == denoiser]
        for name in ("low_dose", "baseline", "lidnet", "normal_dose"):
            values = [_level(rows, name, k) for k in ("rmse_hu", "lesion_contrast_recovery",
                                                      "observer_cpm", "model_observer_dprime")]
            if rows and values[0]:
                lines.append(f"| {denoiser} | {name} | " + " | ".join(
                    f"{statistics.fmean(v):.3f}" if v else "n/a" for v in values) + " |")
    headroom = [r["metrics"]["headroom"]["observer_cpm"]["mean"] for r in records
                if "observer_cpm" in r["metrics"].get("headroom", {})]
    if headroom:
        lines += ["", f"Headroom (observers' CPM, normal - low dose, test): "
                  f"{statistics.fmean(headroom):.3f} (range {min(headroom):.3f} to "
                  f"{max(headroom):.3f} over runs).", ""]
    noise = records[0]["metrics"]["protocol"].get("noise") or []
    if noise:
        lines += ["Noise of the test scans (HU; global noise level): " + "; ".join(
            f"{n['patient']}: normal dose {n['normal_dose_noise_hu']:.1f} (measured on the "
            f"test slices {n['normal_dose_noise_hu_measured']}), low dose aimed at "
            f"{n['low_dose_noise_hu_target']:.1f} (measured {n['low_dose_noise_hu_measured']})"
            for n in noise) + ".", ""]
    walls = [r["wall_s"] - r.get("pretrain_s", 0.0) for r in records]
    lines += [f"Wall time per cell (train both arms and evaluate both parts, one thread; the "
              f"pretrained models shared, their training left out): "
              f"{min(walls):.0f}-{max(walls):.0f} s.", ""]
    if READING.is_file():  # written by hand after the runs
        lines += [READING.read_text().rstrip(), ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help=f"the real-CT data root (or ${DATA_ENV})")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pretrained", type=Path, default=ROOT / "build" / "real-pretrained")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="score the task on the validation patient")
    v.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="run-file overrides, e.g. data.options.contrast_hu=[40,120]")
    r = sub.add_parser("run", help="run the missing cells")
    r.add_argument("--denoisers", nargs="+", default=list(DENOISERS))
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--out", type=Path, default=ROOT / "build" / "results")
    args = parser.parse_args(argv)
    root = _data_root(args.data)
    if args.command == "validate":
        print(json.dumps(validate(root, args.set, args.threads, args.pretrained)))
    else:
        run(root, args.denoisers, args.seeds, args.threads, args.out, args.pretrained)
    return 0


if __name__ == "__main__":
    sys.exit(main())
