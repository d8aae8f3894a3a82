"""Bad input to the ROI ops: a clear error naming what was expected and what came, never a crash
or silent garbage; the compiled ops and the pure-PyTorch fallback refuse the same inputs."""

import subprocess
import sys

import pytest
import torch

from lidplug import ops


def _levels(batch=2, channels=3, sizes=(32, 16), dtype=torch.float32):
    return [torch.randn(batch, channels, s, s, dtype=dtype) for s in sizes]


SCALES = [0.25, 0.125]
ROIS = torch.tensor([[0.0, 4.0, 4.0, 60.0, 40.0], [1.0, 0.0, 0.0, 20.0, 20.0]])


def _loss(features, ref=None, rois=ROIS, scales=SCALES, **kw):
    ref = _levels() if ref is None else ref
    return ops.roi_perceptual_loss(features, ref, rois, 7, scales, **kw)


CASES = {
    "rank": (lambda: _loss([torch.randn(3, 32, 32), torch.randn(3, 16, 16)]),
             r"features\[0\]: expected a 4-D tensor \[B, C, H, W\], got shape \[3, 32, 32\]"),
    "channels between levels": (lambda: _loss([torch.randn(2, 3, 32, 32), torch.randn(2, 4, 16, 16)]),
                                r"features\[1\]: expected batch and channels \[2, 3\].*got \[2, 4\]"),
    "channels between pyramids": (lambda: _loss(_levels(), _levels(channels=5)),
                                  r"ref_features\[0\]: expected .*shape \[2, 3, 32, 32\].*got.*\[2, 5, 32, 32\]"),
    "dtype between pyramids": (lambda: _loss(_levels(), _levels(dtype=torch.float64)),
                               r"ref_features\[0\]: expected .*dtype torch.float32|expected dtype Float"),
    "level count vs pyramids": (lambda: _loss(_levels(), _levels(sizes=(32,)), scales=SCALES),
                                r"ref_features: expected as many levels as features \(2\), got 1"),
    "level count vs scales": (lambda: _loss(_levels(), scales=[0.25]),
                              r"spatial_scales: expected one scale per level \(2\), got 1"),
    "scales not a pyramid": (lambda: _loss(_levels(), scales=[0.25, 0.2]),
                             r"spatial_scales: expected consecutive power-of-two scales"),
    "boxes shape": (lambda: _loss(_levels(), rois=torch.zeros(3, 4)),
                    r"boxes: expected a \[K, 5\] tensor .* got shape \[3, 4\]"),
    "list boxes shape": (lambda: _loss(_levels(), rois=[torch.zeros(2, 5), torch.zeros(1, 4)]),
                         r"boxes\[0\]: expected a Tensor\[L, 4\] .* got shape \(2, 5\)"),
    "batch index too large": (lambda: _loss(_levels(), rois=torch.tensor([[2.0, 1, 1, 9, 9]])),
                              r"boxes\[0\]: expected an integer batch index in \[0, 2\), got 2"),
    "batch index negative": (lambda: _loss(_levels(), rois=torch.tensor([[0.0, 1, 1, 9, 9],
                                                                          [-1.0, 1, 1, 9, 9]])),
                             r"boxes\[1\]: expected an integer batch index in \[0, 2\), got -1"),
    "batch index fractional": (lambda: _loss(_levels(), rois=torch.tensor([[0.5, 1, 1, 9, 9]])),
                               r"boxes\[0\]: expected an integer batch index .* got 0.5"),
    "nan coordinate": (lambda: _loss(_levels(), rois=torch.tensor([[0.0, 1, float("nan"), 9, 9]])),
                       r"boxes\[0\]: expected finite coordinates, got \(0.*nan"),
    "inf coordinate": (lambda: _loss(_levels(), rois=torch.tensor([[1.0, 1, 1, float("inf"), 9]])),
                       r"boxes\[0\]: expected finite coordinates, got \(1.*inf"),
    "reduction": (lambda: _loss(_levels(), reduction="avg"),
                  r"reduction: expected one of \('mean', 'sum', 'none'\), got 'avg'"),
    "output size": (lambda: ops.roi_pool(_levels(), ROIS, 0, SCALES),
                    r"output_size: expected a positive int or \(h, w\), got \(0, 0\)"),
    "no scales": (lambda: ops.roi_pool(_levels(), ROIS, 7),
                  r"spatial_scales: expected one scale per level .* got neither"),
    "no levels": (lambda: ops.roi_pool([], ROIS, 7, []),
                  r"features: expected at least one feature level, got none"),
    "no levels in a mapping": (lambda: ops.roi_pool({}, [torch.zeros(1, 4)], 7, []),
                               r"features: expected at least one feature level, got none"),
    "no reference levels": (lambda: ops.roi_perceptual_loss(_levels(), [], ROIS, 7, SCALES),
                            r"ref_features: expected at least one feature level, got none"),
    "image size": (lambda: ops.roi_pool(_levels(), ROIS, 7, image_size=(0, 128)),
                   r"image_size: expected two positive sizes \(H, W\), got \(0, 128\)"),
}

