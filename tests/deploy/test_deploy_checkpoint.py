"""Denoiser weights from checkpoints, read with weights_only=True."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from deploy_models import ScriptableDenoiser, WrappedModel

from lidplug.deploy import export, load, load_weights


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(),
                                                   strict=True))


@pytest.mark.parametrize("layout", ["plain", "trainer", "wrapped", "ddp"])
def test_load_weights_layouts(tmp_path, layout):
    trained = ScriptableDenoiser()
    state = {
        "plain": trained.state_dict(),
        "trainer": {"denoiser": trained.state_dict(), "step": 7, "optimizer": {"lr": 0.1}},
        "wrapped": WrappedModel(trained).state_dict(),
        "ddp": {f"module.{k}": v for k, v in trained.state_dict().items()},
    }[layout]
    torch.save(state, tmp_path / "ckpt.pt")
    fresh = ScriptableDenoiser()
    assert not _same_weights(fresh, trained)
    assert load_weights(fresh, tmp_path / "ckpt.pt") is fresh
    assert _same_weights(fresh, trained)


def test_export_from_a_checkpoint(tmp_path):
    trained = ScriptableDenoiser().eval()
    torch.save({"denoiser": trained.state_dict()}, tmp_path / "ckpt.pt")
    export(ScriptableDenoiser(), tmp_path / "d.pt", checkpoint=tmp_path / "ckpt.pt")
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "d.pt")(x), trained(x), atol=1e-5, rtol=1e-5)


@dataclasses.dataclass
class _Pickled:  # a Python object: weights_only=True must refuse to unpickle it
    value: int = 1


def test_checkpoint_with_python_objects_is_refused(tmp_path):
    torch.save({"denoiser": ScriptableDenoiser().state_dict(), "extra": _Pickled()},
               tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"weights_only=True. refuses to unpickle"):
        load_weights(ScriptableDenoiser(), tmp_path / "ckpt.pt")
