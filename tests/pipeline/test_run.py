"""The pipeline end to end on the tiny run: training stage, evaluation stage, their files."""

import json
from pathlib import Path

import pytest
import torch
from cli_checks import check_metrics_file

from lidplug.pipeline import checkpoint_of, evaluate, load_run, train
from lidplug.training import load_checkpoint

TINY = Path(__file__).with_name("tiny.toml")
# Enough test slices for the model observer (it needs 22 lesions).
OVERRIDES = ["--data.test", "24", "--train.deterministic", "true"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    spec, folder = load_run(TINY, OVERRIDES)
    out = tmp_path_factory.mktemp("run")
    arms = train(spec, out, folder, progress=False)
    return spec, folder, out, arms


def test_every_arm_writes_its_files(trained):
    spec, _, out, _ = trained
    for arm in spec.arms:
        folder = out / arm.name
        for name in ("latest.pt", "log.csv", "history.json", "denoiser.pt"):
            assert (folder / name).is_file(), (arm.name, name)
        history = json.loads((folder / "history.json").read_text())
        assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    record = json.loads((out / "run.json").read_text())
    assert record["run"]["data"]["size"] == 64 and "train_baseline" in record["timings_s"]


def test_arms_take_the_same_denoiser_updates_and_the_plain_arm_no_feedback(trained):
    _, _, _, arms = trained
    denoiser_steps = {name: sum(h["phase"] in ("warmup", "denoiser", "joint")
                                for h in arm.history) for name, arm in arms.items()}
    assert denoiser_steps["baseline"] == denoiser_steps["lidnet"] == 2
    assert all(h["phase"] == "denoiser" and h["detection"] == 0
               for h in arms["baseline"].history)
    assert any(h["phase"] == "detector" for h in arms["lidnet"].history)
    assert any(h.get("roi_perceptual", 0) > 0 for h in arms["lidnet"].history)


def test_the_same_run_file_gives_bitwise_the_same_models(trained, tmp_path):
    spec, folder, out, _ = trained
    again, _ = load_run(TINY, OVERRIDES)
    train(again, tmp_path, folder, progress=False)
    for arm in spec.arms:
        a = load_checkpoint(checkpoint_of(out, arm.name))
        b = load_checkpoint(checkpoint_of(tmp_path, arm.name))
        for role in ("denoiser", "detector"):
            for key, value in a[role].items():
                assert torch.equal(value, b[role][key]), (arm.name, role, key)


def test_resuming_a_finished_run_keeps_its_history(trained, tmp_path):
    _, folder, out, arms = trained
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again, _ = load_run(TINY, OVERRIDES)
    resumed = train(again, copy, folder, resume=True, progress=False)
    for name, arm in arms.items():
        kept = json.loads((copy / name / "history.json").read_text())
        assert len(kept) == len(arm.history) == len(resumed[name].history)


def test_evaluation_writes_the_protocol_metrics(trained):
    spec, folder, out, _ = trained
    ev = evaluate(spec, out, folder, progress=False, report=False)  # arms read from checkpoints
    # Strict JSON, the split named, every interval (the CHO's included) around its estimate.
    metrics = check_metrics_file(out / "metrics.json", "test")
    assert metrics == json.loads(json.dumps(ev.metrics))
    for row in ("low_dose", "baseline", "lidnet", "normal_dose", "noise_free",
                "lidnet_minus_baseline", "protocol"):
        assert row in metrics, row
    keys = {"rmse_hu", "psnr", "ssim", "lesion_contrast_recovery", "lesion_rmse_hu",
            "lesion_cnr", "observer_cpm", "observer_froc", "rmse_hu_vs_noise_free",
            "rmse_hu_vs_normal_dose"}
    for row in ("low_dose", "baseline", "lidnet"):
        assert keys <= set(metrics[row]), row
        assert set(metrics[row]["rmse_hu"]) == {"mean", "low", "high"}
        assert list(metrics[row]["observer_froc"]) == ["0.125", "0.25", "0.5", "1", "2", "4",
                                                       "8"]
        assert "model_observer_dprime" in metrics[row]
    assert "cotrained_cpm" in metrics["lidnet"] and "cotrained_cpm" not in metrics["baseline"]
    # Scored against the phantom like every set, the noise-free reconstruction is the floor.
    assert metrics["noise_free"]["rmse_hu"]["mean"] < metrics["low_dose"]["rmse_hu"]["mean"]
    diff = metrics["lidnet_minus_baseline"]["rmse_hu"]
    assert diff["mean"] == pytest.approx(metrics["lidnet"]["rmse_hu"]["mean"]
                                         - metrics["baseline"]["rmse_hu"]["mean"])
    gap = metrics["headroom"]["observer_cpm"]  # normal dose - low dose, paired
    assert gap["mean"] == pytest.approx(metrics["normal_dose"]["observer_cpm"]["mean"]
                                        - metrics["low_dose"]["observer_cpm"]["mean"])
    protocol = metrics["protocol"]
    assert protocol["n_slices"] == 24 and protocol["window"]["data_range_hu"] == 400
    assert len(protocol["observers"]) == 2


def test_evaluating_an_untrained_run_is_a_clear_error(tmp_path):
    spec, folder = load_run(TINY)
    with pytest.raises(ValueError, match="lidplug train"):
        evaluate(spec, tmp_path, folder, progress=False, report=False)


def test_a_run_file_that_no_longer_fits_its_checkpoint(trained, tmp_path):
    _, _, out, _ = trained
    changed = tmp_path / "changed.toml"
    changed.write_text(TINY.read_text().replace("channels = 4", "channels = 6"))
    spec, folder = load_run(changed)
    with pytest.raises(ValueError, match="does not fit"):
        evaluate(spec, out, folder, progress=False, report=False)


@pytest.mark.parametrize("role", ["denoiser", "detector"])
def test_non_finite_weights_are_refused_before_scoring(trained, tmp_path, role):
    """Regression: a co-trained detector with NaN weights scored cotrained_cpm 0.0."""
    import shutil

    from lidplug.training.checkpoint import save_checkpoint

    spec, folder, out, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    path = checkpoint_of(copy, "lidnet")
    state = load_checkpoint(path)
    key = next(k for k, v in state[role].items() if v.is_floating_point())
    state[role][key] = torch.full_like(state[role][key], float("nan"))
    save_checkpoint({k: v for k, v in state.items() if k != "format"}, path)
    with pytest.raises(ValueError, match=rf"lidnet.*{role}.*{key}.*NaN or inf"):
        evaluate(spec, copy, folder, progress=False, report=False)


def test_a_denoiser_giving_nan_is_named(trained):
    """Regression: a denoiser whose output held NaN failed with 'rmse_hu: expected finite'
    (which arm?)."""
    import dataclasses

    from lidplug import wrap

    class NaNOut(torch.nn.Module):  # finite weights, NaN output (0 / 0)
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x * self.w / self.w

    spec, folder, out, arms = trained
    lidnet = arms["lidnet"]
    broken = {**arms, "lidnet": dataclasses.replace(
        lidnet, model=wrap(NaNOut(), lidnet.model.detector, check=False))}  # past wrap's probe
    with pytest.raises(ValueError, match=r"arm 'lidnet': expected its denoiser to give finite"):
        evaluate(spec, out, folder, arms=broken, progress=False, report=False)
