"""lidplug.deploy.export / load: TorchScript (scripted, traced, frozen), half variants, .pt2."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from deploy_models import (
    OpsDenoiser,
    ScriptableDenoiser,
    ScriptDivergentDenoiser,
    TraceOnlyDenoiser,
    UnexportableDenoiser,
    WrappedModel,
)

from lidplug.data import HUWindow
from lidplug.deploy import (
    METADATA_FILE,
    DeployedDenoiser,
    ExportError,
    ExportWarning,
    export,
    hu_like_slices,
    load,
    read_metadata,
)
from lidplug.models import create_denoiser, list_denoisers
from lidplug.version import __version__


@pytest.fixture
def denoiser():
    torch.manual_seed(0)
    return ScriptableDenoiser().eval()


def _slices(shape, window=None, seed=1):
    hu = hu_like_slices(shape, generator=torch.Generator().manual_seed(seed))
    return (window or HUWindow())(hu)


def _eager(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_script_export_round_trip(tmp_path, denoiser):
    meta = export(denoiser, tmp_path / "d.pt")
    assert meta["method"] == "script" and meta["archive"] == "torchscript" and meta["frozen"]
    assert meta["lidplug_version"] == __version__ and meta["torch_version"] == torch.__version__
    assert meta["window"] == {"lo": -1024.0, "hi": 3072.0, "clamp": False}
    assert meta["verified"]["max_abs_diff"] <= 1e-4
    assert read_metadata(tmp_path / "d.pt") == meta
    model = load(tmp_path / "d.pt")
    assert isinstance(model, DeployedDenoiser) and model.metadata == meta
    for shape in [(1, 1, 32, 48), (3, 1, 70, 33)]:  # dynamic batch and image size, odd sizes
        x = _slices(shape)
        torch.testing.assert_close(model(x), _eager(denoiser, x), atol=1e-5, rtol=1e-5)
    hu = hu_like_slices((2, 1, 40, 40))
    window = HUWindow()
    expected = window.inverse(_eager(denoiser, window(hu)))
    torch.testing.assert_close(model.denoise_hu(hu), expected, atol=1e-2, rtol=1e-5)  # in HU


def test_frozen_archive_folds_batch_norm_and_keeps_both_methods(tmp_path, denoiser):
    export(denoiser, tmp_path / "d.pt")
    module = load(tmp_path / "d.pt").module
    kinds = {node.kind() for node in module.graph.nodes()}
    assert "aten::conv2d" in kinds
    assert not kinds & {"aten::batch_norm", "aten::dropout", "aten::feature_dropout"}, kinds
    assert hasattr(module, "denoise_hu")


def test_export_leaves_the_model_alone(tmp_path):
    model = ScriptableDenoiser().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export(model, tmp_path / "d.pt", dtype=torch.bfloat16)
    assert model.training
    for key, value in model.state_dict().items():
        assert value.dtype == before[key].dtype and torch.equal(value, before[key])


def test_wrapped_model_exports_the_denoiser_with_its_window_and_config(tmp_path, denoiser):
    wrapped = WrappedModel(denoiser)
    meta = export(wrapped, tmp_path / "d.pt")
    assert meta["denoiser"] == "ScriptableDenoiser"
    assert meta["window"] == {"lo": -1000.0, "hi": 1000.0, "clamp": False}
    assert meta["config"] == {"w_det": 0.1, "w_roi": 1.0, "layers": ["p2", "p3"]}
    model = load(tmp_path / "d.pt")
    hu = hu_like_slices((1, 1, 32, 32))
    expected = wrapped.window.inverse(_eager(denoiser, wrapped.window(hu)))
    torch.testing.assert_close(model.denoise_hu(hu), expected, atol=1e-2, rtol=1e-5)
    # The detector stays behind: its 64x7x7 weights would be the largest constant.
    with zipfile.ZipFile(tmp_path / "d.pt") as archive:
        assert sum(i.file_size for i in archive.infolist() if "/constants/" in i.filename) < 4096


def test_explicit_window_and_config_win(tmp_path, denoiser):
    meta = export(WrappedModel(denoiser), tmp_path / "d.pt", window=(-160.0, 240.0),
                  config={"note": "explicit", "path": tmp_path})
    assert meta["window"]["lo"] == -160.0 and meta["window"]["hi"] == 240.0
    assert meta["config"] == {"note": "explicit", "path": str(tmp_path)}


def test_unscriptable_module_falls_back_to_tracing_with_a_note(tmp_path):
    model = TraceOnlyDenoiser().eval()
    with pytest.warns(ExportWarning, match=r"(?s)cannot compile TraceOnlyDenoiser.*traced.*Lambda"):
        meta = export(model, tmp_path / "d.pt")
    assert meta["method"] == "trace"
    assert any("Lambda" in note for note in meta["notes"])
    x = _slices((3, 1, 48, 96))
    torch.testing.assert_close(load(tmp_path / "d.pt")(x), _eager(model, x), atol=1e-5, rtol=1e-5)


def test_script_only_names_the_construct(tmp_path):
    with pytest.raises(ExportError, match=r"(?s)torch.jit.script cannot compile.*Lambda.*HERE"):
        export(TraceOnlyDenoiser(), tmp_path / "d.pt", method="script")
    assert not (tmp_path / "d.pt").exists()


def test_forced_trace_of_a_scriptable_module(tmp_path, denoiser):
    assert export(denoiser, tmp_path / "d.pt", method="trace")["method"] == "trace"


def test_unexportable_module_fails_naming_both_reasons(tmp_path):
    with pytest.raises(ExportError, match=r"(?s)Lambda.*tracing failed.*control flow depends"):
        export(UnexportableDenoiser(), tmp_path / "d.pt")
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


def test_verification_catches_an_export_that_differs_from_eager(tmp_path):
    with pytest.raises(ExportError, match=r"differs from eager .* max \|difference\| 0.01"):
        export(ScriptDivergentDenoiser(), tmp_path / "d.pt")
    assert list(tmp_path.iterdir()) == []
    meta = export(ScriptDivergentDenoiser(), tmp_path / "d.pt", verify=False)
    assert meta["verified"] is None


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 5e-3), ("bfloat16", 3e-2)])
def test_half_precision_variant_keeps_a_float32_interface(tmp_path, denoiser, dtype, tol):
    meta = export(denoiser, tmp_path / "d.pt", dtype=dtype)
    assert meta["dtype"] == str(dtype).removeprefix("torch.") and meta["io_dtype"] == "float32"
    assert meta["verified"]["max_abs_diff_vs_float32"] < tol
    x = _slices((2, 1, 32, 32))
    out = load(tmp_path / "d.pt")(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _eager(denoiser, x), atol=tol, rtol=0)


@pytest.mark.parametrize("model_cls", [ScriptableDenoiser, TraceOnlyDenoiser])
def test_torch_export_program(tmp_path, model_cls):
    torch.manual_seed(0)
    model = model_cls().eval()
    meta = export(model, tmp_path / "d.pt2")
    assert meta["archive"] == "torch.export" and meta["method"] == "torch.export"
    loaded = load(tmp_path / "d.pt2")
    for shape in [(1, 1, 48, 48), (3, 1, 80, 64)]:
        x = _slices(shape)
        torch.testing.assert_close(loaded(x), _eager(model, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded.denoise_hu(x), HUWindow().inverse(_eager(model, HUWindow()(x))),
                               atol=1e-2, rtol=1e-5)


def test_model_calling_lidplug_ops_records_them(tmp_path):
    model = OpsDenoiser().eval()
    for name in ("d.pt", "d.pt2"):
        meta = export(model, tmp_path / name)
        assert meta["ops"] == ["lidplug::roi_pool"]
        x = _slices((2, 1, 32, 40))
        torch.testing.assert_close(load(tmp_path / name)(x), _eager(model, x), atol=1e-5, rtol=1e-5)


def test_metadata_is_plain_json_in_the_archive(tmp_path, denoiser):
    export(denoiser, tmp_path / "d.pt")
    with zipfile.ZipFile(tmp_path / "d.pt") as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/extra/" + METADATA_FILE)]
        assert json.loads(archive.read(name))["format"] == "lidplug-denoiser"


def test_example_input_sets_channels_and_shape(tmp_path):
    class TwoChannel(torch.nn.Module):
        def forward(self, x):
            return x * 0.5

    example = torch.rand(1, 2, 32, 32)
    meta = export(TwoChannel(), tmp_path / "d.pt", example)
    assert meta["input"]["channels"] == 2 and meta["input"]["example_shape"] == [1, 2, 32, 32]
    with pytest.raises(Exception, match=r"expected a Tensor\[B, 2, H, W\], got shape \[1, 1, 8, 8\]"):
        load(tmp_path / "d.pt")(torch.rand(1, 1, 8, 8))


def test_real_wrapped_model(tmp_path):
    # lidplug.wrap's LesionAwareDenoiser: only its denoiser ships, with its window and config.
    from tiny_detectors import faster_rcnn

    from lidplug import wrap

    torch.manual_seed(0)
    denoiser = ScriptableDenoiser().eval()
    wrapped = wrap(denoiser, faster_rcnn(), window=HUWindow(-1000.0, 2000.0), roi_weight=0.5)
    meta = export(wrapped, tmp_path / "d.pt")
    assert meta["denoiser"] == "ScriptableDenoiser" and meta["window"]["hi"] == 2000.0
    assert meta["config"]["roi_weight"] == 0.5
    x = _slices((1, 1, 32, 32))
    torch.testing.assert_close(load(tmp_path / "d.pt")(x), _eager(denoiser, x), atol=1e-5, rtol=1e-5)


# Small widths: the point is that every registered reference denoiser scripts and verifies.
_SMALL = {"redcnn": {"channels": 8}, "dncnn": {"depth": 4, "channels": 8}, "unet": {"base_channels": 4}}


@pytest.mark.parametrize("name", list_denoisers())
def test_reference_denoisers_export_by_scripting(tmp_path, name):
    meta = export(create_denoiser(name, **_SMALL.get(name, {})), tmp_path / "d.pt")
    assert meta["method"] == "script" and meta["verified"]["max_abs_diff"] <= 1e-4
