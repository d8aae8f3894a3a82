"""The CPU kernels' own paths: blocks of channels (16 floats, 8 doubles) with a partial last
block, the 4 x 4 transposes and their scalar remainders, boxes whose samples skip columns,
every dtype, results bitwise equal for any thread count, and the baseline and AVX2 bodies
(``ATEN_CPU_CAPABILITY``) against torchvision."""

import os
import subprocess
import sys

import pytest
import torch
from roi_cases import pyramid, random_boxes, to_rois

from lidplug.ops._torchvision_path import torchvision_roi_perceptual_loss, torchvision_roi_pool

OPS = torch.ops.lidplug


def _case(seed, channels, *, dtype=torch.float32, image=128, num_levels=4, per_image=6,
          min_size=2.0):
    g = torch.Generator().manual_seed(seed)
    feats, scales = pyramid(2, channels, image, num_levels, generator=g, dtype=dtype)
    refs, _ = pyramid(2, channels, image, num_levels, generator=g, dtype=dtype)
    boxes = random_boxes(2, per_image, image, generator=g, min_size=min_size)
    return feats, refs, boxes, scales


def _grads_close(have, want, rtol=1e-4, scale_tol=1e-5):
    for h, w in zip(have, want, strict=True):
        w = w.detach()
        torch.testing.assert_close(h, w, rtol=rtol, atol=scale_tol * float(w.abs().max()) + 1e-7)


def _loss_and_grads(feats, refs, rois, scales, sampling_ratio=2, aligned=False, reduction="mean",
                    upstream=None):
    feats = [t.detach().requires_grad_() for t in feats]
    refs = [t.detach().requires_grad_() for t in refs]
    loss = OPS.roi_perceptual_loss(feats, refs, rois, scales, 7, 7, sampling_ratio, aligned,
                                   reduction)
    grads = torch.autograd.grad(loss, feats + refs, upstream)
    return loss, grads


# 1, 3 and 5: fewer channels than one SSE group; 17 and 33: a partial last block of 16 (and 8
# for float64) whose remainder is not a multiple of 4; 36: blocks of whole groups of 4.
@pytest.mark.parametrize("channels", [1, 3, 5, 17, 33, 36])
@pytest.mark.parametrize("aligned", [False, True])
def test_channel_counts_match_torchvision(channels, aligned):
    feats, refs, boxes, scales = _case(channels, channels)
    rois = to_rois(boxes)
    expected = torchvision_roi_perceptual_loss(
        [t.requires_grad_() for t in feats], [t.requires_grad_() for t in refs], boxes, (7, 7),
        scales, 2, aligned, "none")
    upstream = torch.rand(expected.shape, generator=torch.Generator().manual_seed(0)) + 0.5
    want = torch.autograd.grad(expected, feats + refs, upstream)
    loss, have = _loss_and_grads(feats, refs, rois, scales, 2, aligned, "none", upstream)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    _grads_close(have, want)
    pooled = OPS.roi_pool(feats, rois, scales, 7, 7, 2, aligned)
    assert pooled.is_contiguous()
    torch.testing.assert_close(pooled, torchvision_roi_pool(feats, boxes, (7, 7), scales, 2,
                                                            aligned), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [3, 20])
