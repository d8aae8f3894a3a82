"""``lidplug train`` / ``evaluate`` / ``export`` / ``denoise`` / ``demo`` on the tiny run file."""

import json
import shutil
import subprocess
import sys

import pydicom
import pytest
import torch
from cli_checks import TINY, check_metrics_file, error_line, strict_json, train_tiny
from dicom_factory import CT_SMALL, ct_small_series

from lidplug.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run: (run file, output folder)."""
    return train_tiny(tmp_path_factory)


@pytest.mark.parametrize("command", ["train", "evaluate", "denoise", "export", "demo", "simulate"])
def test_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage: lidplug " + command in capsys.readouterr().out


def test_train_writes_each_arm(trained):
    _, out = trained
    for arm in ("baseline", "lidnet"):
        for name in ("latest.pt", "denoiser.pt", "log.csv", "history.json"):
            assert (out / arm / name).is_file(), (arm, name)
    model = torch.jit.load(str(out / "lidnet" / "denoiser.pt"))
    assert model(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)
    assert (out / "run.json").is_file()


def test_default_out_is_the_run_files_stem_and_overrides_apply(tmp_path):
    config = tmp_path / "mine.toml"
    shutil.copyfile(TINY, config)
    assert main(["train", "--config", str(config), "--train.denoiser_steps", "1"]) == 0
    history = json.loads((tmp_path / "mine" / "baseline" / "history.json").read_text())
    assert len(history) == 1


def test_train_refuses_to_overwrite_checkpoints(trained, capsys):
    config, out = trained
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert "--resume" in error_line(capsys)


def test_resume_of_a_finished_run_keeps_history(trained, tmp_path):
    config, out = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = json.loads((copy / "lidnet" / "history.json").read_text())
    assert main(["train", "--config", str(config), "--out", str(copy), "--resume"]) == 0
    assert json.loads((copy / "lidnet" / "history.json").read_text()) == before


@pytest.mark.parametrize(("text", "expected"), [
    ("[data]\nkind = 'mri'\n", "data.kind"),
    ("[trian]\nrounds = 1\n", "trian"),
    ("[data]\nkinds = 'phantom'\n", "kinds"),
    ("[train]\nrounds = -1\n", "rounds"),
    ("[train]\nlr_denoiser = inf\n", "lr_denoiser"),
    ("[train]\nrounds = 99999999999999999999\n", "rounds"),
    ("[data]\nsize = 'big'\n", "data.size"),
    ("[wrap]\nroi_wieght = 1.0\n", "roi_wieght"),
    ("[data]\nkind = 'deeplesion'\nroot = 'nowhere'\n", "nowhere"),
    ("[data\n", "TOML"),
    ("[denoiser]\npretrained = 'nope'\n", "pretrained"),
])
def test_train_user_errors(tmp_path, capsys, text, expected):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert expected in error_line(capsys)
    assert not (tmp_path / "o").exists()  # nothing written before the run file is good


def test_bad_overrides_are_user_errors(tmp_path, capsys):
    assert main(["train", "--config", str(TINY), "--out", str(tmp_path / "o"),
                 "--train.roundz", "2"]) == 2
    assert "roundz" in error_line(capsys)
    assert main(["train", "--config", str(TINY), "stray"]) == 2
    assert "stray" in error_line(capsys)
    assert main(["export", "x.pt", "--config", str(TINY), "--checkpoint", "c.pt",
                 "--train.rounds", "2"]) == 2
    error_line(capsys)


def test_train_missing_run_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in error_line(capsys)


def test_evaluate_writes_metrics_and_report(trained, capsys):
    config, out = trained
    assert main(["evaluate", "--config", str(config), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"low_dose", "baseline", "lidnet", "normal_dose", "lidnet_minus_baseline",
            "protocol"} <= set(metrics)
    assert (out / "report.html").is_file()
    assert "lidnet_minus_baseline" in capsys.readouterr().out


def test_evaluate_validation_split(trained):
    config, out = trained
    assert main(["evaluate", "--config", str(config), "--out", str(out),
                 "--split", "validation"]) == 0
    metrics = json.loads((out / "metrics-validation.json").read_text())
    assert metrics["protocol"]["n_slices"] == 4 and metrics["protocol"]["split"] == "validation"


def test_evaluate_user_errors(trained, tmp_path, capsys):
    config, out = trained
    assert main(["evaluate", "--config", str(config), "--out", str(tmp_path / "empty")]) == 2
    assert "lidplug train" in error_line(capsys)
    changed = tmp_path / "changed.toml"
    changed.write_text(config.read_text().replace("channels = 4", "channels = 6"))
    assert main(["evaluate", "--config", str(changed), "--out", str(out)]) == 2
    assert "does not fit" in error_line(capsys)


def test_export(trained, tmp_path):
    config, out = trained
    target = tmp_path / "exported.pt"
    assert main(["export", str(target), "--config", str(config), "--checkpoint",
                 str(out / "lidnet" / "latest.pt")]) == 0
    x = torch.rand(1, 1, 64, 64)
    reference = torch.jit.load(str(out / "lidnet" / "denoiser.pt"))(x)
    assert torch.allclose(torch.jit.load(str(target))(x), reference, atol=1e-5)


def test_export_user_errors(trained, tmp_path, capsys):
    config, out = trained
    # The output exists already: refused without --overwrite.
    assert main(["export", str(out / "lidnet" / "denoiser.pt"), "--config", str(config),
                 "--checkpoint", str(out / "lidnet" / "latest.pt")]) == 2
    assert "--overwrite" in error_line(capsys)
    changed = tmp_path / "changed.toml"
    changed.write_text(config.read_text().replace("channels = 4", "channels = 6"))
    assert main(["export", str(tmp_path / "x.pt"), "--config", str(changed), "--checkpoint",
                 str(out / "lidnet" / "latest.pt")]) == 2
    error_line(capsys)


@pytest.fixture
def series(tmp_path):
    if not CT_SMALL.is_file():
        pytest.skip("CT_small.dcm is not shipped with the installed pydicom")
    return ct_small_series(tmp_path / "series", 2)


def test_denoise_series(trained, series, tmp_path, capsys):
    _, out = trained
    target = tmp_path / "denoised"
    assert main(["denoise", str(series), str(target), "--model",
                 str(out / "lidnet" / "denoiser.pt")]) == 0
    files = sorted(target.glob("*.dcm"))
    assert len(files) == 2
    ds = pydicom.dcmread(files[0])
    assert "DERIVED" in ds.ImageType and "lidplug denoised" in ds.SeriesDescription
    assert "wrote 2 slice(s)" in capsys.readouterr().out


def test_demo_user_errors(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--out", str(blocker)]) == 2
    assert "expected a folder" in error_line(capsys)
    assert main(["demo", "--out", str(tmp_path / "d"), "--train.rounds", "x"]) == 2
    assert "rounds" in error_line(capsys)


def test_console_script_error_is_one_line(tmp_path):
    # As a program (python -m lidplug.cli): the commands' CLIError must still be caught there.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = subprocess.run([sys.executable, "-m", "lidplug.cli", "demo", "--out", str(blocker)],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr


def test_a_full_disk_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    from lidplug.training import checkpoint

    def full(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    assert main(["train", "--config", str(TINY), "--out", str(tmp_path / "o")]) == 2
    assert "No space left" in error_line(capsys)


@pytest.mark.parametrize("content", ["junk", "empty", "exported", "pickle"])
def test_evaluate_and_export_refuse_wrong_checkpoint_files(trained, tmp_path, capsys, content):
    import pickle

    config, out = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    target = copy / "lidnet" / "latest.pt"
    if content == "junk":
        target.write_bytes(b"not a checkpoint")
    elif content == "empty":
        target.write_bytes(b"")
    elif content == "exported":  # an exported model where a checkpoint belongs
        shutil.copyfile(out / "lidnet" / "denoiser.pt", target)
    else:
        target.write_bytes(pickle.dumps({"denoiser": object()}))
    assert main(["evaluate", "--config", str(config), "--out", str(copy)]) == 2
    error_line(capsys)
    assert main(["export", str(tmp_path / "x.pt"), "--config", str(config), "--checkpoint",
                 str(target)]) == 2
    error_line(capsys)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_a_run_file_cannot_run_shell_commands(tmp_path, capsys, monkeypatch, command):
    """Regression: [denoiser.model] class_path = "os.system" ran its init_args' command."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "evil.toml"
    config.write_text(TINY.read_text().replace(
        'class_path = "lidplug.models.REDCNN"\ninit_args = { channels = 4 }',
        "class_path = 'os.system'\ninit_args = { command = 'touch MARKER' }"))
    argv = {"train": ["train", "--config", str(config)],
            "evaluate": ["evaluate", "--config", str(config)],
            "export": ["export", "x.pt", "--config", str(config), "--checkpoint", str(config)]}
    assert main(argv[command]) == 2
    assert "nn.Module subclass" in error_line(capsys)
    assert not (tmp_path / "MARKER").exists()


