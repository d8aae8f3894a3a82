"""Every registered denoiser: shape contract, odd sizes, gradients, TorchScript."""

import pytest
import torch

from lidplug.models import create_denoiser, list_denoisers

# Tiny configurations keep the tests fast; a new registered model must add one here.
TINY = {
    "dncnn": {"depth": 4, "channels": 4},
    "redcnn": {"channels": 4},
    "unet": {"base_channels": 4, "depth": 2},
}
# torch.jit.script/load are deprecated upstream but they are what lidplug's deployment uses.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
]


def _build(name):
    torch.manual_seed(0)
    return create_denoiser(name, **TINY[name])


def test_every_registered_model_has_a_tiny_config():
    assert sorted(TINY) == list_denoisers()


@pytest.mark.parametrize("name", list_denoisers())
@pytest.mark.parametrize("size", [(32, 32), (33, 45), (21, 64)])
def test_shape_preserved(name, size):
    x = torch.rand(2, 1, *size)
    out = _build(name)(x)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_denoisers())
def test_an_untrained_model_is_the_identity(name):
    # The residual head starts at zero (lidplug.models._common): the output is the input.
    model = _build(name).eval()
    x = torch.rand(2, 1, 29, 31)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x, rtol=0, atol=0)


@pytest.mark.parametrize("name", list_denoisers())
def test_gradients_reach_every_parameter(name):
    model = _build(name).train()
    # One step moves the zero-initialised head; from then on every layer learns.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(2, 1, 29, 31, requires_grad=True)
    (model(x) - 0.5).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()
    x.grad = None
    (model(x) - 0.5).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("name", list_denoisers())
def test_scripted_output_equals_eager(name):
    model = _build(name)
    # A little training moves BatchNorm's running statistics off their defaults first.
    model.train()(torch.rand(4, 1, 24, 24))
    model.eval()
    scripted = torch.jit.script(model)
    x = torch.rand(2, 1, 27, 38)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", list_denoisers())
def test_scripted_model_survives_save_and_load(name, tmp_path):
    model = _build(name).eval()
    path = tmp_path / f"{name}.pt"
    torch.jit.script(model).save(str(path))
    loaded = torch.jit.load(str(path))
    x = torch.rand(1, 1, 25, 30)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", list_denoisers())
@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 3, 32, 32), (1, 1, 1, 32, 32)])
def test_wrong_input_rank_or_channels_raises(name, shape):
    with pytest.raises(ValueError, match=r"expected input of shape \[B, 1, H, W\]"):
        _build(name)(torch.rand(*shape))


@pytest.mark.parametrize("name", list_denoisers())
def test_default_configuration_builds(name):
    model = create_denoiser(name)
    assert sum(p.numel() for p in model.parameters()) > 100_000
