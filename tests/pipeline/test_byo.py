"""Bring your own denoiser through a run file: nested model tables, a module beside the run file,
overrides inside a model table, units and forward arguments, other projects' checkpoints."""

import sys
import textwrap

import pytest
import torch
from torch import nn

from lidplug.data import HUWindow
from lidplug.deploy import load_weights
from lidplug.models import ForwardArgs, IdentityStart, Standardized
from lidplug.pipeline import DenoiserSpec, ModelSpec, build_model, load_run

RED = {"class_path": "lidplug.models.REDCNN", "init_args": {"channels": 4}}
NESTED = """
[denoiser.model]
class_path = "lidplug.models.Standardized"
[denoiser.model.init_args]
center = 0.3
[denoiser.model.init_args.module]
class_path = "lidplug.models.DnCNN"
init_args = { depth = 3, channels = 4 }
"""


def _write(folder, text, name="run.toml"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_nested_tables_are_checked_then_built_inside_out(tmp_path):
    spec, folder = load_run(_write(tmp_path, NESTED))
    inner = spec.denoiser.model["init_args"]["module"]
    assert inner["class_path"] == "lidplug.models.DnCNN" and inner["init_args"]["depth"] == 3
    model = build_model(spec.denoiser, "denoiser", folder)
    assert isinstance(model, Standardized) and model.center == 0.3
    assert type(model.module).__name__ == "DnCNN" and model.module.depth == 3
    # The nested table's own arguments are checked, and the message names its key.
    bad = NESTED.replace("depth = 3", "depht = 3")
    with pytest.raises(ValueError, match=r"denoiser\.model\.init_args\.module\.init_args of "
                                         r"lidplug\.models\.DnCNN: .*depht"):
        load_run(_write(tmp_path, bad))


def test_overrides_reach_inside_model_tables(tmp_path):
    path = _write(tmp_path, NESTED)
    spec, _ = load_run(path, ["--denoiser.model.init_args.module.init_args.channels", "8",
                              "--denoiser.model.init_args.center=0.2"])
    assert spec.denoiser.model["init_args"]["module"]["init_args"]["channels"] == 8
    assert spec.denoiser.model["init_args"]["center"] == 0.2
    with pytest.raises(ValueError, match=r"denoiser\.model\.init_args of "
                                         r"lidplug\.models\.Standardized: .*centre"):
        load_run(path, ["--denoiser.model.init_args.centre", "0.2"])
    with pytest.raises(ValueError, match=r"detector\.model: expected \{class_path"):
        load_run(path, ["--detector.model", '{"init_args": {}}'])


def test_a_module_beside_the_run_file_is_importable(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "byo_net_beside", raising=False)
    (tmp_path / "byo_net_beside.py").write_text(textwrap.dedent("""
        from torch import nn

        class Net(nn.Module):
            def __init__(self, width: int = 4):
                super().__init__()
                self.conv = nn.Conv2d(1, 1, 3, padding=1)
                self.width = width

            def forward(self, x):
                return x + self.conv(x)
        """))
    run = _write(tmp_path, """
        [denoiser.model]
        class_path = "byo_net_beside.Net"
        init_args = { width = 7 }
        """)
    spec, folder = load_run(run)
    assert build_model(spec.denoiser, "denoiser", folder).width == 7
    # Appended: after installed packages, so a file there never shadows one.
    site = next(i for i, p in enumerate(sys.path) if "site-packages" in p)
    assert sys.path.index(str(tmp_path)) > site


def test_units_and_forward_args_from_a_run_file(tmp_path):
    spec, folder = load_run(_write(tmp_path, """
        [denoiser]
        units = { mean = -542.546, std = 502.185 }
        forward_kwargs = { sigma = 0.25 }
        identity_start = true
        [denoiser.model]
        class_path = "{__name__}.NeedsSigma"
        """.replace("{__name__}", __name__)))
    model = build_model(spec.denoiser, "denoiser", folder)
    assert isinstance(model, Standardized)
    assert isinstance(model.module, IdentityStart)
    assert isinstance(model.module.module, ForwardArgs)
    assert model.module.module.kwargs == {"sigma": 0.25}
    window = HUWindow()
    assert model.center == pytest.approx(window(torch.tensor(-542.546)).item())
    assert model.scale == pytest.approx(502.185 / 4096)
    with pytest.raises(ValueError, match=r"denoiser\.units: expected std > 0"):
        load_run(run_with(tmp_path, "units = { mean = 0.0, std = -1.0 }"))
    with pytest.raises(ValueError, match=r"go with a \[denoiser.model\] class_path"):
        load_run(None, ["--denoiser.pretrained", "redcnn", "--denoiser.identity_start", "true"])
    # Denoiser options only: a detector table has no such keys.
    with pytest.raises(ValueError, match="units"):
        load_run(None, ["--detector.units", '{"mean": 0, "std": 1}'])


def run_with(folder, line):
    return _write(folder, f"[denoiser]\n{line}\n[denoiser.model]\nclass_path = "
                          f"\"lidplug.models.REDCNN\"\n", name="units.toml")


def _randomised(model):
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.normal_()
    return model


@pytest.mark.parametrize(("layout", "options"), [
    (lambda s: {"model_state_dict": s, "optimizer_state_dict": {}, "epoch": 3}, {}),  # ldctbench
    (lambda s: {f"module.{k}": v for k, v in s.items()}, {}),                           # DataParallel
    (lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()}}, {}),            # Lightning
    (lambda s: {"ema": {"weights": s}}, {"weights_key": "ema.weights"}),
    (lambda s: {f"generator.{k}": v for k, v in s.items()}, {"strip_prefix": "generator."}),
])
def test_other_projects_checkpoints_load(tmp_path, layout, options):
    source = _randomised(build_model(ModelSpec(model=RED), "denoiser"))
    path = tmp_path / "other.pt"
    torch.save(layout(source.state_dict()), path)
    loaded = build_model(ModelSpec(model=RED, weights=str(path), **options), "denoiser")
    for a, b in zip(loaded.state_dict().values(), source.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # The same through the Python API (lidplug.deploy.load_weights).
    api = build_model(ModelSpec(model=RED), "denoiser")
    load_weights(api, path, key=options.get("weights_key"),
                 strip_prefix=options.get("strip_prefix"))
    assert torch.equal(next(iter(api.state_dict().values())),
                       next(iter(source.state_dict().values())))


def test_checkpoint_options_say_what_is_wrong(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"ema": {"weights": build_model(ModelSpec(model=RED), "denoiser").state_dict()}},
               path)
    with pytest.raises(ValueError, match=r"denoiser\.weights: .*expected 'wieghts' in ema, got "
                                         r"keys \['weights'\]"):
        build_model(DenoiserSpec(model=RED, weights=str(path), weights_key="ema.wieghts"),
                    "denoiser")
    with pytest.raises(ValueError, match="expected a state dict, or a checkpoint dict with one "
                                         "of the keys"):
        build_model(DenoiserSpec(model=RED, weights=str(path)), "denoiser")
    with pytest.raises(ValueError, match=r"strip_prefix 'gen\.': expected keys starting with it"):
        build_model(DenoiserSpec(model=RED, weights=str(path), weights_key="ema.weights",
                                 strip_prefix="gen."), "denoiser")
    with pytest.raises(ValueError, match="weights_key / strip_prefix given without weights"):
        DenoiserSpec(model=RED, weights_key="ema")


