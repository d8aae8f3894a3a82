"""A torch.export archive (``.pt2``) checked before torch reads it, so that loading runs no code.

``torch.export.load`` trusts its input (its docstring: never load data from an untrusted source).
Reading the program of a crafted archive runs Python code in more than one place:

* the sample inputs are unpickled with ``weights_only=True`` and, if that fails, again with
  ``weights_only=False``, which runs any pickle; a weight or constant marked ``use_pickle`` is
  unpickled with ``weights_only=False``, an opaque constant with ``pickle.loads``;
* an AOTInductor package loads a compiled shared library; the older archive format (a top-level
  ``version`` entry) takes the same fallback;
* symbolic sizes (``expr_str``) are parsed by ``sympy.sympify``, which evaluates Python;
  ``guards_code`` is compiled and run with ``exec`` when the program becomes a module;
* a graph node may name any callable reachable from ``torch`` (``torch.os.system`` is one), and
  names from the graph are pasted into the Python source FX generates for the module.

No library offers a safe loader, so this module holds the archive to what ``torch.export.save``
writes for a plain denoiser and refuses anything else: only known entries; weights and constants
as raw tensor bytes; sample inputs that ``weights_only=True`` reads; symbolic sizes made of
sympy's own classes and numbers; guards that only compare input sizes; nodes calling registered
operators; plain names. The check runs on the bytes that are then handed to torch (read once,
into memory), so the file cannot change in between. It guards against running code, not
against an archive built to exhaust memory or time (a zip bomb, a huge symbolic power).
"""

from __future__ import annotations

import ast
import io
import json
import math
import operator
import re
import tokenize
import zipfile
import zlib
from collections import Counter
from typing import Any

import sympy
import torch

__all__ = ["check_program_archive"]

_FIXED_ENTRIES = frozenset({
    "archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id",
    "models/model.json", "data/sample_inputs/model.pt",
    "data/weights/model_weights_config.json", "data/constants/model_constants_config.json",
})
_PAYLOAD = re.compile(r"data/(weights/weight|constants/tensor)_\d+")
_EXTRA = re.compile(r"extra/[^/]+")
_WHY_ENTRY = (("data/aotinductor/", "compiled code (AOTInductor), which loading would run"),
              ("data/executorch/", "an ExecuTorch program"),
              ("data/constants/custom_obj_", "a script object, which loading would unpickle"),
              ("data/constants/opaque_obj_", "a Python object, which loading would unpickle"),
              ("data/weights/model.pt", "pickled weights (the older layout), which loading "
                                        "would unpickle with weights_only=False"),
              ("data/constants/model.pt", "pickled constants (the older layout), which "
                                          "loading would unpickle with weights_only=False"))

# model.json: strings under these keys are data torch never turns into code.
# (Node metadata, stack traces and module paths, is only stored; string arguments are printed
# with repr into the generated code.)
_FREE_TEXT = frozenset({"metadata", "as_string", "as_strings", "torch_version"})
_TREESPECS = frozenset({"in_spec", "out_spec"})
_PLAIN = re.compile(r"[\w.]*")  # names, dotted module paths and numbers: no code fits in these
# torch.export writes a float constant that JSON cannot hold (an attention mask's -inf) as
# one of these strings under these keys; torch reads them back with float(), never as code.
_IEEE_SPECIALS = frozenset({"Infinity", "-Infinity", "NaN"})
_FLOAT_KEYS = frozenset({"as_float", "as_floats", "as_float_lists"})
_SYMBOL = re.compile(r"[a-z]+\d+")  # torch's size symbols: s0, u3, ...
_SYMPY_OPS = frozenset({"(", ")", ",", "=", "+", "-", "*", "/", "**", "%", "<", ">", "<=", ">=",
                        "==", "!="})
_SYMPY_STRING = re.compile(r"'[A-Za-z_]\w*'|'[-+]?[\d.]+(e[-+]?\d+)?'")
# Guards compare the input's sizes: L['x'].size()[2] >= 21, torch.sym_max(1, ...) == ...
_GUARD_CHARS = re.compile(r"[\w \[\]'().,+\-*/%<>=!]*")
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_CALLS = {"torch": frozenset({"sym_max", "sym_min", "sym_float", "sym_int", "sym_not",
                                    "sym_ite", "sym_sqrt"}),
                "math": frozenset({"floor", "ceil", "trunc", "sqrt", "isnan", "isinf"})}
_GUARD_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
                ast.UAdd, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
                ast.Pow, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
                ast.Constant, ast.Subscript, ast.Call, ast.Attribute, ast.Name, ast.Load,
                ast.IfExp)


class _Refused(Exception):
    """Why an archive is refused (turned into the ValueError by the caller)."""


def check_program_archive(raw: bytes, path: str) -> None:
    """Refuses a ``.pt2`` archive whose loading could run code (see the module docstring).

    Args:
        raw: the archive's bytes, exactly as they will be given to ``torch.export.load``.
        path: the file's name, for the message.

    Raises:
        ValueError: the archive holds something a lidplug export never holds; the message
            names it and why loading it would be unsafe.
    """
    try:
        _check(raw)
    except _Refused as why:
        raise ValueError(f"lidplug.load: refusing {path!r}: {why}. lidplug never runs code "
                         f"from a model file; a torch.export archive that lidplug.export wrote "
                         f"has none of this (re-export the model with lidplug.export)") from None


