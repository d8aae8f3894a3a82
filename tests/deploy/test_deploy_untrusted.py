"""A crafted .pt2 never runs code when lidplug loads it: each way torch's loader would, refused.

Every archive here starts as a real ``lidplug.export(..., "x.pt2")``; one part is replaced by a
payload that creates a marker file when Python runs it. The marker must never appear and the
load must fail with a ValueError that says what was refused.
"""

from __future__ import annotations

import json
import pickle
import zipfile

import pytest
import torch
from deploy_models import ScriptableDenoiser

from lidplug.deploy import export, load


class Payload:
    """Unpickling this evaluates Python that creates ``marker`` (and returns valid inputs)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close() or ((), {{}})",))


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    path = tmp_path_factory.mktemp("pt2") / "x.pt2"
    export(ScriptableDenoiser(), path)
    return path


def _rewrite(src, dst, edit):
    """Copy the archive ``src`` to ``dst``; ``edit(entries)`` changes the dict tail -> bytes."""
    with zipfile.ZipFile(src) as zin:
        top = zin.namelist()[0].split("/", 1)[0]
        entries = {n.split("/", 1)[1]: zin.read(n) for n in zin.namelist()}
    edit(entries)
    with zipfile.ZipFile(dst, "w") as zout:
        for tail, data in entries.items():
            zout.writestr(tail[1:] if tail.startswith("/") else f"{top}/{tail}", data)
    return dst


def _edit_json(entries, tail, change):
    data = json.loads(entries[tail])
    change(data)
    entries[tail] = json.dumps(data).encode()


def _first_node(program, target_prefix="torch.ops.aten.conv2d"):
    return next(n for n in program["graph_module"]["graph"]["nodes"]
                if n["target"].startswith(target_prefix))


def _sample_inputs(marker):
    def edit(entries):  # the case of the issue: torch retries with weights_only=False
        entries["data/sample_inputs/model.pt"] = pickle.dumps(Payload(marker), protocol=2)
    return edit


def _pickled_weight(marker):
    def edit(entries):
        def change(config):
            config["config"]["denoiser.head.weight"]["use_pickle"] = True
        _edit_json(entries, "data/weights/model_weights_config.json", change)
        entries["data/weights/weight_0"] = pickle.dumps(Payload(marker), protocol=2)
    return edit


def _opaque_constant(marker):
    def edit(entries):
        def change(config):
            config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False,
                                        "use_pickle": True, "tensor_meta": None}
        _edit_json(entries, "data/constants/model_constants_config.json", change)
        entries["data/constants/opaque_obj_0"] = pickle.dumps(Payload(marker), protocol=2)
    return edit


def _guard_code(marker):
    def edit(entries):  # exec'd when the program becomes a module
        _edit_json(entries, "models/model.json", lambda m: m["guards_code"].append(
            f"open({str(marker)!r}, 'w').close() is None"))
    return edit


def _sympy_expression(marker):
    def edit(entries):  # parsed by sympy.sympify, which evaluates Python
        def change(program):
            text = json.dumps(program)
            old = "Symbol('s0', positive=True, integer=True)"
            new = f"Symbol('s0', positive=True, integer=True) + 0*len(str(open({str(marker)!r}, 'w')))"
            program.clear()
            program.update(json.loads(text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1], 1)))
        _edit_json(entries, "models/model.json", change)
    return edit


def _callable_target(marker):
    def edit(entries):  # any callable reachable from torch would do: torch.os.system is one
        _edit_json(entries, "models/model.json",
                   lambda m: _first_node(m).update(target="torch.os.system"))
    return edit


def _name_in_source(marker):
    def edit(entries):  # graph names are pasted into the module's generated Python source
        def change(program):
            program["graph_module"]["module_call_graph"][0]["signature"]["forward_arg_names"] = [
                f"x=open({str(marker)!r}, 'w')"]
        _edit_json(entries, "models/model.json", change)
    return edit


def _aoti_library(marker):
    def edit(entries):
        entries["data/aotinductor/model/model.so"] = b"\x7fELF"
    return edit


def _legacy_weights(marker):
    def edit(entries):
        entries["data/weights/model.pt"] = pickle.dumps(Payload(marker), protocol=2)
    return edit


def _entry_outside_the_folder(marker):
    def edit(entries):  # the older format's entries sit at the top of the zip
        entries["/version"] = b"1"
    return edit


CASES = {
    "sample-inputs-pickle": (_sample_inputs, r"sample inputs are not plain tensors"),
    "pickled-weight": (_pickled_weight, r"stores 'denoiser.head.weight' as a pickle"),
    "opaque-constant": (_opaque_constant, r"holds 'data/constants/opaque_obj_0': a Python object"),
    "guard-code": (_guard_code, r"its guard .*open.* holds the construct 'Is'"),
    "sympy-expression": (_sympy_expression, r"symbolic size .* holds 'len': sympy would evaluate it as Python"),
    "callable-target": (_callable_target, r"a node calls 'torch.os.system', a builtin_function"),
    "name-in-source": (_name_in_source, r"forward_arg_names = .*not a plain name"),
    "aoti-library": (_aoti_library, r"holds 'data/aotinductor/model/model.so': compiled code"),
    "legacy-weights": (_legacy_weights, r"holds 'data/weights/model.pt': pickled weights"),
    "entry-outside-the-folder": (_entry_outside_the_folder, r"expected the entries in one top folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_crafted_archive_is_refused_without_running_code(genuine, tmp_path, case):
    make, match = CASES[case]
    marker = tmp_path / "marker"
    crafted = _rewrite(genuine, tmp_path / "crafted.pt2", make(marker))
    with pytest.raises(ValueError, match=r"lidplug.load: refusing '.*crafted\.pt2': .*" + match):
        load(crafted)(torch.zeros(1, 1, 16, 16))
    assert not marker.exists()


def test_a_duplicated_entry_is_refused(genuine, tmp_path):
    with zipfile.ZipFile(genuine) as zin, zipfile.ZipFile(tmp_path / "twice.pt2", "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, zin.read(item.filename))
        with pytest.warns(UserWarning, match="Duplicate name"):
            zout.writestr(zin.namelist()[0], b"")
    with pytest.raises(ValueError, match=r"refusing .* holds the entry .* twice"):
        load(tmp_path / "twice.pt2")


def test_the_genuine_archive_loads_and_runs(genuine):
    out = load(genuine)(torch.rand(2, 1, 24, 24))
    assert out.shape == (2, 1, 24, 24) and torch.isfinite(out).all()


class MaskedDenoiser(ScriptableDenoiser):
    """A denoiser whose graph holds -inf, as an attention mask does (deepinv's SCUNet)."""

    def forward(self, x):
        mask = torch.full_like(x, float("-inf")).exp()  # zeros, from a -inf constant
        return super().forward(x) + mask


def test_ieee_specials_in_constants_load_and_code_stays_refused(tmp_path):
    path = tmp_path / "masked.pt2"
    model = MaskedDenoiser().eval()
    export(model, path)
    with zipfile.ZipFile(path) as archive:
        program = next(archive.read(n) for n in archive.namelist()
                       if n.endswith("models/model.json"))
    assert b"-Infinity" in program
    x = torch.rand(1, 1, 24, 24)
    torch.testing.assert_close(load(path)(x), model(x))
    # Only under a float constant's key: the same text elsewhere is still not a plain name.
    crafted = _rewrite(path, tmp_path / "crafted.pt2", lambda entries: _edit_json(
        entries, "models/model.json",
        lambda m: m["graph_module"]["module_call_graph"][0]["signature"].update(
            forward_arg_names=["-Infinity"])))
    with pytest.raises(ValueError, match=r"forward_arg_names = '-Infinity', not a plain name"):
        load(crafted)
