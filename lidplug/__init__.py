"""lidplug: lesion-aware training for any CT denoiser (the LIDnet method as a plugin)."""

from lidplug import ops
from lidplug.version import __version__

__all__ = ["__version__", "ops"]
