"""Run files: one nested description read by jsonargparse; every bad value refused at load time."""

import argparse
import math
from pathlib import Path

import pytest
import torch

from lidplug.pipeline import DEMO_RUN, ModelSpec, RunSpec, build_model, dump_run, load_run
from lidplug.zoo import RUNS

TINY = Path(__file__).with_name("tiny.toml")


def _write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_defaults_and_the_shipped_runs_load():
    spec, folder = load_run(None)
    assert isinstance(spec, RunSpec) and folder is None
    assert [a.name for a in spec.arms] == ["baseline", "lidnet"]
    assert spec.model_spec("denoiser").pretrained == "redcnn"
    assert [o.pretrained for o in spec.evaluate.observer_specs()] == ["observer-frcnn",
                                                                      "observer-fcos"]
    for path in [DEMO_RUN, *sorted(RUNS.glob("*.toml"))]:
        load_run(path)  # every shipped run file is valid


def test_overrides_apply_on_top_of_the_file():
    spec, _ = load_run(TINY, ["--train.rounds", "3", "--simulation.dose", "0.05"])
    assert spec.train.rounds == 3 and spec.simulation.dose == 0.05
    assert spec.data.size == 64  # from the file


def test_model_tables_are_checked_and_completed_without_building():
    spec, _ = load_run(TINY)
    den = spec.model_spec("denoiser")
    assert den.class_path == "lidplug.models.REDCNN"
    # jsonargparse fills in the signature's defaults; nothing is built yet.
    assert den.model["init_args"] == {"channels": 4, "center": 0.25, "scale": 0.1}


def test_a_model_table_replaces_the_default_shipped_model(tmp_path):
    path = _write(tmp_path, '[denoiser.model]\nclass_path = "lidplug.models.UNet"\n')
    spec, _ = load_run(path)
    assert spec.model_spec("denoiser").pretrained is None
    assert spec.model_spec("denoiser").class_path == "lidplug.models.UNet"


def test_arm_overrides_and_plain_arms():
    spec, _ = load_run(TINY, ["--wrap.roi_weight", "0.5"])
    plain, lidnet = spec.arms
    assert spec.arm_wrap(plain).det_weight == 0 and spec.arm_wrap(plain).roi_weight == 0
    assert spec.arm_train(plain).mode == "frozen"  # no detector steps
    assert spec.arm_wrap(lidnet).roi_weight == 0.5


@pytest.mark.parametrize(("text", "expected"), [
    ("[data]\nkinds = 'phantom'\n", "kinds"),                       # a typo key
    ("[trian]\nrounds = 1\n", "trian"),                              # a typo table
    ("seeds = 3\n", "seeds"),
    ("[data]\nsize = -1\n", "data.size"),
    ("[data]\nsize = 'big'\n", "data.size"),
    ("[data]\nkind = 'mri'\n", "data.kind"),
    ("[train]\nrounds = 1e12\n", "rounds"),                          # a float for an int
    ("[train]\nrounds = 99999999999999999999\n", "rounds"),
    ("[train]\nrounds = 100000000\ndenoiser_steps = 100\n", "at most"),
    ("[train]\nlr_denoiser = inf\n", "lr_denoiser"),
    ("[train]\nlr_denoiser = nan\n", "lr_denoiser"),
    ("[train]\nmode = 'sometimes'\n", "mode"),
    ("[wrap]\nroi_wieght = 1.0\n", "roi_wieght"),
    ("[wrap]\ndet_weight = -1.0\n", "det_weight"),
    ("[wrap]\ndet_weight = inf\n", "det_weight"),
    ("[simulation]\ndose = 0\n", "simulation.dose"),
    ("[simulation]\ndose = 2.0\n", "simulation.dose"),
    ("[denoiser.model]\nclass_path = 'lidplug.models.REDCNN'\ninit_args = { channelz = 4 }\n",
     "channelz"),
    ("[denoiser.model]\nclass_path = 'lidplug.models.REDCNN'\ninit_args = { channels = 'x' }\n",
     "channels"),
    ("[denoiser.model]\nclass_path = 'lidplug.models.Nope'\n", "Nope"),
    ("[denoiser.model]\nclass_path = 'nowhere.Model'\n", "nowhere"),
    ("[denoiser]\npretrained = 'redcnn'\nweights = 'x.pt'\n", "either"),
    ("[denoiser]\nweights = 'x.pt'\nsha256 = 'abc'\n", "sha256"),
    ("[[arms]]\nname = 'a'\nfeedbak = true\n", "feedbak"),
    ("[[arms]]\nname = 'a'\n[[arms]]\nname = 'a'\n", "distinct"),
    ("[[arms]]\nname = 'low_dose'\n", r"arms\.name"),
    # Regression: arms x and x_minus_baseline made metrics.json hold the difference under the
    # arm's name (the arm's own results lost); an arm's folder may not be the pretraining one.
    ("[[arms]]\nname = 'baseline'\nfeedback = false\n[[arms]]\nname = 'x'\n[[arms]]\n"
     "name = 'x_minus_baseline'\n", "_minus_"),
    ("[[arms]]\nname = 'pretrained'\n", r"arms\.name"),
    ("[[arms]]\nname = 'a'\ntrain = { roundz = 1 }\n", "roundz"),
    ("[[arms]]\nname = 'a'\nwrap = { det_weight = -2.0 }\n", "det_weight"),
    ("[evaluate]\nbootstrap = 1\n", "evaluate.bootstrap"),
    ("[evaluate]\nhit_rule = 'touch'\n", "hit_rule"),
    ("[data\n", "TOML"),
])
def test_bad_run_files_are_refused_naming_the_key(tmp_path, text, expected):
    with pytest.raises(ValueError, match=expected):
        load_run(_write(tmp_path, text))


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"none\.toml"):
        load_run(tmp_path / "none.toml")
    other = tmp_path / "run.yaml"
    other.write_text("data: {}\n")
    with pytest.raises(ValueError, match=r"\.toml"):
        load_run(other)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="UTF-8"):
        load_run(binary)


