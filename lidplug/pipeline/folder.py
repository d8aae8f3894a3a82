"""A run's output folder: its record, who made it, one command at a time, and what a new run
replaces.

* **The record** (``run.json``): :func:`write_record` writes JSON atomically (a temporary file
  beside it, flushed, then renamed over it), so a full disk or a kill leaves the previous record,
  never a truncated one; NaN and infinities are written as ``null`` (bare ``NaN`` is not JSON).
  :func:`read_record` names the file in every error.
* **Who made it**: the command that made a folder is recorded (``made_by``); another command
  does not reuse it, nor a non-empty folder lidplug did not make, without ``--overwrite``
  (:func:`claim`). An output never replaces an input, even with ``--overwrite``
  (:func:`check_inputs`).
* **One command at a time** (:func:`locked`): ``.lidplug.lock`` in the folder, held with
  ``flock`` while a command runs and holding its pid, host and command for the message that
  refuses a second one. The kernel releases the lock when its process ends, however it ends, so
  a lock file left by a killed process is stale and taken over; where ``flock`` is not available
  the pid decides (a dead process on this host holds nothing).
* **What a new run replaces** (:func:`clear_outputs`): the files a run rewrites are removed
  before it starts, so no report, metrics file or arm folder of an earlier run stays beside the
  new ones.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["LOCK_FILE", "RUN_FILE", "FolderBusy", "check_inputs", "claim", "clear_outputs",
           "evaluation_files", "locked", "read_record", "write_json", "write_record"]

RUN_FILE = "run.json"
LOCK_FILE = ".lidplug.lock"
#: Where a run's pretraining runs go (kept by :func:`clear_outputs`: reused while their
#: description is unchanged, which they check themselves).
PRETRAINED_DIR = "pretrained"
# The files an evaluation writes into the run's folder (a split's own files included).
_EVALUATION_PREFIXES = ("metrics", "details", "report")
_EVALUATION_SUFFIXES = (".json", ".html")


class FolderBusy(ValueError):
    """Another command holds the folder's lock."""


# ---- JSON, atomically ---------------------------------------------------------------------