def _check(raw: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            _check_entries(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
            zlib.error) as exc:  # what zipfile raises on a damaged archive or entry
        raise _Refused(f"it is a damaged zip archive ({type(exc).__name__}: {exc})") from None


def _check_entries(archive: zipfile.ZipFile) -> None:
    names = archive.namelist()
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    if twice:  # zip readers disagree on which copy wins: the checked one may not be loaded
        raise _Refused(f"it holds the entry {twice[0]!r} twice")
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1 or any("/" not in n for n in names):
        raise _Refused(f"expected the entries in one top folder, got {sorted(tops)[:5]}")
    entries = {n.split("/", 1)[1]: n for n in names}
    for tail in entries:
        if not (tail in _FIXED_ENTRIES or _PAYLOAD.fullmatch(tail) or _EXTRA.fullmatch(tail)):
            what = next((why for prefix, why in _WHY_ENTRY if tail.startswith(prefix)),
                        "an entry torch.export.save does not write")
            raise _Refused(f"it holds {tail!r}: {what}")
    for config in ("data/weights/model_weights_config.json",
                   "data/constants/model_constants_config.json"):
        if config in entries:
            _check_payloads(_json(archive, entries[config], config), config, entries)
    if "models/model.json" not in entries:
        raise _Refused("it holds no program (models/model.json)")
    if "data/sample_inputs/model.pt" in entries:
        _check_sample_inputs(archive.read(entries["data/sample_inputs/model.pt"]))
    _check_program(_json(archive, entries["models/model.json"], "models/model.json"))


def _json(archive: zipfile.ZipFile, name: str, tail: str) -> Any:
    try:
        return json.loads(archive.read(name))
    except ValueError as exc:
        raise _Refused(f"its {tail} is not JSON ({exc})") from None


def _check_payloads(config: Any, tail: str, entries: dict[str, str]) -> None:
    items = config.get("config") if isinstance(config, dict) else None
    if not isinstance(items, dict):
        raise _Refused(f"its {tail} is not a payload table")
    folder = tail.rsplit("/", 1)[0]
    for fqn, item in items.items():
        if not isinstance(item, dict) or item.get("use_pickle") is not False:
            raise _Refused(f"its {tail} stores {fqn!r} as a pickle, which loading would unpickle "
                           f"with weights_only=False")
        name = f"{folder}/{item.get('path_name')}"
        if not (_PAYLOAD.fullmatch(name) and name in entries):
            raise _Refused(f"its {tail} stores {fqn!r} in {name!r}, not a raw tensor entry")


def _check_sample_inputs(data: bytes) -> None:
    # torch reads them with weights_only=True first and retries with weights_only=False on any
    # failure: what the safe load refuses must never reach torch.
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # the safe unpickler raises UnpicklingError, RuntimeError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _Refused(f"its sample inputs are not plain tensors (torch would retry them with "
                       f"weights_only=False, which runs any pickle): {first[:200]}") from None


def _check_program(model: Any) -> None:
    if not isinstance(model, dict):
        raise _Refused("its models/model.json is not a program")
    guards = model.get("guards_code", [])
    if not isinstance(guards, list):
        raise _Refused("its guards_code is not a list")
    for guard in guards:
        _check_guard(guard)
    _walk(model, "")


def _walk(value: Any, key: str) -> None:
    """Every string of the program is a plain name unless its key says what else it is."""
    if isinstance(value, dict):
        node = "target" in value and "inputs" in value
        for k, v in value.items():
            if not isinstance(k, str) or not _PLAIN.fullmatch(k):
                raise _Refused(f"its program has the key {k!r}, not a plain name")
            if k in _FREE_TEXT or k == "guards_code":
                continue
            if k == "expr_str":
                _check_sympy(v)
            elif k == "as_operator" or (k == "target" and node):
                _check_operator(v)
            elif k in _TREESPECS:
                _check_treespec(v, k)
            else:
                _walk(v, k)
    elif isinstance(value, list):
        for item in value:
            _walk(item, key)
    elif isinstance(value, str) and not _PLAIN.fullmatch(value) and not (
            key in _FLOAT_KEYS and value in _IEEE_SPECIALS):
        raise _Refused(f"its program has {key} = {value[:80]!r}, not a plain name")


