"""A run's folder: its record (run.json) written atomically and read with the file named, and
the lock one command holds on it."""

import json
import resource
import signal

import pytest

from lidplug.pipeline import load_run
from lidplug.pipeline.folder import FolderBusy, locked, read_record, write_record
from lidplug.pipeline.run import _record


def test_a_failed_write_leaves_the_previous_run_json(tmp_path):
    """Regression: run.json was written in place; a write cut short (a full disk, a kill)
    left it empty or truncated, and every later evaluate or resume failed on it."""
    spec, _ = load_run()
    _record(tmp_path, spec, {"train": 1.0}, "train")
    before = (tmp_path / "run.json").read_text()
    # A file-size limit below run.json's size: every write past it fails (EFBIG), as a full
    # disk would (SIGXFSZ ignored, so the write raises instead of killing the process).
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        with pytest.raises(OSError):
            _record(tmp_path, spec, {"evaluate_test": 2.0}, "evaluate_test")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert (tmp_path / "run.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary left


def test_records_round_trip_and_bad_ones_are_named(tmp_path):
    path = tmp_path / "run.json"
    write_record(path, {"a": 1, "nan": float("nan")})
    assert read_record(path) == {"a": 1, "nan": None}  # never a bare NaN in JSON
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    for text in ("", "{", "[]", "3"):
        path.write_text(text)
        with pytest.raises(ValueError, match=r"run\.json"):
            read_record(path)


def test_the_lock_is_exclusive_reentrant_and_released(tmp_path):
    with locked(tmp_path, "train"):
        with locked(tmp_path, "evaluate"):  # the same process may nest (demo: train, evaluate)
            pass
        record = json.loads((tmp_path / ".lidplug.lock").read_text())
        assert record["command"] == "train" and isinstance(record["pid"], int)
    with locked(tmp_path, "evaluate"):
        pass


def test_a_lock_held_elsewhere_is_refused(tmp_path):
    import fcntl
    import os

    fd = os.open(tmp_path / ".lidplug.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"pid": 12345, "host": os.uname().nodename,
                                 "command": "demo"}).encode())
        with pytest.raises(FolderBusy, match=r"in use by lidplug demo \(pid 12345"), \
                locked(tmp_path, "train"):
            pass
    finally:
        os.close(fd)
