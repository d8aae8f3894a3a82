"""Training checkpoints, read safely: :func:`read_checkpoint` and the denoiser's weights from one.

A checkpoint is read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
containers only, never arbitrary classes, so a checkpoint from elsewhere cannot run code when it
is opened. Before that the file is identified from its bytes (zip entry names, the first bytes),
so that a wrong file (an exported model, an empty or damaged file, a plain pickle) is refused
with what it is, not with whatever torch's loader happens to raise for it.
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["PREFIXES", "STATE_KEYS", "load_weights", "read_checkpoint", "state_dict_from"]

# Where a checkpoint dict may keep the model's state dict, most specific first: lidplug's own
# ("denoiser"), ldct-benchmark and the PyTorch tutorials ("model_state_dict"), Lightning, timm
# and deepinv ("state_dict"), MONAI and many repositories ("model", "net", "network"), GAN
# trainers ("generator"), BasicSR/KAIR ("params").
STATE_KEYS = ("denoiser", "model_state_dict", "state_dict", "model", "net", "network",
              "generator", "params")
# Key prefixes of a state dict saved from a wrapper (wrap's ``denoiser``), DataParallel/DDP,
# torch.compile or a Lightning module's ``model`` attribute.
PREFIXES = ("denoiser.", "module.", "_orig_mod.", "model.")
# torch.save's legacy (pre-zip) format starts with a pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_PICKLE_PROTOCOL_OPCODE = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"
_EXPECTED = "a checkpoint written by torch.save (latest.pt of 'lidplug train', or a state dict)"
_SHOWN_KEYS = 5  # keys listed in a mismatch message


def _zip_kind(names: list[str]) -> str | None:
    """What a zip archive is, or None for a torch.save checkpoint."""
    tails = {n.split("/", 1)[1] for n in names if "/" in n}
    if "extra/lidplug.json" in tails:
        return ("a model exported by lidplug (lidplug.export, 'lidplug export' or 'lidplug train'"
                "'s denoiser.pt); use it with lidplug.load or 'lidplug denoise --model'")
    if "archive_format" in tails:
        return "a torch.export archive (load it with torch.export.load)"
    if any(t.startswith("code/") for t in tails):
        return "a TorchScript archive (load it with torch.jit.load)"
    if "data.pkl" in tails:
        return None
    return f"a zip archive of {len(names)} file(s) that torch.save did not write"


def _refusal_reason(exc: Exception) -> str:
    # torch's weights_only message is a paragraph about defaults; the reason follows this marker.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.endswith("WeightsUnpickler error:") and i + 1 < len(lines):
            return lines[i + 1]
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()
    return lines[0] if lines else type(exc).__name__


def read_checkpoint(path: str | PathLike[str], *, data: bytes | None = None) -> dict[str, Any]:
    """Reads a checkpoint or state dict written by ``torch.save``, without running any code.

    The file is loaded with ``torch.load(path, map_location="cpu", weights_only=True)`` after
    it was identified as a ``torch.save`` file; every other file is refused with what it is.

    Args:
        path: the file (e.g. ``latest.pt`` of ``lidplug train``).
        data: the file's bytes, already read: they are parsed instead of reading ``path``
            (named in messages only), so a check made on these bytes (a SHA-256) holds for
            what is loaded, whatever happens to the file meanwhile.

    Returns:
        The dict the file holds (tensors on the CPU).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is a folder, empty, damaged, an exported model, a zip or pickle that
            ``torch.save`` did not write, holds Python objects that ``weights_only`` refuses to
            unpickle, or holds no dict; the message says which and what was expected.
    """
    path = Path(path)
    where = f"lidplug.deploy.read_checkpoint: {str(path)!r}"
    if data is None:
        if path.is_dir():
            raise ValueError(f"{where} is a folder: expected {_EXPECTED}")
        if not path.is_file():
            raise FileNotFoundError(f"{where}: no such file")
        with path.open("rb") as fh:
            head = fh.read(len(_LEGACY_MAGIC))
    else:
        head = data[:len(_LEGACY_MAGIC)]
    source = path if data is None else io.BytesIO(data)  # what every read below parses
    if not head:
        raise ValueError(f"{where} is empty (0 bytes): expected {_EXPECTED}")
    if zipfile.is_zipfile(source):
        try:
            with zipfile.ZipFile(source) as archive:
                kind = _zip_kind(archive.namelist())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise ValueError(f"{where} is a damaged zip archive ({exc}): expected "
                             f"{_EXPECTED}") from None
        if kind is not None:
            raise ValueError(f"{where} is {kind}, not a checkpoint: expected {_EXPECTED}")
    elif head.startswith(_ZIP_MAGIC):  # a zip's index sits at its end: a cut file loses it
        raise ValueError(f"{where} is a damaged zip archive (no central directory: truncated?): "
                         f"expected {_EXPECTED}")
    elif not head.startswith(_LEGACY_MAGIC):
        what = ("a Python pickle that torch.save did not write (lidplug never unpickles those: "
                "they can run code)" if head.startswith(_PICKLE_PROTOCOL_OPCODE)
                else "neither a zip archive nor a pickle")
        raise ValueError(f"{where} is {what}: expected {_EXPECTED}")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: the error says more
            warnings.simplefilter("ignore", UserWarning)
            if isinstance(source, io.BytesIO):
                source.seek(0)
            checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _refusal_reason(exc)
        if reason.startswith("Unsupported operand"):  # bytes that are no pickle opcode
            raise ValueError(f"{where} is a damaged torch.save file (its pickle does not parse: "
                             f"{reason}): expected {_EXPECTED}") from None
        raise ValueError(f"{where} holds Python objects that torch.load(weights_only=True) "
                         f"refuses to unpickle ({reason}); expected a checkpoint of tensors, "
                         f"numbers, strings, lists and dicts") from None
    except Exception as exc:  # a damaged file: torch raises RuntimeError, EOFError, KeyError...
        raise ValueError(f"{where} is a damaged torch.save file ({type(exc).__name__}: "
                         f"{_refusal_reason(exc)}): expected {_EXPECTED}") from None
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{where} holds a {type(checkpoint).__name__}: expected a dict (a "
                         f"checkpoint or a state dict)")
    return dict(checkpoint)


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(v, torch.Tensor) for v in value.values())


def _state_dict_of(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    if _is_state_dict(checkpoint):
        return checkpoint
    for key in STATE_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            return _state_dict_of(inner)
    raise ValueError(f"lidplug.deploy.load_weights: expected a state dict, or a checkpoint dict "
                     f"with one of the keys {list(STATE_KEYS)} (or name it with key=), got keys "
                     f"{sorted(map(str, checkpoint))[:10]}")


def _at_key(checkpoint: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``checkpoint[a][b]`` for ``key = "a.b"`` (a key that itself holds dots is tried whole)."""
    if key in checkpoint:
        found: Any = checkpoint[key]
    else:
        found = checkpoint
        for i, part in enumerate(key.split(".")):
            if not (isinstance(found, Mapping) and part in found):
                where = ".".join(key.split(".")[:i]) or "the checkpoint"
                have = sorted(map(str, found))[:10] if isinstance(found, Mapping) else []
                raise ValueError(f"lidplug.deploy.load_weights: key {key!r}: expected {part!r} "
                                 f"in {where}, got keys {have}")
            found = found[part]
    if not _is_state_dict(found):
        raise ValueError(f"lidplug.deploy.load_weights: key {key!r}: expected a state dict of "
                         f"tensors there, got {type(found).__name__}")
    return found


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    # A wrapper's state dict also holds the detector: keep the prefixed part only.
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _match_keys(state: Mapping[str, Any], expected: set[str]) -> dict[str, Any]:
    state = dict(state)
    for prefix in PREFIXES:
        if expected <= state.keys():
            break  # a denoiser may itself own a submodule called "module": strip only if needed
        if any(k.startswith(prefix) for k in state):
            state = _strip(state, prefix)
    return state