@pytest.mark.parametrize(("text", "value"), [("false", False), ("true", True)])
def test_booleans_mean_what_they_say(tmp_path, text, value):
    spec, _ = load_run(_write(tmp_path, f"[train]\ndeterministic = {text}\n"))
    assert spec.train.deterministic is value


def test_python_api_checks_too():
    with pytest.raises(ValueError, match="either"):
        ModelSpec(pretrained="redcnn", weights="x.pt")
    with pytest.raises(ValueError, match="class_path"):
        ModelSpec(model={"init_args": {}})
    from lidplug.training import TrainConfig

    with pytest.raises(TypeError, match="deterministic"):
        TrainConfig(deterministic="false")
    with pytest.raises(ValueError, match="lr_denoiser"):
        TrainConfig(lr_denoiser=math.inf)


def test_dump_is_plain_data():
    import json

    spec, _ = load_run(TINY)
    data = json.loads(json.dumps(dump_run(spec)))
    assert data["denoiser"]["model"]["class_path"] == "lidplug.models.REDCNN"
    assert data["arms"][0]["name"] == "baseline"


# A run file is read before anything runs; a class_path must name something that makes a
# module, decided from the class or the function's return annotation, never by calling it.
def annotated_builder(width: int = 1) -> "torch.nn.Module":  # a string, as under
    return torch.nn.Conv2d(1, 1, width)                         # "from __future__ import ..."


def unannotated_builder(width: int = 1):
    return torch.nn.Conv2d(1, 1, width)


class NoisyNamespace(argparse.Namespace):
    def __init__(self, **kwargs):
        Path("MARKER").touch()
        super().__init__(**kwargs)


@pytest.mark.parametrize(("class_path", "args"), [
    ("os.system", "{ command = 'touch MARKER' }"),
    ("subprocess.getoutput", "{ cmd = 'touch MARKER' }"),
    ("subprocess.call", "{ args = 'touch MARKER' }"),
    ("builtins.eval", "{}"),
    (f"{__name__}.unannotated_builder", "{}"),
    (f"{__name__}.NoisyNamespace", "{}"),  # a namespace subclass may run anything
])
def test_class_path_runs_nothing_but_module_makers(tmp_path, monkeypatch, class_path, args):
    """Regression: class_path = "os.system" with init_args = { command = ... } ran the command
    (train, export and evaluate) before the result was found not to be a module."""
    monkeypatch.chdir(tmp_path)
    text = f"[denoiser.model]\nclass_path = '{class_path}'\ninit_args = {args}\n"
    with pytest.raises(ValueError, match=r"class_path: expected an nn\.Module subclass"):
        load_run(_write(tmp_path, text))
    with pytest.raises(ValueError, match=r"nn\.Module subclass"):
        ModelSpec(model={"class_path": class_path, "init_args": {}})
    assert not (tmp_path / "MARKER").exists()


