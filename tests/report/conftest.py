"""The tiny run of ``tests/pipeline/tiny.toml`` through the pipeline, once per session.

Two evaluations of the same trained arms: 24 test slices (enough lesions for the model
observer) and the file's own 6 (the model observer "not computed"). Each writes its
``report.html`` through ``lidplug.pipeline.evaluate``, as ``lidplug evaluate`` does.
"""

from pathlib import Path

import pytest

from lidplug.pipeline import evaluate, held_out, load_run, train

TINY = Path(__file__).resolve().parents[1] / "pipeline" / "tiny.toml"


class TinyRun:
    """One evaluated tiny run: its spec, arms, evaluation, held-out slices and page."""

    def __init__(self, out: Path, test_slices: int | None, arms=None) -> None:
        overrides = [] if test_slices is None else ["--data.test", str(test_slices)]
        self.spec, folder = load_run(TINY, overrides)
        self.out = out
        self.arms = arms or train(self.spec, out, folder, progress=False)
        self.evaluation = evaluate(self.spec, out, folder, arms=self.arms, progress=False)
        self.held = held_out(self.spec, "test", folder)
        self.page = out / "report.html"
        self.html = self.page.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """24 test slices: the model observer is computed."""
    return TinyRun(tmp_path_factory.mktemp("tiny-run"), 24)


@pytest.fixture(scope="session")
def tiny_run_few(tmp_path_factory, tiny_run) -> TinyRun:
    """The same arms on 6 test slices: too few lesions for the model observer."""
    return TinyRun(tmp_path_factory.mktemp("tiny-run-few"), None, arms=tiny_run.arms)