def state_dict_from(checkpoint: Mapping[str, Any], expected: set[str], *,
                    key: str | None = None, strip_prefix: str | None = None) -> dict[str, Any]:
    """The state dict in ``checkpoint`` meant for a module whose own keys are ``expected``.

    Without options the layout is recognised: a plain state dict, or one under the first of
    :data:`STATE_KEYS` present (nested containers are followed); then the prefixes of
    :data:`PREFIXES` are stripped, one after the other, while the keys do not fit ``expected``.

    Args:
        checkpoint: a dict as :func:`read_checkpoint` returns it.
        expected: the keys of the module's own ``state_dict()``.
        key: where the state dict is, dotted for nested containers (``"ema.state_dict"``);
            None: recognised.
        strip_prefix: a prefix removed from every key (keys without it are dropped); None:
            the known prefixes, where needed.

    Raises:
        ValueError: no state dict there, or nothing left after ``strip_prefix``.
    """
    state = _at_key(checkpoint, key) if key is not None else _state_dict_of(checkpoint)
    if strip_prefix is None:
        return _match_keys(state, expected)
    stripped = _strip(state, strip_prefix)
    if not stripped:
        raise ValueError(f"lidplug.deploy.load_weights: strip_prefix {strip_prefix!r}: expected "
                         f"keys starting with it, got {_listed(sorted(state))}")
    return stripped


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else shown


