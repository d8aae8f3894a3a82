"""Models from :class:`~lidplug.pipeline.spec.ModelSpec`: import path, arguments, weights.

A run file names any denoiser or detector by import path (a class, or a function returning a
module such as a torchvision builder) with its keyword arguments, and optionally weights to
start from: a state dict, a ``lidplug train`` checkpoint or another project's checkpoint (the
containers and prefixes :func:`lidplug.deploy.load_weights` knows, or ``weights_key`` /
``strip_prefix``), read with ``weights_only=True`` (a file cannot run code when it is opened)
and checked against a SHA-256 when one is given. Shipped models (:mod:`lidplug.zoo`) always are.

An argument given as a nested table ``{class_path, init_args}`` is built first, inside out
(``lidplug.models.Standardized`` around the user's model, say). A denoiser's ``units``,
``forward_kwargs`` and ``identity_start`` (:class:`~lidplug.pipeline.spec.DenoiserSpec`) put
it in lidplug's units (:func:`lidplug.models.adapt_denoiser`) after its weights are loaded.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
from torch import nn

from lidplug.pipeline.resolve import resolve_callable, resolve_path
from lidplug.pipeline.spec import DenoiserSpec, ModelSpec
from lidplug.zoo import pretrained_info

__all__ = ["available_memory", "build_model", "tensor_bytes"]

ROLES = ("denoiser", "detector")


def _check_args(factory, init_args: Mapping[str, Any], where: str) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have no signature: let the call decide
        return
    try:
        signature.bind(**init_args)
    except TypeError as err:
        accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
        raise ValueError(f"{where}.init_args: {err}; {getattr(factory, '__name__', factory)} "
                         f"accepts {accepted}") from None


_GIB = 1 << 30


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes free for tensors on ``device``: the kernel's estimate of memory available without
    swapping (Linux ``MemAvailable``) for the CPU, the free memory of a CUDA device; None where
    it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size()
               for t in itertools.chain(module.parameters(), module.buffers()))


def _check_size(factory, init_args: Mapping[str, Any], class_path: str, where: str) -> None:
    """Refuse a model whose weights alone exceed the free memory, before it is built: it is
    built first on the meta device (shapes without memory; generators untouched), which costs
    nothing, where building it for real would allocate, then be killed, or get others killed
    (DnCNN with 100000 channels asks for 5000 GiB)."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            size = tensor_bytes(factory(**init_args))
    except Exception:  # a model that cannot be built on the meta device: the real build decides
        return
    free = available_memory("cpu")
    if free is not None and size > free:
        raise ValueError(f"{where}: {class_path}({init_args}) has {size / _GIB:.1f} GiB of "
                         f"weights, {free / _GIB:.1f} GiB of memory are free; expected a model "
                         "that fits (check its sizes: channels, depth, ...)")