def test_each_split_has_its_own_files_naming_it(trained, tmp_path):
    """Regression: 'evaluate --split validation' overwrote the test split's metrics.json and
    report.html, and the report still said "test slices"."""
    config, out = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert main(["evaluate", "--config", str(config), "--out", str(copy)]) == 0
    test = {name: (copy / name).read_bytes()
            for name in ("metrics.json", "details.json", "report.html")}
    assert main(["evaluate", "--config", str(config), "--out", str(copy),
                 "--split", "validation"]) == 0
    assert {name: (copy / name).read_bytes() for name in test} == test
    check_metrics_file(copy / "metrics.json", "test")
    validation = check_metrics_file(copy / "metrics-validation.json", "validation")
    assert validation["protocol"]["n_slices"] == 4
    assert strict_json(copy / "details-validation.json")["split"] == "validation"
    assert strict_json(copy / "details.json")["split"] == "test"
    report = (copy / "report-validation.html").read_text()
    assert "validation slices" in report and "test slice" not in report


def _evaluated_copy(trained, tmp_path, *overrides):
    """A copy of the tiny trained run, evaluated again with ``overrides``."""
    config, out = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert main(["evaluate", "--config", str(config), "--out", str(copy), *overrides]) == 0
    return copy


def test_one_test_slice_is_too_few_to_tell(trained, tmp_path, capsys):
    """Regression: one test slice gave point intervals and the report called them shown."""
    from lidplug.pipeline import verdicts

    copy = _evaluated_copy(trained, tmp_path, "--data.test", "1")
    metrics = check_metrics_file(copy / "metrics.json", "test")
    assert {v for _, _, v in verdicts(metrics)} == {"too few to tell"}
    report = (copy / "report.html").read_text()
    assert "too few to tell" in report
    assert "'>better, shown<" not in report and "'>worse, shown<" not in report


