"""Shared by the CLI and pipeline tests (a plain module: ``tests/`` is on ``sys.path`` under
pytest)."""

import json
import shutil
from pathlib import Path

TINY = Path(__file__).parent / "pipeline" / "tiny.toml"


def train_tiny(tmp_path_factory):
    """A finished tiny run, trained by the CLI: (its run file, its output folder)."""
    from lidplug.cli import main

    root = tmp_path_factory.mktemp("run")
    config = root / "tiny.toml"
    shutil.copyfile(TINY, config)
    assert main(["train", "--config", str(config), "--out", str(root / "out")]) == 0
    return config, root / "out"


def error_line(capsys) -> str:
    """The one ``lidplug: error: ...`` line a user error prints on stderr, and no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lidplug: error: "), err
    assert "Traceback" not in err
    return lines[0]


def strict_json(path):
    """``path`` parsed as JSON proper: a bare NaN or Infinity fails (as in JSON.parse)."""
    def refuse(constant):
        raise AssertionError(f"{path.name}: bare {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _intervals(node, where=""):
    """Every ``{mean, low, high}`` of a metrics object, with its path."""
    if isinstance(node, dict):
        if {"mean", "low", "high"} <= set(node):
            yield where, node
        for key, value in node.items():
            yield from _intervals(value, f"{where}/{key}")


def check_metrics_file(path, split):
    """What every metrics file lidplug writes holds: strict JSON, its split named, and every
    interval containing its estimate (or all three null with a note)."""
    metrics = strict_json(path)
    assert metrics["protocol"]["split"] == split
    for where, v in _intervals(metrics):
        if v["mean"] is None or v["low"] is None:
            assert v.get("note") == "not measurable", (where, v)
        else:
            assert v["low"] - 1e-9 <= v["mean"] <= v["high"] + 1e-9, (path.name, where, v)
    return metrics