# Meta tensors (shapes without data) beside real ones: the dispatcher picks the meta (fake)
# kernel for the whole call, so the checks must be there too, or the call returns an
# uninitialised tensor on the real tensors' device.
META = "meta"
META_CASES = {
    "one-level reference on meta": (
        lambda: ops.roi_perceptual_loss(_levels()[0], _levels()[0].to(META), ROIS, 7, 0.25),
        r"ref_features\[0\]: expected .*cpu.*got .*meta"),
    "reference pyramid on meta": (
        lambda: ops.roi_perceptual_loss(_levels(), [t.to(META) for t in _levels()], ROIS, 7,
                                        SCALES),
        r"ref_features\[0\]: expected .*cpu.*got .*meta"),
    "boxes on meta": (lambda: ops.roi_pool(_levels(), ROIS.to(META), 7, SCALES),
                      r"boxes: expected device cpu like the features, got meta"),
    "list boxes on meta": (lambda: ops.roi_pool(_levels(), [b.to(META) for b in _boxes()], 7,
                                                SCALES),
                           r"boxes\[0\]: expected device cpu like the features, got meta"),
    "features on meta": (lambda: ops.roi_pool([t.to(META) for t in _levels()], ROIS, 7, SCALES),
                         r"boxes: expected device meta like the features, got cpu"),
    "one level on meta": (lambda: ops.roi_pool([_levels()[0], _levels()[1].to(META)], ROIS, 7,
                                               SCALES),
                          r"features\[1\]: expected .*cpu.*got .*meta"),
    "loss boxes on meta": (lambda: _loss(_levels(), rois=ROIS.to(META)),
                           r"boxes: expected device cpu like the features, got meta"),
}


def _boxes():
    return [ROIS[ROIS[:, 0] == i, 1:] for i in range(2)]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_with_a_clear_message(impl, case):
    call, message = CASES[case]
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("case", list(META_CASES))
def test_meta_tensors_beside_real_ones_are_refused(impl, case):
    call, message = META_CASES[case]
    with pytest.raises(ValueError, match=message):
        call()


def test_meta_tensors_alone_give_shapes():
    # All inputs on meta: the fake kernels' shape inference, as torch.compile uses it.
    out = ops.roi_pool([t.to(META) for t in _levels()], ROIS.to(META), (5, 3), SCALES)
    assert out.device.type == META and out.shape == (2, 3, 5, 3)
    loss = ops.roi_perceptual_loss([t.to(META) for t in _levels()],
                                   [t.to(META) for t in _levels()], ROIS.to(META), 7, SCALES,
                                   reduction="none")
    assert loss.device.type == META and loss.shape == (2,)