def _mismatch(module: nn.Module, state: Mapping[str, Any], strict: bool) -> str:
    """What does not fit between ``module`` and ``state`` (empty if nothing is detected)."""
    own = module.state_dict()
    parts = []
    if strict:
        if missing := sorted(own.keys() - state.keys()):
            parts.append(f"missing keys {_listed(missing)}")
        if unexpected := sorted(state.keys() - own.keys()):
            parts.append(f"unexpected keys {_listed(unexpected)}")
    shapes = [f"{k} {list(state[k].shape)} (expected {list(own[k].shape)})"
              for k in sorted(own.keys() & state.keys())
              if isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape]
    if shapes:
        parts.append(f"shapes differ: {_listed(shapes)}")
    return "; ".join(parts)


def load_weights(denoiser: nn.Module, checkpoint: str | PathLike[str] | Mapping[str, Any], *,
                 strict: bool = True, key: str | None = None,
                 strip_prefix: str | None = None) -> nn.Module:
    """Loads a denoiser's weights from a checkpoint file or dict, lidplug's or another project's.

    Accepted layouts: a plain state dict; a dict holding one under the first present of
    ``"denoiser"`` (lidplug), ``"model_state_dict"`` (ldct-benchmark, the PyTorch tutorials),
    ``"state_dict"`` (Lightning, timm, deepinv), ``"model"``, ``"net"``, ``"network"``,
    ``"generator"``, ``"params"`` (BasicSR, KAIR); keys prefixed ``denoiser.`` (a wrapped
    model's state dict, whose detector keys are dropped), ``module.`` (DataParallel, DDP),
    ``_orig_mod.`` (torch.compile) or ``model.`` (a Lightning module), stripped only where the
    keys do not fit as they are. ``key`` and ``strip_prefix`` name any other layout. Any
    module's plain state dict loads the same way (e.g. a checkpoint's ``"detector"``). The file
    is still read with ``weights_only=True``.

    Args:
        denoiser: the module to load into (in place).
        checkpoint: a path (read with :func:`read_checkpoint`, i.e.
            ``torch.load(..., map_location="cpu", weights_only=True)``), or a dict already
            loaded.
        strict: as in ``nn.Module.load_state_dict``.
        key: where the state dict is in the checkpoint, dotted for nested containers
            (``"model_state_dict"``, ``"ema.state_dict"``); None: recognised (above).
        strip_prefix: a prefix to remove from every key (e.g. ``"generator."``); None: the
            known ones, where needed.

    Returns:
        ``denoiser``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a checkpoint (see :func:`read_checkpoint`), holds no state
            dict, or its state dict does not fit ``denoiser`` (missing or unexpected keys,
            other shapes: another model or other model options than it was trained with).
    """
    if not isinstance(checkpoint, Mapping):
        checkpoint = read_checkpoint(checkpoint)
    state = state_dict_from(checkpoint, set(denoiser.state_dict()), key=key,
                            strip_prefix=strip_prefix)
    name = type(denoiser).__name__
    why = _mismatch(denoiser, state, strict)
    if why:
        raise ValueError(f"lidplug.deploy.load_weights: expected a state dict of this {name}, "
                         f"got one that does not fit it ({why}): was the checkpoint trained with "
                         f"another model or other model options?")
    try:
        denoiser.load_state_dict(state, strict=strict)
    except RuntimeError as exc:  # what the checks above cannot see (a module's own load hooks)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ValueError(f"lidplug.deploy.load_weights: the state dict does not fit this {name}: "
                         f"{'; '.join(lines)}") from None
    return denoiser
