"""Regenerate the pretrained models shipped in ``lidplug/zoo`` (a developer tool, not installed).

    python tools/pretrained.py NAME [NAME ...] [--threads N] [--out build/pretrained]
    python tools/pretrained.py --all

For each model: train its run file (``lidplug/zoo/runs/NAME.toml``) with the library's own
pipeline, keep the model the run is for (the denoiser or the detector), store it as a float16
state dict in ``lidplug/zoo/weights/NAME.pt``, score it on its run's test slices (denoisers:
RMSE against the noise-free phantom inside the body, input vs output; detectors: observer CPM
on normal-dose vs low-dose slices) and rewrite its entry of ``lidplug/zoo/manifest.json``
(class, arguments, file, SHA-256, the scores, the wall time, torch version).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

#: name -> (role, description)
MODELS = {
    "redcnn": ("denoiser", "RED-CNN (32 channels), pixel loss, phantoms at dose 0.1"),
    "dncnn": ("denoiser", "DnCNN (10 layers, 32 channels), pixel loss, phantoms at dose 0.1"),
    "unet": ("denoiser", "U-Net (16 base channels, depth 3), pixel loss, phantoms at dose 0.1"),
    "detector-frcnn": ("detector", "Faster R-CNN that LIDnet's feedback starts from, trained "
                                   "on normal-dose phantom slices"),
    "observer-frcnn": ("detector", "observer 1: Faster R-CNN (another seed), normal-dose "
                                   "slices only, never updated by an arm"),
    "observer-fcos": ("detector", "observer 2: FCOS (another architecture), normal-dose slices "
                                  "only, never updated by an arm"),
}


def _half(state: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def _score(role: str, spec, folder, model) -> dict:
    from lidplug.metrics import froc_from_matches, match_detections, rmse_hu
    from lidplug.pipeline import held_out
    from lidplug.pipeline.evaluate import denoise, detect

    held = held_out(spec, "test", folder)
    if role == "denoiser":
        ref = held.truth
        low = rmse_hu(held.window.inverse(held.low), ref, window=None, mask=held.body).mean()
        out = rmse_hu(held.window.inverse(denoise(model, held.low)), ref, window=None,
                      mask=held.body).mean()
        return {"test_slices": len(held), "rmse_hu_low_dose": round(float(low), 2),
                "rmse_hu_denoised": round(float(out), 2),
                "rmse_reduction": round(float(1 - out / low), 3)}
    scores = {}
    for key, images in (("normal_dose", held.normal), ("low_dose", held.low)):
        m = match_detections(detect(model, images), held.targets,
                             criterion=spec.evaluate.hit_rule)
        scores[f"cpm_{key}"] = round(froc_from_matches(m).cpm, 3)
    return {"test_slices": len(held), "hit_rule": spec.evaluate.hit_rule, **scores}


def regenerate(name: str, out: Path, threads: int | None) -> dict:
    from lidplug.pipeline import build_model, load_run, train
    from lidplug.zoo import RUNS, WEIGHTS, sha256_of

    role, description = MODELS[name]
    spec, folder = load_run(RUNS / f"{name}.toml")
    if threads is not None:
        spec.threads = threads
    start = time.perf_counter()
    arms = train(spec, out / name, folder)
    seconds = time.perf_counter() - start
    model = getattr(arms[spec.arms[0].name].model, role)
    path = WEIGHTS / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_half(model.state_dict()), path)
    model_spec = spec.model_spec(role)
    # Score the model as it is shipped: rebuilt from the stored float16 file.
    from lidplug.pipeline import ModelSpec

    shipped = build_model(ModelSpec(model=model_spec.model, weights=str(path)), role).eval()
    return {"role": role, "class_path": model_spec.class_path,
            "init_args": model_spec.model["init_args"], "file": path.name, "sha256": sha256_of(path),
            "run": f"{name}.toml", "description": description,
            "trained": {"seconds": round(seconds), "threads": spec.threads or torch.get_num_threads(),
                        "torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(),
                        **_score(role, spec, folder, shipped)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", choices=[*MODELS, []], metavar="NAME",
                        help=f"models to regenerate: {', '.join(MODELS)}")
    parser.add_argument("--all", action="store_true", help="every model")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "pretrained",
                        help="where the training runs go")
    args = parser.parse_args(argv)
    names = list(MODELS) if args.all else args.names
    if not names:
        parser.error("name at least one model, or --all")
    manifest_path = ROOT / "lidplug" / "zoo" / "manifest.json"
    for name in names:
        entry = regenerate(name, args.out, args.threads)
        # Re-read before writing: several regenerations may run side by side.
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        manifest[name] = entry
        manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
        print(f"{name}: {json.dumps(entry['trained'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
