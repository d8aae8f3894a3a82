"""The pipeline's entry points: one run description, the same stages for every command.

* :func:`train`: the starting models, then every arm (``lidplug train``).
* :func:`evaluate`: the arms of a trained run, scored by the protocol of
  :mod:`lidplug.pipeline.evaluate`; writes ``metrics.json`` and ``report.html``
  (``lidplug evaluate``).
* :func:`run`: both (``lidplug demo`` runs the shipped ``runs/demo.toml``).
* :func:`retrain_pretrained`: regenerates the shipped models a run starts from, with their own
  run files (``lidplug demo --from-scratch``); :func:`resolve_model_runs` trains the models a
  run names as ``run = FILE`` (on the run's own data) before it starts.

Output folder of a run::

    run.json            the resolved description, stage timings, versions, and the training's
                        notes per arm (a degenerate feedback term, lidplug.balance)
    pretrained/<name>/  models the run trained first (``run = FILE`` models, --from-scratch)
    <arm>/latest.pt     checkpoint (both models, the step history); log.csv, history.json
    <arm>/denoiser.pt   the arm's denoiser alone, TorchScript (lidplug.load / torch.jit.load)
    metrics.json        one object per image set and per paired difference (see evaluate)
    report.html         the page a person reads
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from lidplug.pipeline.build import build_model
from lidplug.pipeline.data import held_out, make_split
from lidplug.pipeline.evaluate import Evaluation
from lidplug.pipeline.evaluate import evaluate as score
from lidplug.pipeline.folder import PRETRAINED_DIR, RUN_FILE, read_record, write_record
from lidplug.pipeline.preflight import check_before_training
from lidplug.pipeline.resolve import resolve_path
from lidplug.pipeline.runfile import dump_run, load_run
from lidplug.pipeline.spec import DenoiserSpec, ModelSpec, RunSpec
from lidplug.pipeline.train import (
    ArmResult,
    checkpoint_of,
    starting_models,
    train_arm,
    wrap_options,
)
from lidplug.training import load_checkpoint
from lidplug.training.distributed import resolve_device
from lidplug.version import __version__
from lidplug.wrapper import wrap

__all__ = ["PRETRAINED_DIR", "check_resume", "comparator", "evaluate", "observer_names",
           "resolve_model_runs", "retrain_pretrained", "run", "train"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"lidplug: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _threads(spec: RunSpec) -> Iterator[None]:
    before = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def comparator(spec: RunSpec) -> str | None:
    """The plain arm differences are taken against: the first arm without feedback."""
    return next((a.name for a in spec.arms if not a.feedback), None)


def observer_names(spec: RunSpec) -> list[str]:
    """Unique display names of the observers (the shipped name, else the class name)."""
    names = []
    for i, obs in enumerate(spec.evaluate.observer_specs()):
        name = obs.describe()
        names.append(name if name not in names else f"{name}-{i}")
    return names


def _record(out: Path, spec: RunSpec, timings: dict[str, float], stage: str | None,
            notes: dict[str, list[str]] | None = None) -> None:
    """Record the run's description, versions and timings in ``out/run.json``; ``stage`` (when
    given) is added to the stages done, ``notes`` (a training's) replace earlier ones."""
    path = out / RUN_FILE
    record = read_record(path)
    if notes is not None:
        record["notes"] = notes
    record.update({"run": dump_run(spec),
                   "versions": {"lidplug": __version__, "torch": torch.__version__,
                                "python": platform.python_version()},
                   "threads": torch.get_num_threads()})
    record.setdefault("timings_s", {}).update(timings)
    record.setdefault("stages", [])
    if stage is not None and stage not in record["stages"]:
        record["stages"].append(stage)
    write_record(path, record)  # atomically: a cut write leaves the previous record


def train(spec: RunSpec, out: str | Path, folder: Path | None = None, *, resume: bool = False,
          progress: bool = True, pretrained: str | Path | None = None
          ) -> dict[str, ArmResult]:
    """Train every arm of ``spec`` into ``out`` (see the module docstring).

    Args:
        spec: the run.
        out: output folder (created).
        folder: the run file's folder (relative paths in the run resolve against it).
        resume: continue each arm from its checkpoint when there is one; the run must be the
            one ``out/run.json`` records (:func:`check_resume`).
        progress: progress bars and stage messages on stderr.
        pretrained: where ``run = FILE`` models are trained and found (default
            ``out/pretrained``; several runs on the same data may share one).

    Returns:
        Arm name -> :class:`~lidplug.pipeline.train.ArmResult`.

    Raises:
        ValueError: a bad run (named), or ``resume`` with a run that changed what the steps
            done so far trained on.
    """
    out = Path(out)
    spec.train.device = str(resolve_device(spec.train.device))
    with _threads(spec):
        timings: dict[str, float] = {}
        t = time.perf_counter()
        resolve_model_runs(spec, folder, pretrained or out / PRETRAINED_DIR, progress=progress)
        if resume:
            check_resume(out, spec)
        timings["pretrain"] = time.perf_counter() - t
        t = time.perf_counter()
        # Everything that can fail on a bad run file fails here, before any training.
        train_set = make_split(spec, "train", folder)
        denoiser, detector = starting_models(spec, folder)
        for i, obs in enumerate(spec.evaluate.observer_specs()):  # scored with after training
            build_model(obs, "detector", folder, where=f"evaluate.observers[{i}]")
        check_before_training(spec, denoiser, detector, train_set)
        out.mkdir(parents=True, exist_ok=True)
        # The description first: a run interrupted in its first arm can be resumed (and checked).
        _record(out, spec, {}, None)
        _say(progress, f"{len(train_set)} training slices; arms {[a.name for a in spec.arms]}")
        timings["prepare"] = time.perf_counter() - t
        results = {}
        for arm in spec.arms:
            _say(progress, f"training arm {arm.name!r}")
            results[arm.name] = train_arm(spec, arm, denoiser, detector, train_set, out,
                                          resume=resume, progress=progress)
            timings[f"train_{arm.name}"] = results[arm.name].seconds
            for note in results[arm.name].notes:
                _say(True, f"arm {arm.name!r}: {note}")
        _record(out, spec, timings, "train",
                notes={name: r.notes for name, r in results.items() if r.notes})
    return results


def _load_arm(spec: RunSpec, out: Path, name: str, folder: Path | None) -> ArmResult:
    path = checkpoint_of(out, name)
    if not path.is_file():
        raise ValueError(f"{out}: expected the checkpoint of arm {name!r} at {path} (run "
                         "'lidplug train' with this run file first), got nothing there")
    state = load_checkpoint(path)
    denoiser, detector = starting_models(spec, folder, weights=False)
    for role, model in (("denoiser", denoiser), ("detector", detector)):
        # Before wrap tries the denoiser: a NaN weight is named here, not as a NaN output.
        _refuse_nonfinite(f"arm {name!r}", role, state.get(role, {}))
        try:
            model.load_state_dict(state[role])
        except (RuntimeError, KeyError) as err:
            raise ValueError(f"{path}: its {role} does not fit the run file's [{role}] model "
                             f"({' '.join(str(err).split())[:300]}); expected the run file "
                             "the checkpoint was trained with") from None
    model = wrap(denoiser, detector, **wrap_options(spec, spec.arm(name)))
    # The training's wall time and notes, when 'lidplug train' recorded them.
    done = read_record(out / RUN_FILE)
    timings = done.get("timings_s", {})
    return ArmResult(name, model, list(state.get("history", [])),
                     float(timings.get(f"train_{name}", 0.0)), path.parent,
                     list(done.get("notes", {}).get(name, [])))


def evaluate(spec: RunSpec, out: str | Path, folder: Path | None = None, *,
             arms: dict[str, ArmResult] | None = None, split: str = "test",
             progress: bool = True, report: bool = True,
             pretrained: str | Path | None = None) -> Evaluation:
    """Score the arms of a run in ``out`` and write ``metrics.json`` (and ``report.html``).

    With ``evaluate.real_lesions`` the split's own annotated lesions are scored too, apart
    (``metrics-real-lesions.json`` and a section of the report).

    Args:
        spec: the run.
        out: the run's output folder (arms are read from their checkpoints there unless given).
        folder: the run file's folder.
        arms: already trained arms (skips reading checkpoints).
        split: ``"test"``, or ``"validation"`` for choices made while developing a run.
        progress: progress bars and stage messages.
        report: also write ``report.html``.
        pretrained: where ``run = FILE`` models are found (default ``out/pretrained``).

    Returns:
        The :class:`~lidplug.pipeline.evaluate.Evaluation` (of the inserted or phantom
        lesions; the real lesions' is written, not returned).
    """
    from lidplug.pipeline.outputs import write_outputs

    out = Path(out)
    device = resolve_device(spec.train.device)
    with _threads(spec):
        t = time.perf_counter()
        resolve_model_runs(spec, folder, pretrained or out / PRETRAINED_DIR, progress=progress)
        if arms is None:
            arms = {a.name: _load_arm(spec, out, a.name, folder) for a in spec.arms}
        observers = {name: build_model(obs, "detector", folder, where=f"evaluate.observers[{i}]")
                     for i, (name, obs) in enumerate(zip(observer_names(spec),
                                                         spec.evaluate.observer_specs(),
                                                         strict=True))}
        cotrained = {a.name: arms[a.name].model.detector for a in spec.arms
                     if a.feedback and spec.arm_train(a).mode != "frozen"}
        _check_finite(arms, cotrained, observers)
        _say(progress, f"evaluating on the {split} slices")
        stages: dict[str, float] = {}
        begun = time.perf_counter()
        held = held_out(spec, split, folder, progress=progress)
        stages["held_out"] = time.perf_counter() - begun
        denoisers = {n: r.model.denoiser for n, r in arms.items()}
        evaluation = score(spec, held, denoisers, observers, cotrained=cotrained,
                           comparator=comparator(spec), device=device, progress=progress)
        stages.update(evaluation.timings)
        real = None
        if spec.evaluate.real_lesions:
            _say(progress, f"evaluating on the real lesions of the {split} patients")
            begun = time.perf_counter()
            held_real = held_out(spec, split, folder, lesions="real", progress=progress)
            real = (score(spec, held_real, denoisers, observers, cotrained=cotrained,
                          comparator=comparator(spec), device=device, progress=progress),
                    held_real)
            stages["real_lesions"] = time.perf_counter() - begun
        # Where the evaluation's time goes, stage by stage (the outputs' is added below).
        timings = {f"evaluate_{split}": time.perf_counter() - t,
                   **{f"evaluate_{split}/{k}": round(v, 3) for k, v in stages.items()}}
        out.mkdir(parents=True, exist_ok=True)
        _record(out, spec, timings, f"evaluate_{split}")
        begun = time.perf_counter()
        write_outputs(spec, out, evaluation, held, arms, report=report, real=real)
        _record(out, spec, {f"evaluate_{split}/outputs": round(time.perf_counter() - begun, 3)},
                None)
    return evaluation


def _check_finite(arms: dict[str, ArmResult], cotrained: dict, observers: dict) -> None:
    """Refuse to score models holding NaN or inf (they would score as models: a NaN detector
    finds nothing, a CPM of 0): each arm's denoiser, the detectors arms trained, the
    observers."""
    models = [(f"arm {name!r}", "denoiser", r.model.denoiser) for name, r in arms.items()]
    models += [(f"arm {name!r}", "detector", det) for name, det in cotrained.items()]
    models += [(f"observer {name!r}", "detector", obs) for name, obs in observers.items()]
    for who, role, model in models:
        _refuse_nonfinite(who, role, model.state_dict())


def _refuse_nonfinite(who: str, role: str, state: dict) -> None:
    from lidplug.training.checkpoint import nonfinite_entries

    if bad := nonfinite_entries(state):
        raise ValueError(f"{who}: expected a {role} with finite weights, got {bad[:3]} "
                         "holding NaN or inf (a diverged training or a damaged file)")


def run(spec: RunSpec, out: str | Path, folder: Path | None = None, *, progress: bool = True
        ) -> tuple[dict[str, ArmResult], Evaluation]:
    """:func:`train`, then :func:`evaluate` on the test slices."""
    arms = train(spec, out, folder, progress=progress)
    return arms, evaluate(spec, out, folder, arms=arms, progress=progress)


def _flat(description: dict, arms: set[str]) -> dict[str, object]:
    """``{"simulation.dose": 0.1, "arms[lidnet].wrap.roi_fraction": 0.5, ...}`` (only the arms
    named in ``arms``)."""
    out: dict[str, object] = {}

    def walk(node, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif key == "arms" and isinstance(node, list):
            for arm in node:
                if isinstance(arm, dict) and arm.get("name") in arms:
                    walk({k: v for k, v in arm.items() if k != "name"}, f"arms[{arm['name']}]")
        else:
            out[key] = node

    walk(description, "")
    return out


#: What a resumed run may change: more rounds extend the schedule, and the held-out counts and
#: the evaluation do not touch training; anything else alters what the steps done so far (or
#: the rest of the schedule) train on. Arms added or left out are not changes of an arm.
_RESUMABLE = re.compile(r"(arms\[[^]]*\]\.)?train\.rounds|data\.(validation|test)|evaluate(\..*)?")


def check_resume(out: str | Path, spec: RunSpec) -> None:
    """Refuse to resume the run in ``out`` as ``spec`` when ``spec`` changes what it trains.

    Compared with the description ``out/run.json`` records (written when training starts):
    settings of where and how visibly it trains (device, threads, progress, ...), ``rounds``
    and the evaluation may change; data, simulation, models, ``[wrap]``, the rest of
    ``[train]`` and an arm's overrides may not.

    Raises:
        ValueError: naming each changed key with its recorded and new value.
    """
    out = Path(out)
    recorded = read_record(out / RUN_FILE).get("run")
    if not isinstance(recorded, dict):
        if any(checkpoint_of(out, a.name).is_file() for a in spec.arms):
            raise ValueError(f"{out / RUN_FILE}: expected the description of the run whose "
                             "checkpoints --resume continues, got none; start again with "
                             "--overwrite")
        return
    now = dump_run(spec)
    arms = ({a.get("name") for a in recorded.get("arms", []) if isinstance(a, dict)}
            & {a.name for a in spec.arms})
    before, after = (_flat(_what_trains(d), arms) for d in (recorded, now))
    changed = sorted(k for k in before.keys() | after.keys()
                     if before.get(k) != after.get(k) and not _RESUMABLE.fullmatch(k))
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed[:6])
        raise ValueError(f"{out}: --resume continues the run recorded in {RUN_FILE}, expected "
                         f"the same run, got changes to what it trains ({shown}"
                         f"{'; ...' if len(changed) > 6 else ''}); undo them, or start again "
                         "with --overwrite (or another --out)")


# Settings that change where or how visibly a run trains, not what it learns.
_NOT_WHAT = {"threads": None, "train": ("device", "progress", "out_dir", "checkpoint_every",
                                        "log_every", "tensorboard", "num_workers")}


def _what_trains(description: dict) -> dict:
    """A run description without the settings that leave the trained model as it is."""
    out = json.loads(json.dumps(description, default=str))
    out.pop("threads", None)
    for key in _NOT_WHAT["train"]:
        out.get("train", {}).pop(key, None)
    return out


def _same_training(wanted, recorded) -> bool:
    """Whether two run descriptions train the same model. A key the recorded one lacks counts
    as the same when the wanted value is a neutral default (None, False, empty): an option a
    later lidplug added does not invalidate what an earlier one trained."""
    if isinstance(wanted, dict) and isinstance(recorded, dict):
        return all(_same_training(v, recorded[k]) if k in recorded
                   else v in (None, False, {}, [], "") for k, v in wanted.items()) and all(
            k in wanted for k in recorded)
    return wanted == recorded


def _trained_spec(sub: RunSpec, sub_folder: Path | None, role: str, target: Path,
                  progress: bool) -> ModelSpec:
    """Train ``sub`` into ``target`` unless a finished run of the same description is there;
    the model of ``role`` it trains, as a spec reading the checkpoint."""
    from lidplug.zoo import pretrained_info, sha256_of

    record = target / RUN_FILE
    wanted = _what_trains(dump_run(sub))
    done = read_record(record)
    if done and not _same_training(wanted, _what_trains(done.get("run", {}))):
        raise ValueError(f"{target}: holds a pretraining run of another description; "
                             "remove the folder or choose another pretrained folder")
    arm = sub.arms[0].name
    checkpoint = checkpoint_of(target, arm)
    finished = "train" in done.get("stages", [])
    if not (finished and checkpoint.is_file()):
        _say(progress, f"pretraining {target.name!r} ({role}) into {target}")
        train(sub, target, sub_folder, resume=checkpoint.is_file(), progress=progress)
    model = sub.model_spec(role)
    if model.pretrained is not None:
        info = pretrained_info(model.pretrained)
        table = {"class_path": info["class_path"], "init_args": dict(info["init_args"])}
    else:
        table = model.model
    # The checkpoint holds the model as the sub-run trained it: adapted the same way.
    adaptation = model.adaptation() if isinstance(model, DenoiserSpec) else {}
    return type(model)(model=table, weights=str(checkpoint.resolve()),
                       sha256=sha256_of(checkpoint), name=model.name or target.name,
                       **adaptation)


def resolve_model_runs(spec: RunSpec, folder: Path | None, pretrained: str | Path, *,
                       progress: bool = True) -> RunSpec:
    """Replace every model given as ``run = FILE`` (:class:`~lidplug.pipeline.ModelSpec`) by
    the model that run trains, training it first where ``pretrained/<stem>/`` does not hold it.

    The sub-run trains on this run's data: ``[data]`` (root resolved) and ``[simulation]``
    replace its own, except its ``data.seed`` and ``data.train``; threads and device are this
    run's. Returns ``spec`` changed in place.
    """
    def resolved(model: ModelSpec, role: str, where: str) -> ModelSpec:
        if model.run is None:
            return model
        sub, sub_folder = load_run(resolve_path(model.run, folder))
        root = spec.data.root if spec.data.root is None else str(
            resolve_path(spec.data.root, folder).resolve())
        sub.data = dataclasses.replace(spec.data, root=root, seed=sub.data.seed,
                                       train=sub.data.train)
        sub.simulation = spec.simulation
        sub.threads, sub.train.device = spec.threads, spec.train.device
        if len(sub.arms) != 1:
            raise ValueError(f"{where}.run: expected a run file with one arm (the model it "
                             f"trains), got {[a.name for a in sub.arms]} in {model.run}")
        target = Path(pretrained) / Path(model.run).stem
        trained = _trained_spec(sub, sub_folder, role, target, progress)
        return dataclasses.replace(trained, name=model.name or trained.name)

    spec.denoiser = resolved(spec.denoiser, "denoiser", "denoiser")
    spec.detector = resolved(spec.detector, "detector", "detector")
    spec.evaluate.observers = [resolved(o, "detector", f"evaluate.observers[{i}]")
                               for i, o in enumerate(spec.evaluate.observers)]
    return spec


def retrain_pretrained(spec: RunSpec, out: str | Path, *, progress: bool = True) -> RunSpec:
    """Retrain every shipped model ``spec`` starts from or scores with, from its own run file.

    Each model ``NAME`` is trained into ``out/pretrained/NAME/`` and ``spec`` is changed to
    read it from there (in place; also returned).
    """
    from lidplug.zoo import pretrained_info

    def retrained(model: ModelSpec, role: str) -> ModelSpec:
        if model.pretrained is None:
            return model
        info = pretrained_info(model.pretrained)
        sub, sub_folder = load_run(info["run"])
        sub.threads = spec.threads
        sub.train.device = spec.train.device
        target = Path(out) / PRETRAINED_DIR / model.pretrained
        return dataclasses.replace(_trained_spec(sub, sub_folder, role, target, progress),
                                   name=model.describe())

    spec.denoiser = retrained(spec.model_spec("denoiser"), "denoiser")
    spec.detector = retrained(spec.model_spec("detector"), "detector")
    spec.evaluate.observers = [retrained(o, "detector") for o in spec.evaluate.observer_specs()]
    return spec