def _check_treespec(spec: Any, key: str) -> None:
    # A pytree spec is JSON whose "context" entries are JSON again; FX pastes dict keys from
    # the input spec into the module's source, so they are held to plain names like the rest.
    def parse(text: Any) -> Any:
        try:
            return json.loads(text) if isinstance(text, str) else text
        except ValueError:
            raise _Refused(f"its {key} is not a pytree spec") from None

    def check(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                check(k)
                check(parse(v) if k == "context" else v)
        elif isinstance(value, list):
            for item in value:
                check(item)
        elif isinstance(value, str) and not _PLAIN.fullmatch(value):
            raise _Refused(f"its {key} holds {value[:80]!r}, not a plain name")

    check(parse(spec))


def _check_operator(target: Any) -> None:
    """A node's target must resolve, as torch's deserializer resolves it, to a registered
    operator or one of the symbolic-size functions, never to another callable."""
    from torch._export.serde.serialize import _SYM_OPS

    if not isinstance(target, str) or not _PLAIN.fullmatch(target):
        raise _Refused(f"a node calls {target!r}, not an operator name")
    root, *parts = target.split(".")
    modules = {"torch": torch, "_operator": operator, "math": math}
    if root not in modules or any(p.startswith("__") or not p for p in parts):
        raise _Refused(f"a node calls {target!r}, not a registered operator")
    found: Any = modules[root]
    for part in parts:
        found = getattr(found, part, None)
        if found is None:
            raise _Refused(f"a node calls {target!r}, which is not a registered operator here "
                           f"(is the library that registers it loaded?)")
    if isinstance(found, torch._ops.OpOverload | torch._ops.HigherOrderOperator):
        return
    if any(found is op for op in _SYM_OPS):
        return
    raise _Refused(f"a node calls {target!r}, a {type(found).__name__}, not an operator")


def _sympy_name_ok(name: str) -> bool:
    from sympy.core.assumptions import _assume_defined
    from torch.utils._sympy import functions, numbers

    if name in _assume_defined or name in ("True", "False") or _SYMBOL.fullmatch(name):
        return True
    for namespace in (sympy, functions, numbers):
        obj = getattr(namespace, name, None)
        if isinstance(obj, sympy.Basic) or (isinstance(obj, type) and issubclass(obj, sympy.Basic)):
            return True
    return False


def _check_sympy(expr: Any) -> None:
    """``expr_str`` is what sympy.srepr prints (``Mul(Integer(8), Symbol('s0', ...))``): sympy
    classes, numbers, symbol names in quotes, keyword arguments. sympify evaluates it as Python,
    so anything else (attributes, other names, other strings) is refused."""
    if not isinstance(expr, str):
        raise _Refused(f"its program has the symbolic size {expr!r}, not a string")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expr).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise _Refused(f"its program has the symbolic size {expr[:80]!r}: {exc}") from None
    for tok in tokens:
        if not _sympy_token_ok(tok):
            raise _Refused(f"its program has the symbolic size {expr[:80]!r}, which holds "
                           f"{tok.string!r}: sympy would evaluate it as Python")


def _sympy_token_ok(tok: tokenize.TokenInfo) -> bool:
    if tok.type == tokenize.NAME:
        return _sympy_name_ok(tok.string)
    if tok.type == tokenize.STRING:
        return bool(_SYMPY_STRING.fullmatch(tok.string))
    if tok.type == tokenize.OP:
        return tok.string in _SYMPY_OPS
    return tok.type in (tokenize.NUMBER, tokenize.NEWLINE, tokenize.ENDMARKER)


def _is_input(node: ast.AST) -> bool:
    """``L['x']``, ``L['x']['k']``, ``L['x'][0]``: the program's inputs in guard code."""
    while isinstance(node, ast.Subscript):
        key = node.slice
        if not (isinstance(key, ast.Constant) and (
                isinstance(key.value, int) or (isinstance(key.value, str)
                                               and key.value.isidentifier()))):
            return False
        node = node.value
    return isinstance(node, ast.Name) and node.id == "L"


def _check_guard(guard: Any) -> None:
    """A guard compares the inputs' sizes; torch pastes its text into code it runs with exec."""
    if not isinstance(guard, str) or not _GUARD_CHARS.fullmatch(guard):
        raise _Refused(f"its guard {str(guard)[:80]!r} holds characters a size check has no use "
                       f"for")
    try:
        tree = ast.parse(guard, mode="eval")
    except SyntaxError:
        raise _Refused(f"its guard {guard[:80]!r} is not an expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, _GUARD_NODES):
            raise _Refused(f"its guard {guard[:80]!r} holds the construct "
                           f"{type(node).__name__!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
            raise _Refused(f"its guard {guard[:80]!r} holds the constant {node.value!r}")
        if isinstance(node, ast.Name) and node.id not in ("L", *_GUARD_CALLS):
            raise _Refused(f"its guard {guard[:80]!r} names {node.id!r}")
        if isinstance(node, ast.Attribute):
            on_input = _is_input(node.value) and node.attr in _GUARD_METHODS
            module = isinstance(node.value, ast.Name) and node.value.id in _GUARD_CALLS
            if not (on_input or (module and node.attr in _GUARD_CALLS[node.value.id])):
                raise _Refused(f"its guard {guard[:80]!r} reads .{node.attr}")
        if isinstance(node, ast.Call) and (node.keywords or not isinstance(node.func, ast.Attribute)):
            raise _Refused(f"its guard {guard[:80]!r} makes a call that is no size check")
        if isinstance(node, ast.Subscript) and not (_is_input(node) or isinstance(
                node.value, ast.Call)):
            raise _Refused(f"its guard {guard[:80]!r} indexes something other than an input "
                           f"or its sizes")