def test_a_split_without_lesions_writes_no_bare_nan(trained, tmp_path):
    """Regression: metrics.json held bare NaN when a split had no lesion."""
    copy = _evaluated_copy(trained, tmp_path, "--data.lesion_free_fraction", "1.0")
    metrics = check_metrics_file(copy / "metrics.json", "test")
    assert metrics["lidnet"]["observer_cpm"] == {
        "mean": None, "low": None, "high": None, "note": "not measurable"}
    strict_json(copy / "details.json")


@pytest.mark.parametrize("change", [["--simulation.dose", "0.9"], ["--data.seed", "77"],
                                    ["--train.lr_denoiser", "0.5"]])
def test_resume_refuses_a_changed_run(trained, tmp_path, capsys, change):
    """Regression: 'train --resume' with a changed run (dose 0.9 on a run trained at 0.1, ...)
    continued, and rewrote run.json as if every step had used the new values."""
    config, out = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (copy / "run.json").read_text()
    assert main(["train", "--config", str(config), "--out", str(copy), "--resume",
                 *change]) == 2
    line = error_line(capsys)
    assert change[0][2:] in line and "--resume" in line
    assert (copy / "run.json").read_text() == before


def test_resume_may_add_rounds(trained, tmp_path):
    config, out = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    steps = len(json.loads((copy / "lidnet" / "history.json").read_text()))
    assert main(["train", "--config", str(config), "--out", str(copy), "--resume",
                 "--train.rounds", "2", "--device", "cpu"]) == 0
    assert len(json.loads((copy / "lidnet" / "history.json").read_text())) == 2 * steps
    assert json.loads((copy / "run.json").read_text())["run"]["train"]["rounds"] == 2


