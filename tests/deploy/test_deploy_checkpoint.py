"""Denoiser weights from checkpoints, read with weights_only=True."""

from __future__ import annotations

import dataclasses
import pickle
import zipfile

import pytest
import torch
from deploy_models import ScriptableDenoiser, WrappedModel

from lidplug.deploy import export, load, load_weights, read_checkpoint


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


class _Counter:  # a plain class: a pickle of it would run its module's code to rebuild it
    def __reduce__(self):
        return (_Counter, ())


@pytest.fixture(scope="module")
def wrong_files(tmp_path_factory):
    """Files people pass as a checkpoint, each with what the error must say it is."""
    root = tmp_path_factory.mktemp("wrong")
    files = {}

    def add(name, match):
        files[name] = (root / name, match)
        return root / name

    add("empty.pt", r"is empty \(0 bytes\): expected a checkpoint written by torch.save").write_bytes(b"")
    add("junk.pt", r"is neither a zip archive nor a pickle").write_bytes(b"\x89PNG\r\n" + bytes(200))
    with zipfile.ZipFile(add("notes.zip", r"is a zip archive of 1 file\(s\) that torch.save did not write"), "w") as z:
        z.writestr("notes.txt", "not a checkpoint")
    pickle.dump({"denoiser": _Counter()}, add("plain.pkl", r"is a Python pickle that torch.save did "
                                               r"not write .*they can run code").open("wb"))
    torch.save({"denoiser": ScriptableDenoiser().state_dict(), "extra": _Counter()},
               add("objects.pt", r"holds Python objects that torch.load\(weights_only=True\) refuses "
                                 r"to unpickle \(Unsupported global: .*_Counter"))
    torch.save([1, 2], add("list.pt", r"holds a list: expected a dict"))
    raw = (root / "objects.pt").read_bytes()
    add("cut.pt", r"is a damaged zip archive \(no central directory").write_bytes(raw[: len(raw) // 2])
    with zipfile.ZipFile(root / "objects.pt") as zin, zipfile.ZipFile(
            add("garbled.pt", r"is a damaged torch.save file \(its pickle does not parse"), "w") as zout:
        for item in zin.infolist():
            garbled = item.filename.endswith("/data.pkl")
            zout.writestr(item, b"\x80\x02garbage" if garbled else zin.read(item.filename))
    add("folder", r"is a folder: expected a checkpoint").mkdir()
    export(ScriptableDenoiser(), add("exported.pt", r"is a model exported by lidplug .*use it with lidplug.load"))
    export(ScriptableDenoiser(), add("exported.pt2", r"is a model exported by lidplug"))
    torch.jit.save(torch.jit.script(ScriptableDenoiser()),
                   add("foreign.pt", r"is a TorchScript archive \(load it with torch.jit.load\)"))
    return files


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
@pytest.mark.parametrize("name", ["empty.pt", "junk.pt", "notes.zip", "plain.pkl", "objects.pt",
                                  "list.pt", "cut.pt", "garbled.pt", "folder", "exported.pt", "exported.pt2",
                                  "foreign.pt"])
def test_a_wrong_file_is_a_value_error_that_says_what_it_is(wrong_files, name):
    # Before: EOFError (empty), RuntimeError (a zip, a .pt or .pt2 export), IsADirectoryError,
    # and "holds Python objects" for junk bytes.
    path, match = wrong_files[name]
    with pytest.raises(ValueError, match=match):
        read_checkpoint(path)
    with pytest.raises(ValueError, match=match):
        load_weights(ScriptableDenoiser(), path)
    with pytest.raises(ValueError, match=match):
        export(ScriptableDenoiser(), path.parent / "out.pt", checkpoint=path)


def test_read_checkpoint_returns_the_dict(tmp_path):
    state = {"denoiser": ScriptableDenoiser().state_dict(), "step": 3}
    torch.save(state, tmp_path / "new.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("new.pt", "legacy.pt"):
        loaded = read_checkpoint(tmp_path / name)
        assert loaded["step"] == 3 and loaded["denoiser"].keys() == state["denoiser"].keys()
    with pytest.raises(FileNotFoundError, match=r"nope\.pt': no such file"):
        read_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize(("model", "match"), [
    (lambda: ScriptableDenoiser(width=4), r"shapes differ: head.bias \[8\] \(expected \[4\]\)"),
    (lambda: torch.nn.Conv2d(1, 1, 3), r"missing keys bias, weight; unexpected keys head.bias"),
], ids=["other-width", "other-model"])
def test_a_checkpoint_of_another_model_is_a_value_error(tmp_path, model, match):
    # Before: load_state_dict's RuntimeError, a traceback at the CLI.
    torch.save({"denoiser": ScriptableDenoiser().state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match=r"expected a state dict of this \w+, got one that does "
                                         r"not fit it \(.*" + match):
        load_weights(model(), tmp_path / "ckpt.pt")
