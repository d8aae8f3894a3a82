"""Reference CT denoisers in plain PyTorch, with a name registry.

Every model maps ``Tensor[B, 1, H, W]`` to ``Tensor[B, 1, H, W]`` in the normalised window units
of :class:`lidplug.data.HUWindow` (HU ``[-1024, 3072]`` -> ``[0, 1]``) and is scriptable with
``torch.jit.script`` for deployment.

* :class:`REDCNN` (``"redcnn"``): Chen et al., IEEE TMI 2017.
* :class:`DnCNN` (``"dncnn"``): Zhang et al., IEEE TIP 2017.
* :class:`UNet` (``"unet"``): Ronneberger et al., MICCAI 2015, with a global residual.

Each works internally on standardised inputs (water at 0, 409.6 HU per unit) and starts as the
identity (a zero-initialised residual head): :mod:`lidplug.models._common` gives the measured
reasons. :class:`Standardized` gives a denoiser of your own the same units.

``create_denoiser("redcnn", channels=48)`` builds one by name; ``list_denoisers()`` lists the
names. Third-party denoisers need no adapter and no registration: any ``nn.Module`` with the
same input/output contract can be trained with lidplug.

A denoiser trained elsewhere, in other units, with extra ``forward`` arguments, or that does not
start as the identity: :func:`adapt_denoiser` (:class:`HUUnits`, :class:`ForwardArgs`,
:class:`IdentityStart`; ``lidplug.wrap`` and run files take the same options), and
:func:`check_denoiser` tries one on a small batch (``wrap`` does, once).
"""

from lidplug.models._common import Standardized
from lidplug.models._registry import create_denoiser, list_denoisers, register_denoiser
from lidplug.models.adapt import (
    LDCT_BENCHMARK_UNITS,
    ForwardArgs,
    HUUnits,
    IdentityStart,
    adapt_denoiser,
)
from lidplug.models.check import check_denoiser
from lidplug.models.dncnn import DnCNN
from lidplug.models.redcnn import REDCNN
from lidplug.models.unet import UNet

__all__ = [
    "LDCT_BENCHMARK_UNITS",
    "REDCNN",
    "DnCNN",
    "ForwardArgs",
    "HUUnits",
    "IdentityStart",
    "Standardized",
    "UNet",
    "adapt_denoiser",
    "check_denoiser",
    "create_denoiser",
    "list_denoisers",
    "register_denoiser",
]