def test_a_trained_adapted_denoiser_reloads_from_its_checkpoint(tmp_path):
    spec = DenoiserSpec(model=RED, units={"mean": 0.0, "std": 400.0}, identity_start=True)
    trained = _randomised(build_model(spec, "denoiser"))
    path = tmp_path / "latest.pt"
    torch.save({"denoiser": trained.state_dict(), "detector": {}}, path)
    again = build_model(DenoiserSpec(model=RED, units={"mean": 0.0, "std": 400.0},
                                     identity_start=True, weights=str(path)), "denoiser")
    assert torch.equal(again.module.gate, trained.module.gate)
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(again(x), trained(x))


def test_detector_messages_name_the_detector():
    with pytest.raises(ValueError, match=r"detector\.model\.class_path: cannot import"):
        load_run(None, ["--detector.model", '{"class_path": "no_such_pkg.Net"}'])


class NeedsSigma(nn.Module):
    """deepinv's convention: forward(x, sigma)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, sigma):
        return x - sigma * self.conv(x)


def test_monai_retinanet_from_a_run_file():
    pytest.importorskip("monai")
    from lidplug.detectors import MonaiRetinaNetDetector, adapter_for

    spec, _ = load_run(None, ["--detector.model",
                              '{"class_path": "lidplug.detectors.monai_retinanet", '
                              '"init_args": {"num_classes": 1}}'])
    detector = build_model(spec.detector, "detector")
    assert isinstance(adapter_for(detector), MonaiRetinaNetDetector)
    assert detector.num_classes == 1
