"""lidplug.ops.roi_perceptual_loss: values and gradients equal to torchvision + F.mse_loss."""

import os
import subprocess
import sys

import pytest
import torch
from roi_cases import pyramid, random_boxes, to_rois

from lidplug import ops
from lidplug.ops._torchvision_path import torchvision_roi_perceptual_loss


def _case(seed, batch=2, channels=4, image=128, num_levels=4, per_image=6, dtype=torch.float32,
          device="cpu"):
    g = torch.Generator().manual_seed(seed)
    feats, scales = pyramid(batch, channels, image, num_levels, generator=g, dtype=dtype)
    refs, _ = pyramid(batch, channels, image, num_levels, generator=g, dtype=dtype)
    boxes = random_boxes(batch, per_image, image, generator=g, dtype=dtype)
    move = lambda ts: [t.to(device) for t in ts]  # noqa: E731
    return move(feats), move(refs), move(boxes), scales


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("num_levels", [1, 4])
def test_matches_torchvision_values_and_grads(impl, num_levels, sampling_ratio, aligned, reduction):
    feats, refs, boxes, scales = _case(10 * num_levels + sampling_ratio + aligned,
                                       num_levels=num_levels)
    feats = [t.requires_grad_() for t in feats]
    refs = [t.requires_grad_() for t in refs]
    expected = torchvision_roi_perceptual_loss(feats, refs, boxes, (7, 7), scales, sampling_ratio,
                                               aligned, reduction)
    got = ops.roi_perceptual_loss(feats, refs, to_rois(boxes), 7, scales, sampling_ratio, aligned,
                                  reduction)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    upstream = torch.rand_like(expected) + 0.5
    inputs = feats + refs
    want = torch.autograd.grad(expected, inputs, upstream, allow_unused=True, materialize_grads=True)
    have = torch.autograd.grad(got, inputs, upstream, allow_unused=True, materialize_grads=True)
    for w, h in zip(want, have, strict=True):
        # Float32 rounding of sums of many taps: judge against the gradient's own scale.
        torch.testing.assert_close(h, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()) + 1e-8)


def test_reference_grad_only_when_requested():
    feats, refs, boxes, scales = _case(1)
    feats = [t.requires_grad_() for t in feats]
    loss = ops.roi_perceptual_loss(feats, refs, boxes, 7, scales)
    loss.backward()
    assert all(t.grad is not None for t in feats)
    assert all(t.grad is None for t in refs)


def test_no_boxes_gives_zero_loss_and_zero_grads(impl):
    feats, refs, _, scales = _case(2)
    feats = [t.requires_grad_() for t in feats]
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    for reduction in ("mean", "sum"):
        loss = ops.roi_perceptual_loss(feats, refs, empty, 7, scales, reduction=reduction)
        assert loss.item() == 0.0
        grads = torch.autograd.grad(loss, feats, allow_unused=True, materialize_grads=True)
        assert all(bool((g == 0).all()) for g in grads)
    none = ops.roi_perceptual_loss(feats, refs, torch.zeros(0, 5), 7, scales, reduction="none")
    assert none.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_features_accumulate_in_float32(dtype):
    feats, refs, boxes, scales = _case(3)
    expected = torchvision_roi_perceptual_loss(feats, refs, boxes, (7, 7), scales)
    half = [t.to(dtype).requires_grad_() for t in feats]
    got = ops.roi_perceptual_loss(half, [t.to(dtype) for t in refs], boxes, 7, scales)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=1e-3)
    got.backward()
    assert all(t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in half)


def test_gradcheck_float64_both_pyramids():
    feats, refs, boxes, scales = _case(4, channels=2, image=32, num_levels=2, per_image=3,
                                       dtype=torch.float64)
    rois = to_rois(boxes)
    n = len(feats)
    inputs = [t.requires_grad_() for t in feats + refs]
    for reduction in ("mean", "none"):
        def fn(*levels, reduction=reduction):
            return ops.roi_perceptual_loss(list(levels[:n]), list(levels[n:]), rois, 3, scales, 0,
                                           True, reduction)
        assert torch.autograd.gradcheck(fn, inputs)


