"""Output folders of ``train`` / ``evaluate`` / ``export`` / ``demo``: outputs never replace
inputs, a folder made by another command is not reused without ``--overwrite``, one command at
a time (a lock), no stale outputs beside new ones, and run.json always readable or named."""

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest
from cli_checks import TINY, error_line, train_tiny

from lidplug.cli import main

# The shipped demo cut to seconds: enough to reach (and pass) every check of its folder.
TINY_DEMO = ["--quiet", "--threads", "1", "--data.train", "4", "--data.validation", "2",
             "--data.test", "4", "--train.rounds", "1", "--train.denoiser_steps", "1",
             "--train.detector_steps", "1", "--train.batch_size", "2", "--evaluate.bootstrap",
             "10", "--evaluate.model_observer", "false"]
LOCK = ".lidplug.lock"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run: (run file, output folder); tests work on copies of the folder."""
    return train_tiny(tmp_path_factory)


def _copy(trained, tmp_path):
    config, out = trained
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return config, copy


# ---- item 3: outputs that replace inputs ---------------------------------------------------

@pytest.mark.parametrize("which", ["checkpoint", "config"])
def test_export_never_replaces_its_inputs(trained, tmp_path, capsys, which):
    """Regression: 'export OUT --checkpoint OUT --overwrite' replaced the checkpoint it read
    (resume then failed); OUT equal to --config turned the run file into a zip."""
    config, out = _copy(trained, tmp_path)
    checkpoint = out / "lidnet" / "latest.pt"
    target = checkpoint if which == "checkpoint" else config
    before = target.read_bytes()
    assert main(["export", str(target), "--config", str(config), "--checkpoint",
                 str(checkpoint), "--overwrite"]) == 2
    assert "is an input" in error_line(capsys)
    assert target.read_bytes() == before


def test_train_never_replaces_its_starting_weights(trained, tmp_path, capsys):
    """Regression: 'train --overwrite' replaced its own starting weights file."""
    config, out = _copy(trained, tmp_path)
    weights = out / "baseline" / "latest.pt"
    run = tmp_path / "from-own.toml"
    run.write_text(config.read_text().replace(
        'init_args = { channels = 4 }', f'init_args = {{ channels = 4 }}\n'
        f'[denoiser]\nweights = "{weights}"', 1))
    before = weights.read_bytes()
    assert main(["train", "--config", str(run), "--out", str(out), "--overwrite"]) == 2
    line = error_line(capsys)
    assert "is an input" in line and "denoiser.weights" in line
    assert weights.read_bytes() == before


def test_demo_does_not_take_over_a_train_folder(trained, tmp_path, capsys):
    """Regression: 'demo --out' on a 'train' folder replaced its checkpoints without a flag."""
    _, out = _copy(trained, tmp_path)
    before = (out / "lidnet" / "latest.pt").read_bytes()
    assert main(["demo", "--out", str(out), *TINY_DEMO]) == 2
    line = error_line(capsys)
    assert "lidplug train" in line and "--overwrite" in line
    assert (out / "lidnet" / "latest.pt").read_bytes() == before


def test_train_does_not_take_over_a_folder_it_did_not_make(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["train", "--config", str(TINY), "--out", str(mine)]) == 2
    assert "--overwrite" in error_line(capsys)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


# ---- item 4: one command at a time ---------------------------------------------------------

@pytest.fixture
def held_lock():
    """Hold a folder's lock as another lidplug process would (flock + its pid)."""
    handles = []

    def hold(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                 "command": "train"}).encode())
        handles.append(fd)

    yield hold
    for fd in handles:
        os.close(fd)


@pytest.mark.parametrize("command", ["train", "evaluate", "export", "demo"])
def test_a_folder_in_use_is_refused(trained, tmp_path, capsys, held_lock, command):
    """Regression: two runs on one output folder both ran and interleaved log.csv rows."""
    config, out = _copy(trained, tmp_path)
    held_lock(out)
    log = (out / "lidnet" / "log.csv").read_text()
    argv = {"train": ["train", "--config", str(config), "--out", str(out), "--resume"],
            "evaluate": ["evaluate", "--config", str(config), "--out", str(out)],
            "export": ["export", str(tmp_path / "x.pt"), "--config", str(config),
                       "--checkpoint", str(out / "lidnet" / "latest.pt")],
            "demo": ["demo", "--out", str(out), "--overwrite", *TINY_DEMO]}[command]
    assert main(argv) == 2
    line = error_line(capsys)
    assert "in use" in line and f"pid {os.getpid()}" in line
    assert (out / "lidnet" / "log.csv").read_text() == log
    assert not (tmp_path / "x.pt").exists()


def test_a_stale_lock_is_taken_over(trained, tmp_path, capsys):
    config, out = _copy(trained, tmp_path)
    # The pid of a process that has ended, and nobody holds the lock.
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": os.uname().nodename,
                                        "command": "train"}))
    assert main(["evaluate", "--config", str(config), "--out", str(out)]) == 0


# ---- item 5: stale outputs -------------------------------------------------------------------

def test_train_overwrite_clears_the_old_run(trained, tmp_path):
    """Regression: 'train --overwrite' with other arms kept the old metrics.json, report.html,
    details.json and arm folders."""
    config, out = _copy(trained, tmp_path)
    assert main(["evaluate", "--config", str(config), "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file() and (out / "report.html").is_file()
    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace('name = "lidnet"', 'name = "roi_only"'))
    assert main(["train", "--config", str(other), "--out", str(out), "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["baseline", "roi_only", "run.json"]
    assert [a["name"] for a in json.loads((out / "run.json").read_text())["run"]["arms"]] == [
        "baseline", "roi_only"]


def test_train_resume_removes_the_evaluation_it_invalidates(trained, tmp_path):
    config, out = _copy(trained, tmp_path)
    assert main(["evaluate", "--config", str(config), "--out", str(out)]) == 0
    assert main(["train", "--config", str(config), "--out", str(out), "--resume"]) == 0
    assert not (out / "metrics.json").exists() and not (out / "report.html").exists()
    assert (out / "lidnet" / "latest.pt").is_file()


def test_a_rerun_of_the_demo_leaves_nothing_of_the_run_before(tmp_path):
    """Regression: an interrupted rerun of the demo left a new baseline beside an old lidnet
    and an old report."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TINY_DEMO]) == 0
    (out / "lidnet" / "stale-marker").write_text("from the run before")
    (out / "old_arm").mkdir()
    record = json.loads((out / "run.json").read_text())
    record["run"]["arms"].append({"name": "old_arm"})
    (out / "run.json").write_text(json.dumps(record))
    assert main(["demo", "--out", str(out), *TINY_DEMO]) == 0
    assert not (out / "lidnet" / "stale-marker").exists()
    assert not (out / "old_arm").exists()


# ---- item 6: run.json ------------------------------------------------------------------------

@pytest.mark.parametrize("content", ["", '{"run": {"data": ', "[1, 2]"],
                         ids=["empty", "truncated", "list"])
def test_a_damaged_run_json_is_named(trained, tmp_path, capsys, content):
    """Regression: an empty or truncated run.json blocked evaluate and resume with 'Expecting
    value: line 1 column 1' (and one holding a list gave a traceback)."""
    config, out = _copy(trained, tmp_path)
    (out / "run.json").write_text(content)
    assert main(["evaluate", "--config", str(config), "--out", str(out)]) == 2
    assert "run.json" in error_line(capsys)
    assert main(["train", "--config", str(config), "--out", str(out), "--resume"]) == 2
    assert "run.json" in error_line(capsys)
