import pytest
import torch

from lidplug.data import HU_MAX, HU_MIN, HUWindow, MapImages


def test_window_maps_constants_to_unit_interval():
    w = HUWindow()
    out = w(torch.tensor([HU_MIN, HU_MAX, 0.0]))
    assert out.tolist() == pytest.approx([0.0, 1.0, 1024 / 4096])


def test_round_trip_is_exact_to_float32_precision():
    hu = torch.linspace(-3000, 4000, 1001).reshape(1, 1, 7, 143)  # beyond the window too
    w = HUWindow()
    torch.testing.assert_close(w.inverse(w(hu)), hu, atol=1e-3, rtol=0)


def test_clamp_is_a_display_window():
    w = HUWindow(-160, 240, clamp=True)
    assert w(torch.tensor([-1000.0, 40.0, 3000.0])).tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_window_rejects_empty_range():
    with pytest.raises(ValueError, match="lo < hi"):
        HUWindow(100, 100)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_window_scripts_with_inverse():  # deployed TorchScript denoisers may carry the window
    scripted = torch.jit.script(HUWindow())
    x = torch.randn(2, 1, 4, 4) * 500
    torch.testing.assert_close(scripted.inverse(scripted(x)), x, atol=1e-3, rtol=0)


def test_map_images_transforms_images_only():
    sample = {"low": torch.full((1, 2, 2), -1024.0), "normal": torch.full((1, 2, 2), 3072.0),
              "target": {"boxes": torch.zeros(0, 4)}, "meta": {"id": "x"}}
    out = MapImages(HUWindow())(sample)
    assert out["low"].eq(0).all() and out["normal"].eq(1).all()
    assert out["target"] is sample["target"] and "HUWindow" in out["meta"]["transform"]
    assert sample["low"].eq(-1024).all()  # the input sample is not modified
    with pytest.raises(ValueError, match="keep shape"):
        MapImages(lambda x: x[:, :1])(sample)
