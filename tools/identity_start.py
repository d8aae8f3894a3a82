"""Does a third-party denoiser need an identity start? (a developer tool, not installed)

    python tools/identity_start.py [--steps 100] [--threads N] [NAME ...]

For each run file ``examples/byo/NAME.toml`` (default: the models that do not start as the
identity), trains the denoiser with the pixel loss alone, from the same seed and on the same
batches, twice: as it is, and behind :class:`lidplug.models.IdentityStart`; then prints the
RMSE in HU, inside the body, against the noise-free phantom, of the noisy input and of both
results on the run's test slices. The run's own data and schedule apply, except the number of
steps (one round of ``--steps``), no detector steps and a 16-slice test split. The figures
quoted in ``lidplug/models/adapt.py`` come from this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch

from lidplug.metrics import rmse_hu
from lidplug.pipeline import ArmSpec, held_out, load_run, make_split
from lidplug.pipeline.train import starting_models, train_arm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["ldct-cnn10", "deepinv-dncnn", "monai-basicunet", "ldct-redcnn"]
PACKAGES = {"ldct": "ldctbench", "deepinv": "deepinv", "monai": "monai"}


def _rmse(held, images) -> float:
    reference = held.noise_free if held.noise_free is not None else held.truth
    return float(rmse_hu(held.window.inverse(images), reference, window=None,
                         mask=held.body).mean())


def measure(name: str, steps: int, threads: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for gate in (False, True):
        spec, folder = load_run(ROOT / "examples" / "byo" / f"{name}.toml", [
            "--threads", str(threads), "--train.rounds", "1", "--train.denoiser_steps",
            str(steps), "--train.device", "cpu", "--train.progress", "false", "--data.test",
            "16", "--data.train", "128", "--denoiser.identity_start", str(gate).lower()])
        spec.arms = [ArmSpec("baseline", feedback=False)]
        torch.set_num_threads(threads)
        denoiser, detector = starting_models(spec, folder)
        held = held_out(spec, "test", folder)
        out.setdefault("noisy input", _rmse(held, held.low))
        start = time.perf_counter()
        arm = train_arm(spec, spec.arms[0], denoiser, detector, make_split(spec, "train", folder),
                        None, progress=False, export=False)
        with torch.no_grad():
            denoised = arm.model.denoiser.eval()(held.low)
        out["identity start" if gate else "as it is"] = _rmse(held, denoised)
        out[f"seconds ({'gated' if gate else 'plain'})"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=DEFAULT)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for name in args.names:
        package = PACKAGES[name.split("-")[0]]
        if importlib.util.find_spec(package) is None:
            print(f"{name}: skipped (needs {package})")
            continue
        scores = measure(name, args.steps, args.threads)
        print(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()), flush=True)


if __name__ == "__main__":
    main()