def test_module_classes_and_annotated_builders_are_accepted(tmp_path):
    for class_path in ("lidplug.models.REDCNN", "torch.nn.Identity",
                       "lidplug.detectors.lesion_fcos",
                       "torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn",
                       f"{__name__}.annotated_builder"):
        spec = ModelSpec(model={"class_path": class_path, "init_args": {}})
        assert spec.class_path == class_path


class TakesNamespace(torch.nn.Module):
    """As ldct-benchmark's models: a namespace argument (which they do not read)."""

    def __init__(self, args: argparse.Namespace, width: int = 1):
        super().__init__()
        self.given = args
        self.conv = torch.nn.Conv2d(1, 1, width)


def test_a_plain_namespace_may_be_a_nested_argument(tmp_path):
    text = (f"[denoiser.model]\nclass_path = '{__name__}.TakesNamespace'\n"
            "init_args = { args = { class_path = 'argparse.Namespace' }, width = 3 }\n")
    spec, folder = load_run(_write(tmp_path, text))
    model = build_model(spec.denoiser, "denoiser", folder)
    assert type(model.given) is argparse.Namespace and model.conv.kernel_size == (3, 3)


def test_phantom_data_takes_no_options(tmp_path):
    """Regression: data.options of a phantom run were ignored silently."""
    with pytest.raises(ValueError, match=r"data\.options"):
        load_run(_write(tmp_path, "[data]\noptions = { drop_noisy = true }\n"))


def test_the_data_cache_resolves_against_the_run_file(tmp_path, monkeypatch):
    """Regression: data.cache resolved against the working folder, not the run file's."""
    from lidplug.pipeline import make_split

    run_dir, cwd = tmp_path / "runs", tmp_path / "elsewhere"
    run_dir.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    spec, folder = load_run(_write(run_dir, "[data]\nsize = 32\ntrain = 1\ncache = 'cache'\n"))
    make_split(spec, "train", folder)[0]
    assert (run_dir / "cache").is_dir() and not (cwd / "cache").exists()


@pytest.mark.parametrize(("text", "key"), [
    ("[wrap]\nroi_output_size = 100000\n", "roi_output_size"),
    ("[wrap]\nroi_sampling_ratio = 100000\n", "roi_sampling_ratio"),
    ("[wrap]\nnum_proposals = 100000000\n", "num_proposals"),
    ("[train]\nbatch_size = 100000000\n", "batch_size"),
    ("[train]\nnum_workers = 100000\n", "num_workers"),
])
def test_sizes_in_the_run_are_bounded(tmp_path, text, key):
    """Regression: roi_output_size = 100000 tried to allocate terabytes (a traceback; the
    machine's other processes were OOM-killed)."""
    with pytest.raises(ValueError, match=key):
        load_run(_write(tmp_path, text))


def test_a_byte_order_mark_is_accepted(tmp_path):
    """Regression: a run file saved with a UTF-8 BOM was refused ("Invalid statement")."""
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff[train]\nrounds = 3\n".encode())
    spec, _ = load_run(path)
    assert spec.train.rounds == 3


def test_deeply_nested_toml_is_one_error(tmp_path):
    """Regression: a TOML value nested 5000 deep raised RecursionError."""
    path = _write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ValueError, match="nested"):
        load_run(path)


@pytest.mark.parametrize("text", ["[data]\nspacing = 1e-300\n", "[simulation]\ndose = 1e-300\n"])
def test_vanishing_sizes_are_refused_when_read(tmp_path, text):
    """Regression: spacing = 1e-300 was only refused after the first arm had trained; a dose of
    1e-300 was refused with 'got [0.0]'."""
    with pytest.raises(ValueError, match=r"spacing|dose.*1e-300"):
        load_run(_write(tmp_path, text))


def test_print_config_is_named(tmp_path):
    """Regression: --print_config failed with 'toml package is required'."""
    with pytest.raises(ValueError, match=r"--print_config.*run\.json"):
        load_run(TINY, ["--print_config"])