def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 1) -> Path:
    """Write ``value`` as JSON to ``path`` atomically (NaN and infinities as ``null``)."""
    path = Path(path)
    text = json.dumps(_finite(value), indent=indent, default=str, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_record(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write a run's record (``run.json``) atomically."""
    return write_json(path, dict(record))


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """A run's record (``run.json``) as a dict; ``{}`` when there is none.

    Raises:
        ValueError: the file is not a JSON object (empty, truncated, a list...), naming it.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: expected the run's record (a JSON object written by lidplug), "
                         f"got unreadable JSON ({err}); remove the file, or start the run again "
                         "with --overwrite") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected the run's record (a JSON object written by lidplug), "
                         f"got a {type(record).__name__}; remove the file, or start the run "
                         "again with --overwrite")
    return record


# ---- who made the folder ------------------------------------------------------------------

def _maker(record: Mapping[str, Any]) -> str | None:
    # Folders of lidplug versions before 'made_by' was recorded: a trained one counts as train's.
    if "made_by" in record:
        return str(record["made_by"])
    return "train" if "train" in record.get("stages", []) else None


def claim(out: Path, command: str, *, overwrite: bool) -> None:
    """Make ``out`` the folder of ``command``: refuse, without ``overwrite``, a folder another
    command made or a non-empty one lidplug did not make; record ``made_by`` in its run.json.

    Raises:
        ValueError: naming the folder, who made it and the flag that allows it.
    """
    out = Path(out)
    record = read_record(out / RUN_FILE)
    maker = _maker(record)
    if not overwrite and maker != command:
        if maker is not None:
            who = (f"'lidplug {maker}'" if "made_by" in record else
                   "an earlier lidplug that did not record the command (a trained run)")
            raise ValueError(f"{out}: expected a new folder or one 'lidplug {command}' made, got "
                             f"one made by {who} (pass --overwrite to replace its run, or "
                             "choose another --out)")
        if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
            raise ValueError(f"{out}: expected a new or empty folder, got one that holds files "
                             "lidplug did not write (pass --overwrite to write into it, or "
                             "choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    if record.get("made_by") != command:
        write_record(out / RUN_FILE, {**record, "made_by": command})


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def evaluation_files(out: Path) -> list[Path]:
    """The files evaluations wrote into ``out`` (every split's metrics, details and report)."""
    if not Path(out).is_dir():
        return []
    return sorted(p for p in Path(out).iterdir() if p.is_file()
                  and p.name.startswith(_EVALUATION_PREFIXES)
                  and p.suffix in _EVALUATION_SUFFIXES)


def _written_by(out: Path, arms: Iterable[str], path: Path, *, training: bool) -> bool:
    """Whether a run into ``out`` (training it, or only evaluating) may write ``path``."""
    out = out.resolve()
    if path.parent == out and (path.name == RUN_FILE or (
            path.name.startswith(_EVALUATION_PREFIXES) and path.suffix in _EVALUATION_SUFFIXES)):
        return True
    return training and any(_inside(path, out / name) for name in (*arms, PRETRAINED_DIR))


def check_inputs(inputs: Mapping[str, Path | None], *, out: Path | None = None,
                 arms: Iterable[str] = (), training: bool = True,
                 output: Path | None = None) -> None:
    """Refuse a run whose outputs would replace one of its ``inputs`` (name -> file), even with
    ``--overwrite``: a file the run writes into ``out`` (its record, evaluations and, when
    ``training``, the arms' and pretraining folders), or the single ``output`` file.

    Raises:
        ValueError: naming the input and the output it would become.
    """
    arms = list(arms)
    for name, path in inputs.items():
        if path is None:
            continue
        p = Path(path).resolve()
        if output is not None and p == Path(output).resolve():
            raise ValueError(f"{output}: is an input ({name}); expected an output path that is "
                             "none of the inputs (refusing to replace it, even with --overwrite)")
        if out is not None and _written_by(Path(out), arms, p, training=training):
            raise ValueError(f"{path}: is an input ({name}) that this run would write over in "
                             f"{out}; expected inputs outside the files the run writes (copy it "
                             "elsewhere, or choose another --out)")


def clear_outputs(out: Path, arms: Iterable[str], *, checkpoints: bool) -> list[Path]:
    """Remove what a new run into ``out`` rewrites, so nothing of an earlier run stays beside it.

    Always the evaluations' files (they describe checkpoints about to change); with
    ``checkpoints`` also the record's run (``run``, timings, stages: ``made_by`` is kept) and
    the folder of every arm of ``arms`` and of the run recorded before. ``pretrained/`` stays.

    Returns:
        What was removed.
    """
    out = Path(out)
    removed = evaluation_files(out)
    if checkpoints:
        record = read_record(out / RUN_FILE)
        before = [a.get("name") for a in record.get("run", {}).get("arms", [])
                  if isinstance(a, Mapping)]
        for name in dict.fromkeys([*arms, *before]):
            # Arm names are identifiers (checked when a run is read): never a path elsewhere.
            if isinstance(name, str) and name.isidentifier() and (out / name).is_dir():
                removed.append(out / name)
        if record:
            kept = {k: record[k] for k in ("made_by",) if k in record}
            write_record(out / RUN_FILE, kept)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return removed


# ---- one command at a time ----------------------------------------------------------------

_HELD: dict[Path, int] = {}  # folders this process holds -> nesting depth


def _owner(path: Path) -> dict[str, Any]:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _alive(owner: Mapping[str, Any]) -> bool:
    """Whether the process an unlocked lock file names may still run (pid check, this host)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: cannot be checked from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: flock unavailable here."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. a file system without locks
        return None
    return True


@contextlib.contextmanager
def locked(folder: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs (created with the folder if missing).

    Nested use by the same process is allowed (a demo trains, then evaluates). The lock file
    stays after release (removing it would let two processes lock two files of one name).

    Raises:
        FolderBusy: another live process holds it; the message names its command and pid.
    """
    folder = Path(folder)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        got = _flock(fd)
        owner = _owner(path)
        if got is False or (got is None and _alive(owner)):
            since = owner.get("since", "?")
            raise FolderBusy(f"{folder}: in use by lidplug {owner.get('command', '?')} (pid "
                             f"{owner.get('pid', '?')} on {owner.get('host', '?')}, since "
                             f"{since}); expected one command at a time on a run folder: wait "
                             f"for it to end (if no such process runs, remove {path})")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": command,
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            os.ftruncate(fd, 0)  # released: no pid left to mistake for a live owner
            _leave_no_trace(folder, path, made)
    finally:
        os.close(fd)  # closing releases the flock


def _leave_no_trace(folder: Path, lock: Path, made: bool) -> None:
    """A command that wrote nothing (refused, or failed before its first output) leaves the
    folder as it found it: no lock file and no record holding only who claimed it, where the
    folder holds nothing else; and no folder it created just for them."""
    try:
        others = [p for p in folder.iterdir() if p.name not in (LOCK_FILE, RUN_FILE)]
        record = read_record(folder / RUN_FILE)
    except (OSError, ValueError):  # a damaged record is the user's to see
        return
    if record and (others or set(record) - {"made_by"}):
        return  # a run's folder (its outputs, or who made them): the lock file stays
    if record:
        (folder / RUN_FILE).unlink(missing_ok=True)
    lock.unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):
            folder.rmdir()
