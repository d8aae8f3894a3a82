"""CollaborativeTrainer: phases, who learns, loss falls, checkpoints, exact resume, divergence."""

import csv

import pytest
import torch
from tiny_detectors import TinyDenoiser, faster_rcnn
from train_setup import phantoms, tiny_model

from lidplug import CollaborativeTrainer, TrainConfig, wrap
from lidplug.training import (
    TrainingDiverged,
    build_schedule,
    load_checkpoint,
    phase_at,
    save_checkpoint,
)
from lidplug.training import checkpoint as checkpoint_module


def _config(**overrides):
    base = dict(batch_size=2, lr_denoiser=1e-3, lr_detector=1e-3, progress=False, device="cpu")
    return TrainConfig(**{**base, **overrides})


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_schedule_per_mode():
    cfg = dict(detector_pretrain_steps=2, warmup_steps=1, rounds=2, denoiser_steps=3,
               detector_steps=2)
    assert build_schedule(TrainConfig(**cfg)) == [
        ("detector_pretrain", 2), ("warmup", 1), ("denoiser", 3), ("detector", 2),
        ("denoiser", 3), ("detector", 2)]
    assert build_schedule(TrainConfig(mode="frozen", **cfg)) == [
        ("detector_pretrain", 2), ("warmup", 1), ("denoiser", 3), ("denoiser", 3)]
    assert build_schedule(TrainConfig(mode="joint", **cfg)) == [
        ("detector_pretrain", 2), ("warmup", 1), ("joint", 3), ("joint", 3)]
    sched = build_schedule(TrainConfig(**cfg))
    assert [phase_at(sched, s) for s in (0, 2, 3, 6, 12)] == [
        "detector_pretrain", "warmup", "denoiser", "detector", "detector"]


def test_denoiser_phase_changes_the_denoiser_only():
    trainer = CollaborativeTrainer(tiny_model(), phantoms(), _config(mode="frozen", rounds=1,
                                                                      denoiser_steps=3))
    den, det = _params(trainer.model.denoiser), _params(trainer.model.detector)
    trainer.fit()
    assert not _same(den, _params(trainer.model.denoiser))
    assert _same(det, _params(trainer.model.detector))  # BatchNorm statistics included


def test_detector_phase_changes_the_detector_only():
    trainer = CollaborativeTrainer(tiny_model(), phantoms(), _config(
        rounds=1, denoiser_steps=1, detector_steps=2))
    trainer.fit(stop_at=1)
    den, det = _params(trainer.model.denoiser), _params(trainer.model.detector)
    trainer.fit()
    assert _same(den, _params(trainer.model.denoiser))
    assert not _same(det, _params(trainer.model.detector))


def test_joint_mode_changes_both():
    trainer = CollaborativeTrainer(tiny_model(), phantoms(), _config(mode="joint",
                                                                      denoiser_steps=2))
    den, det = _params(trainer.model.denoiser), _params(trainer.model.detector)
    trainer.fit()
    assert not _same(den, _params(trainer.model.denoiser))
    assert not _same(det, _params(trainer.model.detector))


@pytest.mark.slow
def test_losses_fall_on_a_toy_set():
    # Detector pretraining then alternating rounds on 16 phantoms: both objectives drop.
    cfg = _config(detector_pretrain_steps=12, warmup_steps=0, rounds=3, denoiser_steps=8,
                  detector_steps=4, lr_denoiser=2e-3, lr_detector=2e-3)
    trainer = CollaborativeTrainer(tiny_model(), phantoms(16), cfg)
    history = trainer.fit()
    pretrain = [h["loss"] for h in history[:12]]
    denoiser = [h["loss"] for h, (phase) in zip(history, _phases(trainer), strict=True)
                if phase == "denoiser"]
    assert sum(pretrain[-4:]) < sum(pretrain[:4])
    assert sum(denoiser[-4:]) < sum(denoiser[:4])


def _phases(trainer):
    return [phase_at(trainer.schedule, s) for s in range(trainer.total_steps)]


def test_checkpoint_holds_the_whole_state_and_loads_safely(tmp_path):
    cfg = _config(warmup_steps=1, rounds=1, denoiser_steps=1, detector_steps=1,
                  out_dir=str(tmp_path), scheduler="cosine")
    trainer = CollaborativeTrainer(tiny_model(), phantoms(), cfg)
    trainer.fit()
    state = load_checkpoint(tmp_path / "latest.pt")  # weights_only=True inside
    assert state["step"] == 3 and state["train_config"]["scheduler"] == "cosine"
    assert state["wrap_config"] == trainer.model.config.to_dict()
    assert set(state) >= {"denoiser", "detector", "optimizers", "schedulers", "scaler", "rng",
                          "epoch", "batch_in_epoch", "lidplug_version"}
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    terms = {(r["phase"], r["term"]) for r in rows}
    assert {("warmup", "pixel"), ("denoiser", "roi_perceptual"), ("denoiser", "detection"),
            ("detector", "detector/loss_objectness")} <= terms


def test_resume_equals_an_uninterrupted_run(tmp_path):
    cfg = dict(detector_pretrain_steps=2, warmup_steps=1, rounds=2, denoiser_steps=2,
               detector_steps=2, deterministic=True, checkpoint_every=100)
    straight = CollaborativeTrainer(tiny_model(), phantoms(6), _config(**cfg))
    straight.fit()

    first = CollaborativeTrainer(tiny_model(), phantoms(6), _config(**cfg, out_dir=str(tmp_path)))
    first.fit(stop_at=5)  # mid-epoch (3 batches per epoch) and mid-round
    del first
    second = CollaborativeTrainer(tiny_model(seed=99), phantoms(6),
                                  _config(**cfg, out_dir=str(tmp_path)), resume=True)
    assert second.step == 5
    second.fit()
    assert second.step == straight.step == 11
    for name in ("denoiser", "detector"):
        a, b = _params(getattr(straight.model, name)), _params(getattr(second.model, name))
        assert _same(a, b), name
    with open(tmp_path / "log.csv", newline="") as f:
        steps = sorted({int(r["step"]) for r in csv.DictReader(f)})
    assert steps == list(range(1, 12))


