"""Denoiser inference: eager vs the exported files (lidplug.export) vs torch.compile.

Run: ``pytest benchmarks/test_bench_inference.py --benchmark-enable --benchmark-json=out.json``,
then ``python benchmarks/report.py out.json``. One group per case, so every path is timed side by
side on the same inputs. On a shared CPU, where load changes within a run, use
``python benchmarks/test_bench_inference.py [ROUNDS]`` instead: it runs the entries round-robin
(one call of each per round), so all see the same load, and prints medians and ratios to eager. The model is RED-CNN (``lidplug.models``, 96 channels, as in the paper);
the CUDA case is PERF.md's anchor shape (8 x 512^2; H100: eager fp32 53 ms, frozen TorchScript
52 ms, torch.compile 38 ms, bf16 43 ms). The target: the exported TorchScript is not slower than
eager.

Entries: ``eager`` (fp32), ``eager-bf16`` (weights cast to bfloat16), ``script`` (frozen
TorchScript from ``lidplug.export``), ``script-bf16`` (its ``dtype="bfloat16"`` variant),
``pt2`` (the torch.export program), ``compile`` (``torch.compile`` of the eager model, default
mode; its compile time is spent in warm-up, not timed).
"""

from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path

import pytest
import torch
from interleave import interleaved_medians, print_ratios

from lidplug import deploy
from lidplug.data import HUWindow
from lidplug.models import create_denoiser

CASES = {
    # name: (device, batch, image size). CPU: RED-CNN's 96-channel 5x5 layers take about a
    # second per 128^2 slice on two cores, so the CPU case is one small slice.
    "cpu-redcnn-1x128": ("cpu", 1, 128),
    "cuda-redcnn-8x512": ("cuda", 8, 512),
}
IMPLS = ("eager", "eager-bf16", "script", "script-bf16", "pt2", "compile")


def _export_all(root):
    """The RED-CNN and its exports: (model, {entry: path})."""
    torch.manual_seed(0)
    model = create_denoiser("redcnn").eval()
    paths = {"script": root / "redcnn.pt", "script-bf16": root / "redcnn-bf16.pt",
             "pt2": root / "redcnn.pt2"}
    deploy.export(model, paths["script"])
    deploy.export(model, paths["script-bf16"], dtype=torch.bfloat16)
    deploy.export(model, paths["pt2"])
    return model, paths


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return _export_all(tmp_path_factory.mktemp("bench-inference"))


def _input(batch, size, device):
    g = torch.Generator().manual_seed(1)
    return HUWindow()(deploy.hu_like_slices((batch, 1, size, size), generator=g)).to(device)


def _runner(impl, model, paths, device):
    if impl == "eager":
        return model.to(device)
    if impl == "eager-bf16":
        bf16 = create_denoiser("redcnn").eval()
        bf16.load_state_dict(model.state_dict())
        net = bf16.to(device, torch.bfloat16)
        return lambda x: net(x.to(torch.bfloat16)).float()
    if impl == "compile":
        return torch.compile(model.to(device))
    return deploy.load(paths[impl], map_location=device)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_denoiser_inference(benchmark, exported, case, impl):
    device, batch, size = CASES[case]
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model, paths = exported
    x = _input(batch, size, device)
    run = _runner(impl, model, paths, device)

    def step():
        with torch.inference_mode():
            out = run(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.group = case
    benchmark.extra_info.update(device=device, torch=torch.__version__, shape=[batch, 1, size, size],
                                threads=torch.get_num_threads())
    if device == "cuda":
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
        benchmark.pedantic(step, rounds=50, warmup_rounds=5)
    else:
        # Warm-up covers torch.compile's compilation and TorchScript's profiling runs.
        benchmark.pedantic(step, rounds=10, warmup_rounds=3)


def _interleaved(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        model, paths = _export_all(Path(root))
        for case, (device, batch, size) in CASES.items():
            if device == "cuda" and not torch.cuda.is_available():
                continue
            x = _input(batch, size, device)
            runners = {impl: _runner(impl, model, paths, device) for impl in IMPLS}
            sync = torch.cuda.synchronize if device == "cuda" else None
            with torch.inference_mode():
                # 3 warm-up rounds: compilation, TorchScript's profiling runs.
                medians = interleaved_medians({k: partial(run, x) for k, run in runners.items()},
                                              rounds, warmup=3, sync=sync)
            print_ratios(f"{case}: torch {torch.__version__}, {torch.get_num_threads()} threads, "
                         f"{rounds} interleaved rounds", medians, "eager")


if __name__ == "__main__":
    _interleaved(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
