"""Third-party denoisers adapted: units declared in HU, fixed forward arguments, identity start,
and the check ``wrap`` runs once on a small batch."""

import math

import pytest
import torch
from tiny_detectors import faster_rcnn
from torch import Tensor, nn

import lidplug
from lidplug import wrap
from lidplug.data import HUWindow
from lidplug.models import (
    LDCT_BENCHMARK_UNITS,
    ForwardArgs,
    HUUnits,
    IdentityStart,
    adapt_denoiser,
    check_denoiser,
)


class Recorder(nn.Module):
    """Identity that keeps what it was given (the units the model sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Tensor | None = None
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        self.seen = x.detach()
        return x * self.scale


class NeedsSigma(nn.Module):
    """deepinv's convention: forward(x, sigma), sigma in the model's units."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: Tensor, sigma: float) -> Tensor:
        return x - sigma * self.conv(x)


def test_units_from_mean_std_and_from_a_window():
    units = HUUnits(mean=-500.0, std=250.0)
    assert (units.mean, units.std, units.window) == (-500.0, 250.0, None)
    window = HUUnits(window=(-160, 240))
    assert (window.mean, window.std, window.window) == (-160.0, 400.0, (-160.0, 240.0))
    assert HUUnits.of({"window": [-160, 240]}) == window
    assert HUUnits.of(window.to_dict()) == window  # what a run record holds reads back
    assert HUUnits.of({"mean": -500, "std": 250}) == units
    # ldct-benchmark: (HU + 1024 - 481.454) / 502.185, its data/info.yml's mean and std.
    assert math.isclose(LDCT_BENCHMARK_UNITS.mean, 481.45419786099086 - 1024)
    assert math.isclose(LDCT_BENCHMARK_UNITS.std, 502.18507379395044)


@pytest.mark.parametrize(("given", "message"), [
    ({}, "expected mean and std"),
    ({"mean": 0.0}, "expected mean and std"),
    ({"mean": 0.0, "std": 0.0}, "std > 0"),
    ({"mean": math.nan, "std": 1.0}, "finite"),
    ({"window": (10.0, 10.0)}, "lo < hi"),
    ({"window": (0.0, 1.0), "mean": 5.0, "std": 1.0}, "got both"),
])
def test_bad_units_are_refused(given, message):
    with pytest.raises(ValueError, match=message):
        HUUnits(**given)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['centre'\]"):
        HUUnits.of({"centre": 1.0})


def test_the_model_sees_its_own_units_and_returns_lidplug_units():
    inner = Recorder()
    window = HUWindow()
    model = adapt_denoiser(inner, units=LDCT_BENCHMARK_UNITS, window=window)
    hu = torch.tensor([-1024.0, 0.0, 40.0, 1000.0]).view(1, 1, 2, 2)
    out = model(window(hu))
    # ldct-benchmark's own normalisation of the DICOM pixel value (HU + 1024).
    expected = (hu + 1024 - 481.45419786099086) / 502.18507379395044
    torch.testing.assert_close(inner.seen, expected)
    torch.testing.assert_close(window.inverse(out), hu, atol=1e-3, rtol=0)
    # A HU window: lo..hi to 0..1.
    model = adapt_denoiser(inner, units={"window": (-160.0, 240.0)})
    model(window(hu))
    torch.testing.assert_close(inner.seen, (hu + 160) / 400)


def test_forward_args_checked_and_passed():
    inner = NeedsSigma()
    model = ForwardArgs(inner, {"sigma": 0.5})
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(model(x), inner(x, 0.5))
    with pytest.raises(TypeError, match=r"takes no argument\(s\) \['sigmaa'\]"):
        ForwardArgs(inner, {"sigmaa": 0.5})
    with pytest.raises(TypeError, match="'x' is the image argument"):
        ForwardArgs(inner, {"x": 0.5})


def test_identity_start_is_the_identity_and_learns():
    torch.manual_seed(0)
    inner = nn.Conv2d(1, 1, 3, padding=1)
    model = IdentityStart(inner)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(model(x), x)
    target = x * 0.5
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        loss = (model(x) - target).pow(2).mean()
        first = float(loss.detach()) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(model.gate.detach()) != 0.0 and float(loss.detach()) < 0.5 * first


def test_adapt_without_options_is_the_model_itself():
    inner = Recorder()
    assert adapt_denoiser(inner) is inner
    chain = adapt_denoiser(NeedsSigma(), units={"mean": 0, "std": 100},
                           forward_kwargs={"sigma": 0.1}, identity_start=True)
    assert [type(m).__name__ for m in (chain, chain.module, chain.module.module)] == \
        ["Standardized", "IdentityStart", "ForwardArgs"]


def test_wrap_declares_units_and_forward_args():
    model = wrap(NeedsSigma(), faster_rcnn(), units={"window": (-1024.0, 3072.0)},
                 forward_kwargs={"sigma": 0.01})
    assert isinstance(model.denoiser.module, ForwardArgs)
    model.eval()
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(model(x), model.denoiser.module.module(x, 0.01))


class ThreeChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.head(x)


class ReturnsTuple(nn.Module):
    def forward(self, x):
        return x, x


class Halves(nn.Module):
    def forward(self, x):
        return x.half()


class Blows(nn.Module):
    def forward(self, x):
        return x / 0.0


@pytest.mark.parametrize(("denoiser", "error", "message"), [
    (NeedsSigma(), TypeError, r"needs \['sigma'\] besides the image; give fixed values with "
                              r"forward_kwargs"),
    (ThreeChannels(), ValueError, r"the call failed: RuntimeError: .*its first convolution "
                                  r"'head' takes 3 channel\(s\), the slices have 1"),
    (ReturnsTuple(), TypeError, "expected ReturnsTuple to return one Tensor, got tuple"),
    (Halves(), TypeError, "return the input's dtype torch.float32, got torch.float16"),
    (Blows(), ValueError, "returned NaN/inf"),
])
def test_wrap_refuses_denoisers_training_could_not_use(denoiser, error, message):
    with pytest.raises(error, match=message):
        wrap(denoiser, faster_rcnn())


def test_check_leaves_the_mode_and_statistics_alone():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1)).train()
    before = model[1].running_mean.clone()
    check_denoiser(model)
    assert model.training and torch.equal(model[1].running_mean, before)
    # A model that takes only some sizes: probe with one of your slices.
    with pytest.raises(ValueError, match=r"Tensor\[1, 1, 16, 16\]"):
        check_denoiser(nn.Conv2d(1, 1, 17), torch.zeros(1, 1, 16, 16))


class HalfNoise(nn.Module):
    """A scriptable stand-in for a model trained in its own units: halves the deviation from
    its units' zero (the mean HU it was trained on)."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x


def test_units_travel_into_the_export_so_denoise_hu_stays_right(tmp_path):
    model = wrap(HalfNoise(), faster_rcnn(), units=LDCT_BENCHMARK_UNITS)
    lidplug.export(model, tmp_path / "d.pt")
    deployed = torch.jit.load(str(tmp_path / "d.pt"))  # without lidplug
    hu = torch.linspace(-1000.0, 1000.0, 32 * 32).view(1, 1, 32, 32)
    mean = LDCT_BENCHMARK_UNITS.mean  # the model halves HU - mean, in its own units
    torch.testing.assert_close(deployed.denoise_hu(hu), mean + 0.5 * (hu - mean), atol=0.05,
                               rtol=0)
    torch.testing.assert_close(lidplug.load(tmp_path / "d.pt").denoise_hu(hu),
                               mean + 0.5 * (hu - mean), atol=0.05, rtol=0)