@pytest.mark.parametrize("op", ["roi_pool_backward", "roi_perceptual_loss_backward"])
def test_backward_ops_refuse_meta_beside_real_tensors(op):
    grad, rois = torch.randn(2, 3, 7, 7), ROIS
    sizes = ([32, 16], [32, 16])
    if op == "roi_pool_backward":
        def call(g, r):
            return torch.ops.lidplug.roi_pool_backward(g, r, SCALES, 2, 3, *sizes, 2, False,
                                                       False, torch.float32)
    else:
        def call(g, r):
            return torch.ops.lidplug.roi_perceptual_loss_backward(
                torch.tensor(1.0, device=g.device), g, r, SCALES, 2, 3, *sizes, 2, False,
                "mean", False, True, torch.float32)
    with pytest.raises(ValueError, match=r"expected device cpu .*got meta"):
        call(grad, rois.to(META))
    with pytest.raises(ValueError, match=r"expected device meta .*got cpu"):
        call(grad.to(META), rois)
    with pytest.raises(ValueError, match=r"expected at least one feature level, got none"):
        torch.ops.lidplug.roi_pool_backward(grad.to(META), rois.to(META), [], 2, 3, [], [], 2,
                                            False, False, torch.float32)
    assert [tuple(g.shape) for g in call(grad.to(META), rois.to(META))][:2] == [
        (2, 3, 32, 32), (2, 3, 16, 16)]


@pytest.mark.parametrize("bad", ["features", "boxes"])
def test_wrong_types_are_refused(impl, bad):
    if bad == "features":
        with pytest.raises(TypeError, match=r"features: expected a Tensor\[B, C, H, W\].* got str"):
            ops.roi_pool("not a tensor", ROIS, 7, SCALES)
    else:
        with pytest.raises(TypeError, match=r"boxes: expected a Tensor\[K, 5\].* got dict"):
            ops.roi_pool(_levels(), {"boxes": ROIS}, 7, SCALES)


def test_direct_op_call_checks_too():
    # C++ and TorchScript callers skip the Python wrapper: the op itself must refuse bad boxes.
    with pytest.raises(ValueError, match=r"expected an integer batch index in \[0, 2\), got 7"):
        torch.ops.lidplug.roi_pool(_levels(), torch.tensor([[7.0, 1, 1, 9, 9]]), SCALES, 7, 7, 2,
                                   False)


