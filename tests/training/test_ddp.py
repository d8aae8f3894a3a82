"""A real torchrun run: 2 processes, gloo on CPU, DDP on both models; rank 0 alone writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lidplug.training import load_checkpoint

SCRIPT = Path(__file__).with_name("ddp_train.py")


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(SCRIPT), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world"] for r in ranks} == {2}
    assert {r["step"] for r in ranks} == {6}
    # DDP kept the replicas identical through every phase.
    for name in ("denoiser", "detector"):
        assert ranks[0][name] == ranks[1][name], name
        assert ranks[0][name] != ranks[0][f"{name}_start"], f"{name} did not train"
    # One writer: one checkpoint (the last), one log with each step once.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "log.csv", "ranks.json"]
    state = load_checkpoint(tmp_path / "latest.pt")
    assert state["step"] == 6 and state["world"] == 2 and len(state["rng"]) == 2
    rows = [line.split(",") for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert sorted({int(r[0]) for r in rows}) == [1, 2, 3, 4, 5, 6]
    keys = [(r[0], r[2]) for r in rows]  # (step, term)
    assert len(keys) == len(set(keys)), "a step logged twice"