def _what_is(path: Path) -> str:
    """What is at ``path`` when it is no regular file (for messages)."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return "nothing"
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "no regular file")


def _read_state(path: Path, role: str, where: str, sha256: str | None, expected: set[str], *,
                key: str | None = None, strip_prefix: str | None = None) -> Mapping[str, Any]:
    if not path.is_file():  # a FIFO or /dev/zero would block or never end when read
        raise ValueError(f"{where}.weights: expected a weights file, got {_what_is(path)} at "
                         f"{path}")
    # One read: the bytes hashed are the bytes loaded (a file swapped between a check and a
    # second read would otherwise pass the check and load the other weights).
    data = path.read_bytes()
    if sha256 is not None and (actual := hashlib.sha256(data).hexdigest()) != sha256:
        raise ValueError(f"{where}.weights: {path} has SHA-256 {actual}, expected {sha256} "
                         "(a changed or damaged file)")
    from lidplug.deploy import read_checkpoint, state_dict_from

    try:  # weights_only; says what the file is when it is not a checkpoint
        state = read_checkpoint(path, data=data)
    except ValueError as err:
        raise ValueError(f"{where}.weights: {err}") from None
    # A 'lidplug train' checkpoint holds both models: take this role's.
    if key is None and isinstance(state.get(role), Mapping):
        key = role
    try:  # another project's container and prefixes (lidplug.deploy.load_weights's list)
        return state_dict_from(state, expected, key=key, strip_prefix=strip_prefix)
    except ValueError as err:
        raise ValueError(f"{where}.weights: {path}: {str(err).split(': ', 1)[1]}") from None


def _instantiate(value: Any, where: str) -> Any:
    """``value`` with every nested ``{class_path, init_args}`` table built, inside out."""
    if isinstance(value, Mapping) and isinstance(value.get("class_path"), str):
        factory = resolve_callable(value["class_path"], where)
        args = {k: _instantiate(v, f"{where}.init_args.{k}")
                for k, v in (value.get("init_args") or {}).items()}
        _check_args(factory, args, where)
        try:
            return factory(**args)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {value['class_path']}(...) failed: {err}") from None
    if isinstance(value, list):
        return [_instantiate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _load_weights(model: nn.Module, adapted: nn.Module, spec: ModelSpec, path: Path, role: str,
                  where: str, sha256: str | None) -> None:
    """Weights for the model itself (another project's file), or for the adapted model (a
    ``lidplug train`` checkpoint of the same run, which holds the adapter's keys)."""
    options = {"key": spec.weights_key, "strip_prefix": spec.strip_prefix}
    state = _read_state(path, role, where, sha256, set(model.state_dict()), **options)
    if adapted is not model and set(state) != set(model.state_dict()):
        outer = _read_state(path, role, where, None, set(adapted.state_dict()), **options)
        if set(outer) == set(adapted.state_dict()):
            model, state = adapted, outer
    _load_state(model, state, where, path)


def _load_state(model: nn.Module, state: Mapping[str, Any], where: str, path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{name} {keys[:4]}{'...' if len(keys) > 4 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("other shape", wrong)) if keys]
        raise ValueError(f"{where}.weights: {path} does not fit the model "
                         f"{type(model).__name__} ({'; '.join(parts)}); expected weights "
                         "saved from this class with these init_args")
    model.load_state_dict(state)


def build_model(spec: ModelSpec, role: str, folder: Path | None = None, *,
                where: str | None = None, weights: bool = True) -> nn.Module:
    """Build the model ``spec`` describes and load its weights.

    Args:
        spec: the description.
        role: ``"denoiser"`` or ``"detector"`` (which entry of a training checkpoint to read).
        folder: relative ``weights`` paths resolve against it (the run file's folder).
        where: the spec's name in messages (default: ``role``).
        weights: False builds the model without loading weights (``--from-scratch``).

    Returns:
        The module, on the CPU, in training mode (a denoiser with ``units``,
        ``forward_kwargs`` or ``identity_start``: inside its adapter, in lidplug's units).

    Raises:
        ValueError: an import path that does not resolve, arguments the class does not take, a
            result that is not an ``nn.Module``, weights that are missing, damaged (SHA-256),
            unsafe to unpickle or that do not fit the model.
    """
    if role not in ROLES:
        raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
    where = where or role
    if not spec.is_set:
        raise ValueError(f"{where}: expected pretrained = NAME or a model table, got neither")
    if spec.pretrained is not None:
        info = pretrained_info(spec.pretrained)
        if info["role"] != role:
            raise ValueError(f"{where}.pretrained: {spec.pretrained!r} is a {info['role']}, "
                             f"expected a {role}")
        class_path, init_args = info["class_path"], dict(info["init_args"])
        path, sha256 = info["path"], info["sha256"]
    else:
        class_path = spec.model["class_path"]
        init_args = {k: _instantiate(v, f"{where}.model.init_args.{k}")
                     for k, v in spec.model["init_args"].items()}
        path = None if spec.weights is None else resolve_path(spec.weights, folder)
        sha256 = spec.sha256
    factory = resolve_callable(class_path, where)
    _check_args(factory, init_args, where)
    _check_size(factory, init_args, class_path, where)
    try:
        model = factory(**init_args)
    except (TypeError, ValueError) as err:
        shown = {k: (type(v).__name__ if isinstance(v, nn.Module) else v)
                 for k, v in init_args.items()}  # a built nested model: its class, not its repr
        raise ValueError(f"{where}: {class_path}({shown}) failed: {err}") from None
    except URLError as err:  # a builder fetching pretrained weights, offline
        raise ValueError(f"{where}: {class_path}({init_args}) failed to download its weights "
                         f"({err.reason}); expected a network connection, or weights that "
                         "need no download (e.g. weights = null)") from None
    except Exception as err:  # the user's own code: whatever it raises is named, on one line
        text = " ".join(str(err).split())[:300]
        raise ValueError(f"{where}: {class_path}({init_args}) failed: "
                         f"{type(err).__name__}: {text}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{where}.class_path: expected {class_path} to give an nn.Module, got "
                         f"{type(model).__name__}")
    adapted = _adapted(model, spec, role, where)
    if weights and path is not None:
        _load_weights(model, adapted, spec, path, role, where, sha256)
    return adapted.train()


def _adapted(model: nn.Module, spec: ModelSpec, role: str, where: str) -> nn.Module:
    """The denoiser in lidplug's units (``units``, ``forward_kwargs``, ``identity_start``)."""
    options = spec.adaptation() if isinstance(spec, DenoiserSpec) else {}
    if not options:
        return model
    if role != "denoiser":
        raise ValueError(f"{where}: units, forward_kwargs and identity_start are denoiser "
                         f"options, got them for a {role}")
    from lidplug.models import adapt_denoiser

    try:
        return adapt_denoiser(model, **options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}.{err}") from None
