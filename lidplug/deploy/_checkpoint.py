"""Denoiser weights from a training checkpoint, read with ``torch.load(weights_only=True)``.

``weights_only=True`` unpickles tensors and plain containers only, never arbitrary classes, so a
checkpoint from elsewhere cannot run code when it is opened for export.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import nn

__all__ = ["load_weights"]

# Where a checkpoint dict may keep the denoiser's state dict, most specific first.
_STATE_KEYS = ("denoiser", "state_dict", "model")
# Key prefixes of a state dict saved from a wrapper (wrap's ``denoiser``), DDP or torch.compile.
_PREFIXES = ("denoiser.", "module.", "_orig_mod.")


def _state_dict_of(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    for key in _STATE_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            return _state_dict_of(inner)
    raise ValueError(f"lidplug.deploy.load_weights: expected a state dict, or a checkpoint dict "
                     f"with one of the keys {list(_STATE_KEYS)}, got keys {sorted(checkpoint)[:10]}")


def _match_keys(state: Mapping[str, Any], expected: set[str]) -> dict[str, Any]:
    state = dict(state)
    for prefix in _PREFIXES:
        if expected <= state.keys():
            break  # a denoiser may itself own a submodule called "module": strip only if needed
        if any(k.startswith(prefix) for k in state):
            # A wrapper's state dict also holds the detector: keep the denoiser's part only.
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_weights(denoiser: nn.Module, checkpoint: str | PathLike[str] | Mapping[str, Any], *,
                 strict: bool = True) -> nn.Module:
    """Loads a denoiser's weights from a checkpoint file or dict.

    Accepted layouts: a plain state dict; a dict holding one under ``"denoiser"``,
    ``"state_dict"`` or ``"model"``; keys prefixed ``denoiser.`` (a wrapped model's state dict,
    whose detector keys are dropped), ``module.`` (DDP) or ``_orig_mod.`` (torch.compile).

    Args:
        denoiser: the module to load into (in place).
        checkpoint: a path for ``torch.load(..., map_location="cpu", weights_only=True)``, or a
            dict already loaded.
        strict: as in ``nn.Module.load_state_dict``.

    Returns:
        ``denoiser``.

    Raises:
        ValueError: the file holds Python objects ``weights_only`` refuses, or no state dict.
    """
    if not isinstance(checkpoint, Mapping):
        try:
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(f"lidplug.deploy.load_weights: {str(checkpoint)!r} holds Python "
                             f"objects that torch.load(weights_only=True) refuses to unpickle; "
                             f"save plain state dicts (tensors, numbers, strings, dicts). "
                             f"torch said: {str(exc).splitlines()[0]}") from None
        if not isinstance(checkpoint, Mapping):
            raise ValueError(f"lidplug.deploy.load_weights: expected the checkpoint to hold a "
                             f"dict, got {type(checkpoint).__name__}")
    state = _match_keys(_state_dict_of(checkpoint), set(denoiser.state_dict()))
    denoiser.load_state_dict(state, strict=strict)
    return denoiser
