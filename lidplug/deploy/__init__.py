"""Deployment: the trained denoiser alone, as TorchScript or torch.export, for Python and C++.

The detector is a training-time tool; what ships is the denoiser, in a file that any torch (or
libtorch C++ program) can run without lidplug::

    lidplug.export(wrapped_or_denoiser, "denoiser.pt")         # TorchScript, frozen, verified
    lidplug.export(denoiser, "denoiser.pt2")                    # torch.export
    lidplug.export(denoiser, "denoiser-bf16.pt", dtype="bfloat16")
    model = lidplug.load("denoiser.pt")                         # DeployedDenoiser + metadata
    model(x_window_units); model.denoise_hu(x_hu)

Without lidplug: ``torch.jit.load("denoiser.pt")`` gives a module with ``forward`` (window
units) and ``denoise_hu`` (HU); the metadata is the archive's extra file ``lidplug.json``
(``torch.jit.load(path, _extra_files={"lidplug.json": ""})``). A model whose graph calls
``torch.ops.lidplug.*`` (``metadata["ops"]``) needs the ops library loaded first:
``torch.ops.load_library(p)`` with ``p`` the installed ``lidplug/_C*.so`` or the CMake-built
``liblidplug_ops.so``; C++ programs link ``lidplug_ops`` (``examples/cpp/lidplug_denoise.cpp``).

Training checkpoints are read with :func:`read_checkpoint` (``torch.load(weights_only=True)``
after the file was identified; a wrong file is a ValueError saying what it is) and a denoiser's
weights taken from one with :func:`load_weights`. Nothing here runs code from a file: see
:func:`load` for what is refused in an archive.
"""

from lidplug.deploy._checkpoint import load_weights, read_checkpoint, state_dict_from
from lidplug.deploy._errors import ExportError, ExportWarning, model_error
from lidplug.deploy._export import export
from lidplug.deploy._inputs import hu_like_slices
from lidplug.deploy._load import DeployedDenoiser, load
from lidplug.deploy._metadata import METADATA_FILE, read_metadata

__all__ = [
    "METADATA_FILE",
    "DeployedDenoiser",
    "ExportError",
    "ExportWarning",
    "export",
    "hu_like_slices",
    "load",
    "load_weights",
    "model_error",
    "read_checkpoint",
    "read_metadata",
    "state_dict_from",
]