def test_killed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def dying_save(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(checkpoint_module.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


def test_loading_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"notes.pt: expected a lidplug checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected format 'lidplug-checkpoint-1', got None"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")


class _Exploding(TinyDenoiser):
    """Returns NaN from its 4th call on."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = super().forward(x)
        return out * float("nan") if self.calls >= 4 else out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = wrap(_Exploding(), faster_rcnn(), check=False)  # the probe would count as a call
    cfg = _config(mode="frozen", denoiser_steps=6, out_dir=str(tmp_path), checkpoint_every=2)
    trainer = CollaborativeTrainer(model, phantoms(), cfg)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step 3 \(denoiser phase\).*"
                                               r"the last good checkpoint is .*latest.pt"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "latest.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["denoiser"].values())
    assert all(torch.isfinite(p).all() for p in model.denoiser.parameters())  # not applied


def test_amp_bf16_runs():
    trainer = CollaborativeTrainer(tiny_model(), phantoms(), _config(
        amp="bf16", rounds=1, denoiser_steps=1, detector_steps=1))
    history = trainer.fit()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def test_bad_config_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="mode: expected one of"):
        TrainConfig(mode="sometimes")
    with pytest.raises(ValueError, match=r"batch_size: expected an int in \[1, 65536\], got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="amp: expected one of"):
        TrainConfig(amp="fp8")
    with pytest.raises(TypeError, match=r"model: expected the result of lidplug.wrap"):
        CollaborativeTrainer(TinyDenoiser(), phantoms())
    with pytest.raises(ValueError, match="dataset: expected at least batch_size x processes = 4"):
        CollaborativeTrainer(tiny_model(), phantoms(3), _config(batch_size=4)).fit()
    with pytest.raises(ValueError, match=r"resume=True: expected config.out_dir"):
        CollaborativeTrainer(tiny_model(), phantoms(), _config(), resume=True)


def test_tensorboard_events_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    trainer = CollaborativeTrainer(tiny_model(), phantoms(), _config(
        mode="frozen", denoiser_steps=2, out_dir=str(tmp_path), tensorboard=True))
    trainer.fit()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_history_covers_every_step_across_a_resume(tmp_path):
    cfg = _config(warmup_steps=2, rounds=1, denoiser_steps=2, detector_steps=1,
                  out_dir=str(tmp_path), checkpoint_every=1)
    first = CollaborativeTrainer(tiny_model(), phantoms(), cfg)
    first.fit(stop_at=3)
    second = CollaborativeTrainer(tiny_model(), phantoms(), cfg, resume=True)
    assert [h["step"] for h in second.history] == [1, 2, 3]  # kept from the checkpoint
    second.fit()
    assert [h["step"] for h in second.history] == [1, 2, 3, 4, 5]
    assert [h["phase"] for h in second.history] == ["warmup", "warmup", "denoiser", "denoiser",
                                                    "detector"]
    # Resuming a finished run changes nothing and loses nothing.
    third = CollaborativeTrainer(tiny_model(), phantoms(), cfg, resume=True)
    assert third.fit() == second.history


def test_stale_temporary_checkpoints_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    dead = int(done.stdout)  # a process that has exited: its file is garbage
    stale = tmp_path / f".latest.pt.{dead}.tmp"
    stale.write_bytes(b"half a checkpoint")
    unrelated = tmp_path / ".other.pt.1.tmp"
    unrelated.write_bytes(b"x")
    save_checkpoint({"step": 1}, tmp_path / "latest.pt")
    assert not stale.exists() and unrelated.exists()


def test_a_checkpoint_of_another_model_is_refused_on_resume(tmp_path):
    cfg = _config(warmup_steps=1, rounds=0, out_dir=str(tmp_path))
    CollaborativeTrainer(tiny_model(), phantoms(), cfg).fit()
    other = wrap(TinyDenoiser(channels=5), faster_rcnn())
    with pytest.raises(ValueError, match="does not fit"):
        CollaborativeTrainer(other, phantoms(), cfg, resume=True)


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    cfg = _config(warmup_steps=2, rounds=0, out_dir=str(tmp_path), checkpoint_every=1)
    trainer = CollaborativeTrainer(tiny_model(), phantoms(), cfg)
    trainer.fit(stop_at=1)

    def full(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    with pytest.raises(OSError, match="No space"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "latest.pt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_a_model_without_parameters_can_sit_out_its_phases():
    from torch import nn

    model = wrap(nn.Identity(), faster_rcnn())
    trainer = CollaborativeTrainer(model, phantoms(), _config(detector_pretrain_steps=1,
                                                              rounds=0))
    assert trainer.optimizers["denoiser"] is None
    trainer.fit()
    with pytest.raises(ValueError, match="no parameters"):
        CollaborativeTrainer(wrap(nn.Identity(), faster_rcnn()), phantoms(),
                             _config(warmup_steps=1, rounds=0))


def test_workers_are_bounded_and_capped_at_the_cpus(monkeypatch):
    """Regression: num_workers = 100000 was accepted: 669 worker processes, memory gone."""
    from lidplug.training.trainer import loader_workers

    with pytest.raises(ValueError, match="num_workers"):
        TrainConfig(num_workers=100_000)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert loader_workers(TrainConfig(num_workers=64)) == 2
    assert loader_workers(TrainConfig(num_workers=1)) == 1
