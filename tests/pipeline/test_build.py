"""Models from run files: import paths, arguments, weights (state dicts or checkpoints, SHA-256)."""

import pytest
import torch

from lidplug.pipeline import ModelSpec, build_model
from lidplug.zoo import list_pretrained, pretrained_info, sha256_of

RED = {"class_path": "lidplug.models.REDCNN", "init_args": {"channels": 4}}


def test_class_and_function_paths_build():
    model = build_model(ModelSpec(model=RED), "denoiser")
    assert type(model).__name__ == "REDCNN" and model.channels == 4
    det = build_model(ModelSpec(model={"class_path": "lidplug.detectors.lesion_fcos",
                                       "init_args": {"image_size": 64}}), "detector")
    assert type(det).__name__ == "FCOS"


def test_weights_from_a_state_dict_and_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = build_model(ModelSpec(model=RED), "denoiser")
    for p in source.parameters():
        p.data.normal_()
    plain, ckpt = tmp_path / "state.pt", tmp_path / "latest.pt"
    torch.save(source.state_dict(), plain)
    torch.save({"denoiser": source.state_dict(), "detector": {}}, ckpt)
    for path in (plain, ckpt):
        loaded = build_model(ModelSpec(model=RED, weights=str(path)), "denoiser")
        for a, b in zip(loaded.state_dict().values(), source.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    # A relative path resolves against the run file's folder.
    assert build_model(ModelSpec(model=RED, weights="state.pt"), "denoiser", tmp_path)


def test_sha256_is_checked(tmp_path):
    path = tmp_path / "state.pt"
    torch.save(build_model(ModelSpec(model=RED), "denoiser").state_dict(), path)
    good = sha256_of(path)
    build_model(ModelSpec(model=RED, weights=str(path), sha256=good), "denoiser")
    with pytest.raises(ValueError, match="SHA-256"):
        build_model(ModelSpec(model=RED, weights=str(path), sha256="0" * 64), "denoiser")


@pytest.mark.parametrize("content", ["junk", "empty", "mismatch", "objects", "missing"])
def test_bad_weights_are_one_clear_error(tmp_path, content):
    path = tmp_path / "w.pt"
    if content == "junk":
        path.write_bytes(b"not a torch file at all")
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "mismatch":  # saved from another width: the message names the keys
        other = {"class_path": "lidplug.models.REDCNN", "init_args": {"channels": 6}}
        torch.save(build_model(ModelSpec(model=other), "denoiser").state_dict(), path)
    elif content == "objects":  # a pickle of an arbitrary object: never unpickled
        torch.save({"denoiser": torch.nn.Conv2d(1, 1, 1)}, path)
    with pytest.raises(ValueError, match="weights"):
        build_model(ModelSpec(model=RED, weights=str(path)), "denoiser")


def not_a_module(width: int = 1) -> dict:
    return {"width": width}


def test_role_and_emptiness_are_checked():
    with pytest.raises(ValueError, match="role"):
        build_model(ModelSpec(model=RED), "segmenter")
    with pytest.raises(ValueError, match="neither"):
        build_model(ModelSpec(), "denoiser")
    with pytest.raises(ValueError, match=r"nn\.Module"):
        build_model(ModelSpec(model={"class_path": f"{__name__}.not_a_module",
                                     "init_args": {}}), "denoiser")


def test_the_shipped_models_load_and_match_their_manifest():
    names = list_pretrained()
    assert {"redcnn", "dncnn", "unet", "detector-frcnn", "observer-frcnn",
            "observer-fcos"} <= set(names)
    for name in names:
        info = pretrained_info(name)
        assert sha256_of(info["path"]) == info["sha256"], name
        model = build_model(ModelSpec(pretrained=name), info["role"])
        assert isinstance(model, torch.nn.Module)
        assert info["run"].is_file()  # the run file that regenerates it
    with pytest.raises(ValueError, match="denoiser"):  # a detector asked for as a denoiser
        build_model(ModelSpec(pretrained="observer-fcos"), "denoiser")
    with pytest.raises(ValueError, match="expected one of"):
        build_model(ModelSpec(pretrained="nope"), "denoiser")


def test_the_hashed_bytes_are_the_loaded_bytes(tmp_path, monkeypatch):
    """Regression: the SHA-256 was checked on one read of the file and the weights loaded from
    a second: a file swapped in between passed the check and the other weights were loaded."""
    import hashlib

    path = tmp_path / "state.pt"
    torch.manual_seed(0)
    good = build_model(ModelSpec(model=RED), "denoiser").state_dict()
    torch.save(good, path)
    other = tmp_path / "other.pt"
    torch.save({k: v + 1 for k, v in good.items()}, other)
    digest = sha256_of(path)
    real = hashlib.sha256

    class SwapAfterHashing:  # the attacker's swap, right after the check's hash is taken
        def __init__(self, *args):
            self._h = real(*args)

        def update(self, data):
            self._h.update(data)

        def hexdigest(self):
            path.write_bytes(other.read_bytes())
            return self._h.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", SwapAfterHashing)
    model = build_model(ModelSpec(model=RED, weights=str(path), sha256=digest), "denoiser")
    for key, value in model.state_dict().items():
        assert torch.equal(value, good[key]), key


def broken_model(width: int = 1) -> torch.nn.Module:
    raise RuntimeError("the user's model failed while it was built")


def offline_model(width: int = 1) -> torch.nn.Module:
    import urllib.error

    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize(("name", "match"), [
    ("broken_model", r"denoiser: test_build\.broken_model\(.*\) failed: RuntimeError: the "),
    ("offline_model", r"denoiser: test_build\.offline_model\(.*\) failed to download"),
])
def test_a_model_failing_to_build_is_named(name, match):
    """Regression: a user class raising in __init__ (a RuntimeError), or a builder whose
    download failed ('<urlopen error>'), gave a traceback or a message naming nothing."""
    with pytest.raises(ValueError, match=match):
        build_model(ModelSpec(model={"class_path": f"{__name__}.{name}", "init_args": {}}),
                    "denoiser")


@pytest.mark.parametrize("what", ["folder", "fifo", "device"])
def test_weights_that_are_no_file_say_what_they_are(tmp_path, what):
    """Regression: a weights path that is a folder, a FIFO or /dev/zero gave 'got nothing at'."""
    import os

    path = {"folder": tmp_path, "fifo": tmp_path / "pipe", "device": "/dev/zero"}[what]
    if what == "fifo":
        os.mkfifo(path)
    expected = {"folder": "a folder", "fifo": "a FIFO", "device": "a character device"}[what]
    with pytest.raises(ValueError, match=rf"denoiser\.weights: expected a weights file, got "
                                         rf"{expected} at"):
        build_model(ModelSpec(model=RED, weights=str(path)), "denoiser")


def test_a_missing_zoo_manifest_is_named(monkeypatch, tmp_path):
    """Regression: a deleted manifest gave "pretrained: expected one of [], got 'redcnn'"."""
    from lidplug import zoo

    monkeypatch.setattr(zoo, "_MANIFEST", tmp_path / "manifest.json")
    zoo._manifest.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"manifest\.json.*missing.*reinstall"):
            zoo.pretrained_info("redcnn")
    finally:
        monkeypatch.undo()
        zoo._manifest.cache_clear()
