"""Per-model details: paper defaults, argument checks, U-Net padding, RED-CNN minimum size."""

import pytest
import torch
from torch import nn

from lidplug.models import REDCNN, DnCNN, UNet


def test_redcnn_paper_layout():
    model = REDCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    deconvs = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == 5 and len(deconvs) == 5
    assert all(m.kernel_size == (5, 5) and m.padding == (0, 0) for m in convs + deconvs)
    assert convs[0].out_channels == 96


def test_redcnn_rejects_images_smaller_than_its_receptive_field():
    model = REDCNN(channels=2)
    assert model(torch.rand(1, 1, 21, 21)).shape == (1, 1, 21, 21)
    with pytest.raises(ValueError, match="expected H, W >= 21, got H=20, W=40"):
        model(torch.rand(1, 1, 20, 40))


def test_dncnn_paper_layout():
    model = DnCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 17
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 15
    assert convs[0].out_channels == 64


def test_dncnn_learns_the_residual():
    # With the last layer zeroed the predicted noise is 0, so the output is the input.
    model = DnCNN(depth=3, channels=4).eval()
    nn.init.zeros_(model.body[-1].weight)
    nn.init.zeros_(model.body[-1].bias)
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(model(x), x)


@pytest.mark.parametrize("size", [(37, 50), (8, 8), (1, 1), (65, 9)])
def test_unet_handles_sizes_not_divisible_by_its_stride(size):
    model = UNet(base_channels=2, depth=3).eval()
    x = torch.rand(1, 1, *size)
    assert model(x).shape == x.shape


def test_unet_pads_by_edge_replication_and_crops_back():
    # A 15 x 15 input is run as the 16 x 16 image with its last row and column repeated.
    model = UNet(base_channels=2, depth=2).eval()
    x15 = torch.rand(1, 1, 15, 15)
    padded = torch.cat([x15, x15[:, :, -1:]], dim=2)
    padded = torch.cat([padded, padded[:, :, :, -1:]], dim=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x15), model(padded)[:, :, :15, :15])


def test_unet_global_residual():
    model = UNet(base_channels=2, depth=1).eval()
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    x = torch.rand(1, 1, 10, 12)
    torch.testing.assert_close(model(x), x)


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "message"),
    [
        (REDCNN, {"channels": 0}, ValueError, "expected channels >= 1, got 0"),
        (REDCNN, {"channels": 2.5}, TypeError, "expected channels to be an int, got float"),
        (DnCNN, {"depth": 1}, ValueError, "expected depth >= 2, got 1"),
        (DnCNN, {"channels": -3}, ValueError, "expected channels >= 1, got -3"),
        (UNet, {"depth": 0}, ValueError, "expected depth >= 1, got 0"),
        (UNet, {"base_channels": True}, TypeError, "expected base_channels to be an int"),
    ],
)
def test_bad_constructor_arguments(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)
