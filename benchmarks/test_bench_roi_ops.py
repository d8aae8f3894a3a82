"""ROI perceptual loss, forward + backward: fused op vs torchvision path vs pure-PyTorch reference.

Run: ``pytest benchmarks/test_bench_roi_ops.py --benchmark-enable --benchmark-json=out.json``,
then ``python benchmarks/report.py out.json`` prints the medians and the ratios per group. On a
shared CPU prefer ``python benchmarks/test_bench_roi_ops.py [ROUNDS] [THREADS ...]``: fused and
torchvision round-robin (see ``interleave.py``) on the CPU cases at each thread count (default 1
and 2), with the per-round ratio's quartiles and the load average before and after.
Shapes are those of ../shared/PERF.md and the core issue. ``extra_info`` carries the peak CUDA
memory of one step (CUDA) or the bytes autograd keeps for backward (CPU, where no allocator
statistics exist).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import pytest
import torch
from interleave import interleaved_times

from lidplug import ops
from lidplug.ops._reference import roi_perceptual_loss_reference
from lidplug.ops._torchvision_path import torchvision_roi_perceptual_loss

IMPLS = {
    "fused": lambda f, r, boxes, rois, scales: ops.roi_perceptual_loss(f, r, rois, 7, scales),
    "torchvision": lambda f, r, boxes, rois, scales: torchvision_roi_perceptual_loss(
        f, r, boxes, (7, 7), scales),
    "reference": lambda f, r, boxes, rois, scales: roi_perceptual_loss_reference(
        f, r, rois, (7, 7), scales),
}

CASES = {
    # name: (device, batch, channels, image size, levels, boxes per image)
    "cpu-fpn256-4box": ("cpu", 4, 256, 256, 4, 4),
    "cpu-fpn256-128box": ("cpu", 4, 256, 256, 4, 128),
    "cuda-level128-4box": ("cuda", 8, 256, 512, 1, 4),
    "cuda-fpn512-4box": ("cuda", 8, 256, 512, 4, 4),
    "cuda-fpn512-32box": ("cuda", 8, 256, 512, 4, 32),
    "cuda-fpn512-512box": ("cuda", 8, 256, 512, 4, 512),
}


def _inputs(device, batch, channels, image, num_levels, per_image):
    g = torch.Generator().manual_seed(0)
    strides = [4, 8, 16, 32][:num_levels]
    feats = [torch.randn(batch, channels, image // s, image // s, generator=g) for s in strides]
    refs = [torch.randn(batch, channels, image // s, image // s, generator=g) for s in strides]
    boxes = []
    for _ in range(batch):
        # Lesion-like boxes: 8 to 160 px, inside the image, spread over the pyramid's levels.
        u = torch.rand(per_image, 4, generator=g)
        size = 8 * (20 ** u[:, 2:])
        start = u[:, :2] * (image - size)
        boxes.append(torch.cat([start, start + size], 1))
    feats = [t.to(device).requires_grad_() for t in feats]
    refs = [t.to(device) for t in refs]
    boxes = [b.to(device) for b in boxes]
    rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)])
    return feats, refs, boxes, rois, [1.0 / s for s in strides]


def _saved_bytes(step):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", list(CASES))
def test_roi_perceptual_loss_fwd_bwd(benchmark, case, impl):
    device, *shape = CASES[case]
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if impl == "reference" and shape[-1] > 32:
        pytest.skip("the reference is a correctness baseline; too slow at this box count")
    feats, refs, boxes, rois, scales = _inputs(device, *shape)
    fn = IMPLS[impl]

    def step():
        loss = fn(feats, refs, boxes, rois, scales)
        grads = torch.autograd.grad(loss, feats, allow_unused=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return grads

    benchmark.group = case
    benchmark.extra_info.update(device=device, torch=torch.__version__, shape=shape)
    if device == "cuda":
        step()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        benchmark.extra_info["peak_bytes"] = torch.cuda.max_memory_allocated() - base
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
        benchmark.pedantic(step, rounds=50, warmup_rounds=5)
    else:
        benchmark.extra_info["saved_for_backward_bytes"] = _saved_bytes(
            lambda: fn(feats, refs, boxes, rois, scales))
        # Few boxes take milliseconds, many boxes on the torchvision path near a second.
        benchmark.pedantic(step, rounds=20 if shape[-1] <= 8 else 5, warmup_rounds=2)


def _step(fn, feats, refs, boxes, rois, scales):
    def step():
        loss = fn(feats, refs, boxes, rois, scales)
        return torch.autograd.grad(loss, feats, allow_unused=True)
    return step


def _interleaved(rounds: int, thread_counts: list[int]) -> None:
    """Fused vs torchvision, round-robin, per thread count: wall time, and with one thread also
    the calling thread's CPU time. The reference is left out: a third entry between the two
    would only change what the caches hold when each runs."""
    for threads in thread_counts:
        torch.set_num_threads(threads)
        clocks = {"wall": time.perf_counter}
        if threads == 1:
            clocks["thread CPU"] = time.thread_time
        for case, (device, *shape) in CASES.items():
            if device != "cpu":
                continue
            runners = {n: _step(IMPLS[n], *_inputs(device, *shape))
                       for n in ("fused", "torchvision")}
            n = rounds if shape[-1] <= 8 else max(rounds // 4, 5)
            load = os.getloadavg()[0]
            times = interleaved_times(runners, n, warmup=2, clocks=clocks)
            print(f"{case} (B, C, image, levels, boxes/img = {shape}), {threads} thread(s), "
                  f"{n} rounds, torch {torch.__version__}, load {load:.1f} -> "
                  f"{os.getloadavg()[0]:.1f}:")
            for clock, by_impl in times.items():
                ratios = [t / f for t, f in zip(by_impl["torchvision"], by_impl["fused"],
                                                strict=True)]
                q1, q2, q3 = statistics.quantiles(ratios, n=4)
                medians = {k: statistics.median(v) * 1e3 for k, v in by_impl.items()}
                print(f"  {clock:10s} " + ", ".join(f"{k} {v:.2f} ms" for k, v in medians.items())
                      + f"; torchvision / fused per round: median {q2:.2f} (quartiles {q1:.2f}-"
                        f"{q3:.2f})")


if __name__ == "__main__":
    _interleaved(int(sys.argv[1]) if len(sys.argv) > 1 else 30,
                 [int(t) for t in sys.argv[2:]] or [1, 2])