def _train_in_a_memory_cage(config, out, *overrides):
    """``lidplug train`` in a child process whose address space is capped at 8 GiB: a run that
    tries to allocate more fails there, never the machine."""
    import resource

    def cage():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, resource.RLIM_INFINITY))

    return subprocess.run([sys.executable, "-m", "lidplug.cli", "train", "--config", str(config),
                           "--out", str(out), *overrides], capture_output=True, text=True,
                          preexec_fn=cage, timeout=300, check=False)


@pytest.mark.parametrize("case", ["dncnn-100000-channels", "batch-of-4096-slices-of-4096"])
def test_a_run_too_large_for_memory_is_refused_before_it_allocates(tmp_path, case):
    """Regression: DnCNN channels = 100000 (and batches of terabytes) tried to allocate them
    (a traceback, and the machine's other processes OOM-killed)."""
    config = tmp_path / "big.toml"
    overrides = []
    if case.startswith("dncnn"):
        config.write_text(TINY.read_text().replace(
            'class_path = "lidplug.models.REDCNN"\ninit_args = { channels = 4 }',
            'class_path = "lidplug.models.DnCNN"\ninit_args = { channels = 100000 }'))
    else:
        config.write_text(TINY.read_text())
        overrides = ["--data.size", "4096", "--data.spacing", "0.1", "--data.train", "4096",
                     "--train.batch_size", "4096"]
    result = _train_in_a_memory_cage(config, tmp_path / "o", *overrides)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GiB" in lines[0] and "Traceback" not in result.stderr, lines


class ExplodingDenoiser(torch.nn.Module):
    """A user's class that fails while it is built."""

    def __init__(self, width: int = 4):
        super().__init__()
        raise RuntimeError("CUDA driver not found (the user's own check)")


def _variant(tmp_path, old, new):
    config = tmp_path / "variant.toml"
    text = TINY.read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    return config


_DENOISER = 'class_path = "lidplug.models.REDCNN"\ninit_args = { channels = 4 }'
_OBSERVER = 'observers = [{model = {class_path = "lidplug.detectors.lesion_faster_rcnn"'


@pytest.mark.parametrize("case", ["diverging", "exploding-class", "detector-as-denoiser",
                                  "bad-roi-levels", "damaged-observer", "no-steps"])
def test_failures_of_a_run_are_one_line_before_any_training(tmp_path, capsys, case):
    """Regression: lr 1e30 (TrainingDiverged), a user class raising in __init__ and a detector
    given as the denoiser (AssertionError) gave tracebacks; bad roi_levels and a damaged
    observer file were found only after the first arm had trained; rounds = 0 trained nothing
    and evaluate then said 'run lidplug train first'."""
    overrides = []
    config = TINY
    if case == "diverging":
        overrides = ["--train.lr_denoiser", "1e30", "--train.grad_clip", "null"]
    elif case == "exploding-class":
        config = _variant(tmp_path, _DENOISER, 'class_path = "test_cli_train.ExplodingDenoiser"')
    elif case == "detector-as-denoiser":
        config = _variant(tmp_path, _DENOISER, 'class_path = "lidplug.detectors.lesion_fcos"\n'
                                               'init_args = { image_size = 64 }')
    elif case == "bad-roi-levels":
        overrides = ["--wrap.roi_levels", '["p9"]']
    elif case == "damaged-observer":
        (tmp_path / "observer.pt").write_bytes(b"PK\x03\x04 damaged")
        config = _variant(tmp_path, _OBSERVER,
                          'observers = [{weights = "observer.pt", model = {class_path = '
                          '"lidplug.detectors.lesion_faster_rcnn"')
    else:
        overrides = ["--train.rounds", "0"]
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--out", str(out), *overrides]) == 2
    line = error_line(capsys)
    expected = {"diverging": "non-finite loss", "exploding-class": "CUDA driver not found",
                "detector-as-denoiser": "arms[baseline]", "bad-roi-levels": "arms[lidnet]",
                "damaged-observer": "evaluate.observers[0].weights",
                "no-steps": "at least one step"}[case]
    assert expected in line
    if case != "diverging":  # everything else is found before the first arm trains
        assert not (out / "baseline" / "latest.pt").exists()