@pytest.mark.parametrize("sampling_ratio", [1, 2])
def test_boxes_whose_samples_skip_columns(channels, sampling_ratio):
    # One 128 x 128 map at scale 1 and boxes of 60 px up to the whole map: samples several
    # pixels apart, so the pixels a box touches are no run of columns (the indexed path).
    g = torch.Generator().manual_seed(7)
    feats = [torch.randn(2, channels, 128, 128, generator=g).requires_grad_()]
    refs = [torch.randn(2, channels, 128, 128, generator=g)]
    boxes = random_boxes(2, 5, 128, generator=g, min_size=60.0)
    expected = torchvision_roi_perceptual_loss(feats, refs, boxes, (7, 7), [1.0], sampling_ratio)
    want = torch.autograd.grad(expected, feats)
    loss, have = _loss_and_grads(feats, refs, to_rois(boxes), [1.0], sampling_ratio)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    _grads_close(have[:1], want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("channels", [4, 19])
def test_dtypes_match_torchvision(dtype, channels):
    feats, refs, boxes, scales = _case(3, channels)
    rois = to_rois(boxes)
    # The oracle in float64, on the values the low-precision tensors hold.
    wide = [[t.to(dtype).double().requires_grad_() for t in ts] for ts in (feats, refs)]
    expected = torchvision_roi_perceptual_loss(*wide, [b.double() for b in boxes], (7, 7), scales)
    want = torch.autograd.grad(expected, wide[0] + wide[1])
    loss, have = _loss_and_grads([t.to(dtype) for t in feats], [t.to(dtype) for t in refs], rois,
                                 scales)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert all(h.dtype == dtype for h in have)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(loss.double(), expected, rtol=tol, atol=tol)
    # Gradients are rounded to the features' dtype at the end.
    grad_tol = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float64: 1e-10}[dtype]
    _grads_close([h.double() for h in have], want, rtol=grad_tol, scale_tol=grad_tol)
    pooled = OPS.roi_pool([t.to(dtype) for t in feats], rois, scales, 7, 7, 2, False)
    assert pooled.dtype == dtype
    torch.testing.assert_close(
        pooled.double(),
        torchvision_roi_pool([w.detach() for w in wide[0]], [b.double() for b in boxes], (7, 7),
                             scales),
        rtol=grad_tol * 10, atol=grad_tol * 10)


def _run_all(feats, refs, rois, scales):
    loss, grads = _loss_and_grads(feats, refs, rois, scales, reduction="none",
                                  upstream=torch.linspace(0.5, 1.5, rois.shape[0]))
    _, diff = OPS._roi_perceptual_loss_forward(feats, refs, rois, scales, 7, 7, 0, True, "sum")
    pooled = OPS.roi_pool(feats, rois, scales, 7, 7, 2, False)
    pool_grads = OPS.roi_pool_backward(torch.ones_like(pooled), rois, scales, 2, feats[0].shape[1],
                                       [t.shape[2] for t in feats], [t.shape[3] for t in feats],
                                       2, False, False, torch.float32)
    return [loss, *grads, diff, pooled, *pool_grads]


@pytest.mark.parametrize("channels", [21, 64])
def test_results_are_bitwise_equal_for_any_thread_count(channels):
    feats, refs, boxes, scales = _case(11, channels, image=256, per_image=40)
    rois = to_rois(boxes)
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(_run_all(feats, refs, rois, scales))
    finally:
        torch.set_num_threads(previous)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0], strict=True))


_SUBPROCESS = """
import sys, torch
sys.path.insert(0, {tests!r})
from roi_cases import pyramid, random_boxes, to_rois
from lidplug.ops._torchvision_path import torchvision_roi_perceptual_loss
import lidplug.ops
g = torch.Generator().manual_seed(5)
feats, scales = pyramid(2, 21, 128, 4, generator=g)
refs, _ = pyramid(2, 21, 128, 4, generator=g)
boxes = random_boxes(2, 8, 128, generator=g)
feats = [t.requires_grad_() for t in feats]
want_loss = torchvision_roi_perceptual_loss(feats, refs, boxes, (7, 7), scales)
want = torch.autograd.grad(want_loss, feats)
loss = torch.ops.lidplug.roi_perceptual_loss(feats, refs, to_rois(boxes), scales, 7, 7, 2, False,
                                             "mean")
have = torch.autograd.grad(loss, feats)
torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-7)
for h, w in zip(have, want):
    torch.testing.assert_close(h, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()) + 1e-7)
print(torch.backends.cpu.get_cpu_capability())
"""


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_instruction_set_variants_match_torchvision(capability, tmp_path):
    # ATen's capability picks the kernels' bodies (baseline SSE, AVX2 or AVX-512); lowering it
    # runs the narrower ones on this CPU. The fresh process runs in a temporary folder, so it
    # imports the installed lidplug (with its compiled library), not the checkout's sources.
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    code = _SUBPROCESS.format(tests=os.path.dirname(__file__))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    if capability == "default":
        assert out.stdout.strip() == "DEFAULT"