def test_boxes_partly_outside_behave_as_torchvision(impl):
    from torchvision.ops import roi_align

    feat = torch.randn(1, 2, 16, 16)
    rois = torch.tensor([[0.0, -20.0, -10.0, 30.0, 12.0], [0.0, 50.0, 50.0, 90.0, 95.0]])
    torch.testing.assert_close(ops.roi_pool(feat, rois, 4, 0.25, 0),
                               roi_align(feat, rois, 4, 0.25, 0), rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
def test_pyramids_on_different_devices_are_refused(impl):
    with pytest.raises(ValueError, match=r"ref_features\[0\]: expected .*(device|on) cpu"):
        _loss(_levels(), [t.cuda() for t in _levels()])
    with pytest.raises(ValueError, match=r"boxes: expected device cuda"):
        _loss([t.cuda() for t in _levels()], [t.cuda() for t in _levels()], rois=ROIS)


# Finite float32 boxes whose size overflows to inf: the first bin's samples are then NaN
# (0 * inf) and the others inf; with a zero height the area is NaN (inf * 0), which gives no
# FPN level. Run in a fresh process, because a regression here is an out-of-bounds read (a
# crash on the CPU, an illegal address on a GPU) rather than a wrong number.
_OVERFLOWING_BOXES = """
import torch
from lidplug import ops
from lidplug.ops._reference import roi_pool_reference
from torchvision.ops import MultiScaleRoIAlign
assert ops.extension_available(), ops.extension_error()
devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
g = torch.Generator().manual_seed(0)
one = [torch.randn(1, 2, 16, 16, generator=g)]
fpn = [torch.randn(1, 2, 16, 16, generator=g), torch.randn(1, 2, 8, 8, generator=g)]
cases = [
    # (levels, scales, rois, expected): one level, width overflows (NaN and inf samples)
    (one, [1.0], torch.tensor([[0.0, -3e38, 2.0, 3e38, 10.0]]), None),
    # two levels, NaN area (inf x 0), next to an ordinary box
    (fpn, [0.25, 0.125], torch.tensor([[0.0, -3e38, 5.0, 3e38, 5.0], [0.0, 4.0, 4.0, 40.0, 36.0]]),
     MultiScaleRoIAlign(["0", "1"], 3, 2)(dict(zip("01", fpn)), [torch.tensor(
         [[-3e38, 5.0, 3e38, 5.0], [4.0, 4.0, 40.0, 36.0]])], [(64, 64)])),
]
for levels, scales, rois, expected in cases:
    for sr in (0, 2):
        for aligned in (False, True):
            want = roi_pool_reference(levels, rois, (3, 3), scales, sr, aligned)
            if expected is not None and sr == 2 and not aligned:
                torch.testing.assert_close(want, expected)
            assert bool((want[0] == 0).all()), want
            grad = torch.randn_like(want)
            ref_grads = torch.autograd.grad(
                roi_pool_reference([t.requires_grad_() for t in levels], rois, (3, 3), scales, sr,
                                   aligned), levels, grad, allow_unused=True,
                materialize_grads=True)
            sizes = [t.shape[2] for t in levels], [t.shape[3] for t in levels]
            for device in devices:
                lv = [t.detach().to(device) for t in levels]
                r = rois.to(device)
                for ns in ("lidplug", "lidplug_cuda_emulated"):
                    if ns == "lidplug_cuda_emulated" and device != "cpu":
                        continue
                    op = getattr(torch.ops, ns)
                    got = op.roi_pool(lv, r, scales, 3, 3, sr, aligned)
                    torch.testing.assert_close(got.cpu(), want)
                    for det in (False, True):
                        grads = op.roi_pool_backward(grad.to(device), r, scales, 1, 2, *sizes,
                                                     sr, aligned, det, torch.float32)
                        for a, b in zip(grads, ref_grads):
                            torch.testing.assert_close(a.cpu(), b)
print("overflowing-boxes-ok")
"""


def _run_fresh(code: str, marker: str, cwd) -> None:
    # From outside the checkout, so the process imports the installed lidplug, not the sources.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=cwd)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-3000:]}"
    assert marker in out.stdout


def test_boxes_whose_size_overflows_pool_zeros_without_crashing(tmp_path):
    _run_fresh(_OVERFLOWING_BOXES, "overflowing-boxes-ok", tmp_path)


# The backward ops take the pyramid's sizes, not its tensors; called directly (C++, TorchScript)
# with no levels they must refuse, as the forward ops do. In a fresh process: the regression is
# a crash (an illegal-address write that kills the CUDA context on a GPU).
_NO_LEVELS_BACKWARD = """
import torch
from lidplug import ops
assert ops.extension_available(), ops.extension_error()
targets = [("lidplug", "cpu"), ("lidplug_cuda_emulated", "cpu")]
if torch.cuda.is_available():
    targets.append(("lidplug", "cuda"))
for ns, device in targets:
    op = getattr(torch.ops, ns)
    grad = torch.randn(1, 2, 7, 7, device=device)
    rois = torch.tensor([[0.0, 1, 1, 9, 9]], device=device)
    for det in (False, True):
        calls = [
            lambda: op.roi_pool_backward(grad, rois, [], 1, 2, [], [], 2, False, det,
                                         torch.float32),
            lambda: op.roi_perceptual_loss_backward(torch.tensor(1.0, device=device), grad, rois,
                                                    [], 1, 2, [], [], 2, False, "mean", det,
                                                    True, torch.float32),
        ]
        for call in calls:
            try:
                call()
            except ValueError as exc:
                assert "expected at least one feature level, got none" in str(exc), exc
            else:
                raise AssertionError(f"{ns} on {device}: no levels accepted")
print("no-levels-ok")
"""


def test_backward_without_levels_is_refused(tmp_path):
    _run_fresh(_NO_LEVELS_BACKWARD, "no-levels-ok", tmp_path)


def test_loss_backward_refuses_a_gradient_of_another_shape():
    # One value per box (reduction "none") or one scalar: anything else is named, not broadcast.
    diff = torch.zeros(2, 3, 7, 7)
    with pytest.raises(ValueError, match=r"grad: expected a scalar, or one value per box \(2\), "
                                         r"got shape \[3\]"):
        torch.ops.lidplug.roi_perceptual_loss_backward(
            torch.ones(3), diff, ROIS, SCALES, 2, 3, [32, 16], [32, 16], 2, False, "none", False,
            False, torch.float32)