def test_opcheck():
    feats, refs, boxes, scales = _case(5, channels=2, image=64, num_levels=3, per_image=3)
    rois = to_rois(boxes)
    feats = [t.requires_grad_() for t in feats]
    forward = torch.ops.lidplug._roi_perceptual_loss_forward.default
    torch.library.opcheck(forward, (feats, refs, rois, scales, 7, 7, 2, False, "mean"))
    torch.library.opcheck(forward, (feats, refs, rois, scales, 5, 5, 0, True, "none"))
    torch.library.opcheck(torch.ops.lidplug.roi_pool.default, (feats, rois, scales, 7, 7, 2, True))
    heights, widths = [f.shape[2] for f in feats], [f.shape[3] for f in feats]
    grad = torch.randn(rois.shape[0], 2, 7, 7)
    torch.library.opcheck(torch.ops.lidplug.roi_pool_backward.default,
                          (grad, rois, scales, 2, 2, heights, widths, 2, False, False, torch.float32))
    torch.library.opcheck(torch.ops.lidplug.roi_perceptual_loss_backward.default,
                          (torch.tensor(1.0), grad, rois, scales, 2, 2, heights, widths, 2, False,
                           "mean", False, True, torch.float32))


def test_torch_compile_fullgraph_has_no_graph_break():
    feats, refs, boxes, scales = _case(6, channels=2, image=64, num_levels=3, per_image=3)
    feats = [t.requires_grad_() for t in feats]

    def step(levels, ref_levels, boxes):
        return ops.roi_perceptual_loss(levels, ref_levels, boxes, 7, scales) * 2.0

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = compiled(feats, refs, boxes)
    want = step(feats, refs, boxes)
    torch.testing.assert_close(got, want)
    g1 = torch.autograd.grad(got, feats)
    g2 = torch.autograd.grad(want, feats)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)


def test_torchscript_calls_the_registered_op():
    @torch.jit.script
    def scripted(levels: list[torch.Tensor], ref_levels: list[torch.Tensor], rois: torch.Tensor,
                 scales: list[float]) -> torch.Tensor:
        return torch.ops.lidplug.roi_perceptual_loss(levels, ref_levels, rois, scales, 7, 7, 2,
                                                     False, "mean")

    feats, refs, boxes, scales = _case(7)
    got = scripted(feats, refs, to_rois(boxes), scales)
    torch.testing.assert_close(got, ops.roi_perceptual_loss(feats, refs, boxes, 7, scales))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_deterministic_mode_is_bitwise_repeatable(device):
    feats, refs, boxes, scales = _case(8, channels=8, image=256, per_image=128, device=device)
    feats = [t.requires_grad_() for t in feats]
    rois = to_rois(boxes)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = [torch.autograd.grad(ops.roi_perceptual_loss(feats, refs, rois, 7, scales), feats)
                for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(previous)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0], strict=True))


def test_fallback_warns_once_and_still_computes():
    code = (
        "import warnings, torch\n"
        "from lidplug import ops\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    f = [torch.randn(1, 2, 16, 16, requires_grad=True)]\n"
        "    for _ in range(2):\n"
        "        loss = ops.roi_perceptual_loss(f, [torch.randn(1, 2, 16, 16)],\n"
        "                                       torch.tensor([[0., 1., 1., 9., 9.]]), 3, 0.5)\n"
        "    loss.backward()\n"
        "msgs = [str(x.message) for x in w if 'pure-PyTorch' in str(x.message)]\n"
        "assert len(msgs) == 1, msgs\n"
        "assert 'LIDPLUG_DISABLE_EXTENSION' in msgs[0]\n"
        "assert f[0].grad.abs().sum() > 0\n"
        "print('fallback-ok')\n"
    )
    env = dict(os.environ, LIDPLUG_DISABLE_EXTENSION="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "fallback-ok" in out.stdout


@pytest.mark.cuda
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("num_levels", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype, num_levels, sampling_ratio, aligned, deterministic):
    feats, refs, boxes, scales = _case(9, channels=8, image=256, num_levels=num_levels,
                                       per_image=32)
    cpu_feats = [t.requires_grad_() for t in feats]
    expected = torchvision_roi_perceptual_loss(cpu_feats, refs, boxes, (7, 7), scales,
                                               sampling_ratio, aligned)
    expected.backward()
    cuda_feats = [t.detach().to("cuda", dtype).requires_grad_() for t in feats]
    cuda_refs = [t.to("cuda", dtype) for t in refs]
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        got = ops.roi_perceptual_loss(cuda_feats, cuda_refs, [b.cuda() for b in boxes], 7, scales,
                                      sampling_ratio, aligned)
        got.backward()
    finally:
        torch.use_deterministic_algorithms(previous)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got.cpu(), expected, rtol=tol, atol=tol)
    for c, g in zip(cuda_feats, cpu_feats, strict=True):
        scale = float(g.grad.abs().max())
        torch.testing.assert_close(c.grad.float().cpu(), g.grad, rtol=tol, atol=tol * scale)
