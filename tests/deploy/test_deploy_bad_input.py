"""Bad input to export and load: errors that say what was expected and what came."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
import torch
from deploy_models import ScriptableDenoiser

from lidplug.deploy import export, load, read_metadata


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy") / "d.pt"
    export(ScriptableDenoiser(), path)
    return path


def _rewrite_metadata(src, dst, text):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, text if item.filename.endswith("/extra/lidplug.json") else data)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "nope.pt")


def test_load_a_file_that_is_not_an_archive(tmp_path):
    (tmp_path / "slice.raw").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match=r"expected a lidplug export .* not a zip archive"):
        load(tmp_path / "slice.raw")


def test_load_a_checkpoint(tmp_path):
    torch.save(ScriptableDenoiser().state_dict(), tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"torch.save checkpoint, not an export.*load_weights"):
        load(tmp_path / "ckpt.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
def test_load_foreign_torchscript_and_program(tmp_path):
    torch.jit.save(torch.jit.script(ScriptableDenoiser()), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="TorchScript archive that lidplug did not write"):
        load(tmp_path / "plain.pt")
    program = torch.export.export(ScriptableDenoiser().eval(), (torch.rand(1, 1, 16, 16),))
    torch.export.save(program, tmp_path / "plain.pt2")
    with pytest.raises(ValueError, match=r"torch.export archive that lidplug did not write"):
        load(tmp_path / "plain.pt2")


@pytest.mark.parametrize(("text", "match"), [
    ("{not json", "corrupt lidplug.json"),
    (json.dumps({"format": "other"}), "expected lidplug.json with format 'lidplug-denoiser', got 'other'"),
    (json.dumps({"format": "lidplug-denoiser", "format_version": 99}), "version <= 1, got 99"),
])
def test_load_bad_metadata(tmp_path, exported, text, match):
    _rewrite_metadata(exported, tmp_path / "bad.pt", text)
    with pytest.raises(ValueError, match=match):
        read_metadata(tmp_path / "bad.pt")


def _edited_metadata(exported, edit):
    meta = read_metadata(exported)
    edit(meta)
    return json.dumps(meta)


@pytest.mark.parametrize(("edit", "match"), [
    (lambda m: m.pop("archive"), r"expected 'archive' to be 'torchscript' or 'torch.export', got None"),
    (lambda m: m.update(archive="onnx"), r"expected 'archive' .*, got 'onnx'"),
    (lambda m: m.pop("window"), r"expected 'window' to be an object with lo, hi and clamp, got None"),
    (lambda m: m["window"].pop("hi"), r"expected 'window.hi' to be a finite number \(HU\), got None"),
    (lambda m: m["window"].update(lo=5000), r"expected 'window' to be lo < hi"),
    (lambda m: m["window"].update(clamp="no"), r"expected 'window.clamp' to be true or false, got 'no'"),
    (lambda m: m.pop("input"), r"expected 'input.channels' to be a positive integer, got None"),
    (lambda m: m.update(ops="lidplug::roi_pool"), r"expected 'ops' to be a list of operator names"),
    (lambda m: m.update(archive="torch.export"),
     r"does not match it: expected archive 'torchscript' \(what the file is\), got 'torch.export'"),
], ids=["no-archive", "unknown-archive", "no-window", "no-window-hi", "inverted-window",
        "clamp-not-bool", "no-input", "ops-not-a-list", "wrong-archive-kind"])
def test_load_incomplete_metadata(tmp_path, exported, edit, match):
    # A KeyError (or torch.export.load on a TorchScript file) while loading, before.
    _rewrite_metadata(exported, tmp_path / "bad.pt", _edited_metadata(exported, edit))
    with pytest.raises(ValueError, match=r"'.*bad\.pt' has an? .*lidplug\.json.*" + match):
        load(tmp_path / "bad.pt")


def test_load_a_damaged_zip(tmp_path, exported):
    raw = exported.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2] + raw[-200:])
    with pytest.raises(ValueError, match=r"cut\.pt'"):
        load(tmp_path / "cut.pt")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"method": "onnx"}, ValueError, "expected method one of .*, got 'onnx'"),
    ({"method": "script", "name": "d.pt2"}, ValueError, "use a .pt2 suffix for torch.export"),
    ({"method": "torch.export"}, ValueError, "method='torch.export' writes a .pt2 file"),
    ({"dtype": torch.int8}, ValueError, r"expected dtype one of .*, got torch.int8"),
    ({"dtype": "half"}, ValueError, r"expected dtype one of .*, got 'half'"),
    ({"window": "soft tissue"}, TypeError, "expected window to be a HUWindow, a .lo, hi. pair"),
    ({"config": 3}, TypeError, "expected config to be a dataclass instance, a mapping or None"),
    ({"example_input": torch.rand(8, 8)}, ValueError,
     r"expected example_input to be a floating-point Tensor\[B, C, H, W\], got .* \(8, 8\)"),
    ({"example_input": [1.0]}, TypeError, "expected example_input to be a Tensor"),
    ({"checkpoint": {"optimizer": {"lr": 1}}}, ValueError, "expected a state dict"),
])
def test_export_bad_arguments(tmp_path, kwargs, error, match):
    name = kwargs.pop("name", "d.pt")
    with pytest.raises(error, match=match):
        export(ScriptableDenoiser(), tmp_path / name, **kwargs)


def test_export_needs_a_module(tmp_path):
    with pytest.raises(TypeError, match=r"expected an nn.Module .*, got function"):
        export(lambda x: x, tmp_path / "d.pt")


def test_export_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(ScriptableDenoiser(), tmp_path / "no" / "d.pt")


def test_denoiser_that_changes_the_shape(tmp_path):
    with pytest.raises(ValueError, match=r"return its input's shape \[2, 1, 64, 64\], got \[2, 1, 62, 62\]"):
        export(torch.nn.Conv2d(1, 1, 3), tmp_path / "d.pt")


def test_denoiser_that_rejects_the_example(tmp_path):
    with pytest.raises(ValueError, match="fails on the example input of shape"):
        export(ScriptableDenoiser(), tmp_path / "d.pt", torch.rand(1, 3, 16, 16))


def test_denoiser_that_returns_no_tensor(tmp_path):
    class Tuple(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(ValueError, match="expected the denoiser to return a Tensor, got tuple"):
        export(Tuple(), tmp_path / "d.pt")


class _Scale(torch.autograd.Function):
    """A custom autograd Function (as ldct-benchmark's bilateral filter layer has)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad * w, (grad * x).sum().view(1)


class _FilterLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return _Scale.apply(x, self.w)


class _WithFunction(torch.nn.Module):
    """The Function is called from a submodule: its trace is that submodule's graph."""

    def __init__(self):
        super().__init__()
        self.filter = _FilterLayer()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(self.filter(x))


def test_a_custom_autograd_function_is_an_export_error_naming_it(tmp_path):
    from lidplug.deploy import ExportError

    with pytest.raises(ExportError, match=r"(?s)the trace calls the Python function '_Scale' .*"
                                          r"try a \.pt2 path \(torch\.export\)"):
        export(_WithFunction(), tmp_path / "d.pt")
    assert not (tmp_path / "d.pt").exists()


def test_exported_model_rejects_a_bad_input_shape(exported):
    # A ValueError from lidplug.load's module, not the TorchScript traceback of torch.jit.Error.
    model = load(exported)
    for x in (torch.rand(1, 32, 32), torch.rand(1, 3, 32, 32)):
        with pytest.raises(ValueError, match=r"expected a Tensor\[B, 1, H, W\], got "
                                             + re.escape(f"shape {list(x.shape)}")):
            model(x)
    with pytest.raises(ValueError, match=r"expected a floating-point tensor, got torch.int64"):
        model(torch.ones(1, 1, 8, 8, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"expected a Tensor\[B, 1, H, W\], got ndarray"):
        model(torch.rand(1, 1, 8, 8).numpy())


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """RED-CNN (unpadded: 21 pixels at least) and U-Net exports, as TorchScript and .pt2."""
    from lidplug.models import create_denoiser

    root = tmp_path_factory.mktemp("small")
    paths = {}
    for name, options in (("redcnn", {"channels": 4}), ("unet", {"base_channels": 4})):
        for suffix in (".pt", ".pt2"):
            torch.manual_seed(0)
            paths[name + suffix] = root / f"{name}{suffix}"
            export(create_denoiser(name, **options), paths[name + suffix])
    return paths


@pytest.mark.slow  # four exports, two of them torch.export (a few seconds each on a CPU)
@pytest.mark.parametrize(("name", "size", "match"), [
    ("redcnn.pt", (16, 16), r"expected slices of at least 21x21 pixels, got 16x16 \(the model said: "
                            r"ValueError: REDCNN: expected H, W >= 21"),
    ("redcnn.pt", (40, 16), r"expected slices of at least 21x21 pixels, got 40x16"),
    # torch.export specialises a size-1 intermediate, so the program refuses 21 (22 passes).
    ("redcnn.pt2", (16, 16), r"expected slices of at least 22x22 pixels, got 16x16 \(the model "
                             r"said: AssertionError: Guard failed"),
    ("unet.pt2", (12, 12), r"expected slices of at least 16x16 pixels whose sides are multiples of 8, got 12x12"),
    ("unet.pt2", (24, 20), r"expected slices of at least 16x16 pixels whose sides are multiples of 8, got 24x20"),
])
def test_a_size_the_model_refuses_is_a_value_error_naming_the_sizes(small_models, name, size, match):
    # Before: torch.jit.Error with the model's TorchScript traceback (55 lines for RED-CNN at
    # 16x16), or torch.export's AssertionError "Guard failed: x.size()[2] >= 21".
    model = load(small_models[name])
    with pytest.raises(ValueError, match=r"lidplug denoiser: " + match):
        model.denoise_hu(torch.zeros(2, 1, *size))
    low, step = model.accepted_sizes()
    assert model(torch.zeros(1, 1, low + step, low)).shape == (1, 1, low + step, low)


@pytest.mark.slow
def test_a_failure_that_is_not_the_size_passes_through(small_models):
    model = load(small_models["redcnn.pt"])

    class Broken(torch.nn.Module):  # fails for another reason than the image size
        def forward(self, x):
            raise RuntimeError("CUDA error: out of memory")

    model.module = Broken()
    with pytest.raises(RuntimeError, match="out of memory"):
        model(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_load_an_archive_with_a_damaged_entry(tmp_path, exported, suffix):
    # lidplug.json intact, the model's data replaced: libtorch's RuntimeError before.
    source = exported if suffix == ".pt" else tmp_path / "src.pt2"
    if suffix == ".pt2":
        export(ScriptableDenoiser(), source)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(tmp_path / f"bad{suffix}", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            damaged = item.filename.endswith(("/data.pkl", "/models/model.json"))
            zout.writestr(item, b"{}" if damaged else data)
    with pytest.raises(ValueError, match=r"lidplug.load: cannot load the (TorchScript module|"
                                         r"torch.export program) of '.*bad\.pt2?'"):
        load(tmp_path / f"bad{suffix}")


_FULL_DISK = """
import resource, signal, sys
sys.path.insert(0, sys.argv[2])
from deploy_models import ScriptableDenoiser
from lidplug.deploy import export
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # as a full disk would, past 4 KB
try:
    export(ScriptableDenoiser(), sys.argv[1])
except OSError as exc:
    print("OSError", exc.errno, exc)
"""


@pytest.mark.slow  # a fresh process
@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_export_onto_a_full_disk_is_an_os_error_and_keeps_the_old_file(tmp_path, suffix):
    # libtorch's writer aborted the process (std::terminate, exit status -6) when a write
    # failed: no message, and the temporary file stayed.
    import errno
    import resource
    import subprocess
    import sys
    from pathlib import Path

    if not hasattr(resource, "RLIMIT_FSIZE"):
        pytest.skip("needs RLIMIT_FSIZE to make writes fail")
    target = tmp_path / f"d{suffix}"
    target.write_bytes(b"the previous export")
    run = subprocess.run([sys.executable, "-c", _FULL_DISK, str(target),
                          str(Path(__file__).parent)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(f"OSError {errno.EFBIG} "), run.stdout + run.stderr[-2000:]
    assert target.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_non_finite_weights_are_not_exported(tmp_path):
    """Regression: a NaN checkpoint exported and 'verified' (NaN compared equal to NaN)."""
    model = ScriptableDenoiser()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or inf"):
        export(model, tmp_path / "d.pt")
    assert not (tmp_path / "d.pt").exists()


def test_a_clamped_window_is_said_to_clip(tmp_path):
    """A clamp=True window clips every HU outside it in denoise_hu (an identity model moved
    air by 1000 HU): export says so."""
    from lidplug.data import HUWindow
    from lidplug.deploy import ExportWarning

    with pytest.warns(ExportWarning, match="clamp"):
        export(ScriptableDenoiser(), tmp_path / "d.pt", window=HUWindow(-160, 240, clamp=True))
