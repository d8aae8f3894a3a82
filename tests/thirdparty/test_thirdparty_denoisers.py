"""Other projects' denoisers through lidplug with nothing but a run file (examples/byo/*.toml):
built, wrapped (units, forward arguments, identity start), trained a few steps, exported,
loaded, and the export equal to the trained model, in window units and in HU.

Optional: each case needs its package (``pip install "lidplug[thirdparty]"``: ldct-benchmark,
deepinv, monai) and is skipped, with the reason, without it.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import lidplug
from lidplug.pipeline import load_run, train

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "byo"
# What each example needs (the import name of its package).
CASES = {
    "ldct-redcnn": "ldctbench",
    "ldct-cnn10": "ldctbench",
    "ldct-qae": "ldctbench",
    "deepinv-dncnn": "deepinv",
    "deepinv-drunet": "deepinv",
    "deepinv-scunet": "deepinv",
    "monai-basicunet": "monai",
}
TINY_DETECTOR = json.dumps({"class_path": "lidplug.detectors.lesion_faster_rcnn",
                            "init_args": {"image_size": 64, "fpn_channels": 16,
                                          "head_width": 32}})
# The examples' own denoiser sections, on a run small enough for a test: 64-pixel phantoms,
# a tiny detector trained from scratch, 5 denoiser steps with feedback.
TINY = ["--threads", "1", "--data.size", "64", "--data.spacing", "4.5", "--data.train", "8",
        "--data.validation", "4", "--data.test", "6", "--simulation.views", "180",
        "--detector.model", TINY_DETECTOR, "--train.rounds", "1", "--train.denoiser_steps", "5",
        "--train.detector_steps", "1", "--train.batch_size", "2", "--train.device", "cpu",
        "--train.progress", "false"]


def _needs(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"needs {package} (pip install \"lidplug[thirdparty]\")")


def test_every_example_has_a_case():
    assert sorted(p.stem for p in EXAMPLES.glob("*.toml")) == sorted(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_example_trains_exports_and_loads(name, tmp_path):
    _needs(CASES[name])
    spec, folder = load_run(EXAMPLES / f"{name}.toml", TINY)
    spec.arms = [spec.arm("lidnet")]  # the feedback arm alone: what a user's first run needs
    start = {k: v.clone() for k, v in spec_model(spec, folder).state_dict().items()}
    if name == "deepinv-scunet":
        # Neither archive holds it (TorchScript: shape-dependent padding; torch.export: its
        # program refuses batch 1): training completes and says so, the checkpoint keeps it.
        with pytest.warns(lidplug.deploy.ExportWarning, match="could not be exported"):
            arm = train(spec, tmp_path, folder, progress=False)["lidnet"]
        assert (tmp_path / "lidnet" / "latest.pt").is_file()
        return
    arm = train(spec, tmp_path, folder, progress=False)["lidnet"]
    steps = [h for h in arm.history if h["phase"] == "denoiser"]
    assert len(steps) == 5 and all(torch.isfinite(torch.tensor(h["loss"])) for h in steps)
    trained = arm.model.denoiser.eval()
    assert any(not torch.equal(start[k], v) for k, v in trained.state_dict().items())

    deployed = lidplug.load(tmp_path / "lidnet" / "denoiser.pt")
    window = arm.model.window
    hu = torch.linspace(-1000.0, 1000.0, 64 * 64).view(1, 1, 64, 64)
    with torch.no_grad():
        expected = trained(window(hu))
        torch.testing.assert_close(deployed(window(hu)), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(deployed.denoise_hu(hu), window.inverse(expected),
                                   atol=0.5, rtol=1e-4)


def spec_model(spec, folder):
    from lidplug.pipeline import build_model

    torch.manual_seed(0)
    return build_model(spec.model_spec("denoiser"), "denoiser", folder)


@pytest.mark.slow
def test_scunet_exports_as_a_torch_export_program(tmp_path):
    # Its attention mask holds -inf: the program's constants carry IEEE specials.
    _needs("deepinv")
    spec, folder = load_run(EXAMPLES / "deepinv-scunet.toml", TINY)
    model = spec_model(spec, folder).eval()
    # Not verified: the program refuses batch 1 (a guard torch.export adds for this model).
    lidplug.export(model, tmp_path / "scunet.pt2", verify=False)
    deployed = lidplug.load(tmp_path / "scunet.pt2")  # the archive check accepts its -inf
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), atol=1e-4, rtol=1e-4)
