"""MetaImage files (``.mhd`` header + ``.raw`` data, or ``.mha``) to NumPy arrays and back.

Read and written by SimpleITK, ITK's reader: the one the FDA LCD-CT toolbox's Python code reads
its MetaImage files with, so lidplug decodes every header the same way. The toolbox's sample
shows why a library is worth it: its headers spell the byte order two ways
(``ElementByteOrderMSB``, ``BinaryDataByteOrderMSB``), one recon is big-endian and the other
little-endian, and a volume's slices sit in separate files named by a pattern
(``ElementDataFile = signal_absent_%03d.raw 1 10 1``); ``LIST`` files, ``.mha`` and compressed
data are further variants. A short reader of our own would cover part of that and drift from
the toolbox. SimpleITK is imported on first use (a large wheel that only this module needs).

Arrays are in NumPy order: ``[Y, X]`` for a 2-D image, ``[Z, Y, X]`` for a volume (a stack of
slices); ``spacing`` follows the same order, in mm (MetaImage's ``ElementSpacing``, whose
default is 1).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MetaImage", "read_metaimage", "write_metaimage"]

_SUFFIXES = (".mhd", ".mha")


@dataclass(frozen=True, eq=False)
class MetaImage:
    """A MetaImage's pixels and spacing.

    Attributes:
        array: ``[Y, X]`` or ``[Z, Y, X]`` in the file's element type (``int16`` for
            ``MET_SHORT`` ...).
        spacing: pixel size in mm per axis, in the array's order.
    """

    array: np.ndarray
    spacing: tuple[float, ...]


def _sitk():
    import SimpleITK

    return SimpleITK


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


@contextlib.contextmanager
def _itk_messages() -> Iterator[list[str]]:
    """Collect what ITK's MetaIO prints on the C-level stderr while reading (e.g. "MetaImage:
    Read: Cannot open data file"): it would otherwise reach the terminal beside our one-line
    error. Yields a list that holds the text once the block ends."""
    collected: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield collected
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            collected.append(sink.read().decode(errors="replace"))


def read_metaimage(path: str | os.PathLike) -> MetaImage:
    """Read a ``.mhd`` (with its data files) or ``.mha`` file.

    Args:
        path: the header file.

    Returns:
        :class:`MetaImage`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a MetaImage header, or its data cannot be read (missing or short data
            file, unknown element type); the message names the file.
    """
    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"{path}: expected a MetaImage header (.mhd or .mha), got "
                         f"{path.suffix or 'no suffix'}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a MetaImage file, got nothing there")
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetImageIO("MetaImageIO")
    reader.SetFileName(str(path))
    try:
        with _itk_messages() as messages:
            image = reader.Execute()
    except RuntimeError as err:
        # MetaIO's own lines say which step failed; ITK's exception adds an errno that is often
        # stale ("Inappropriate ioctl for device"), so it is the fallback only.
        said = _lines("".join(messages)) or _lines(str(err))[-1:] or [type(err).__name__]
        raise ValueError(f"{path}: cannot read this MetaImage ({'; '.join(said)})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: expected a scalar image, got "
                         f"{image.GetNumberOfComponentsPerPixel()} components per pixel")
    return MetaImage(sitk.GetArrayFromImage(image), tuple(reversed(image.GetSpacing())))


def write_metaimage(array: np.ndarray, path: str | os.PathLike,
                    spacing: tuple[float, ...] | None = None) -> Path:
    """Write ``array`` as ``path`` (``.mhd``, with ``<stem>.raw`` beside it, uncompressed).

    Args:
        array: ``[Y, X]`` or ``[Z, Y, X]``, any integer or float dtype SimpleITK supports
            (``int16`` is the CT convention: ``MET_SHORT``).
        path: the header to write; the data goes to the same name with ``.raw``.
        spacing: mm per axis in the array's order (default 1 each, MetaImage's default).

    Returns:
        ``path``.

    Raises:
        ValueError: an array of another rank, a spacing of another length or not positive, or
            a path that does not end in ``.mhd``.
    """
    path = Path(path)
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{path}: expected a 2-D or 3-D array, got shape {arr.shape}")
    if path.suffix.lower() != ".mhd":
        raise ValueError(f"{path}: expected a .mhd path, got {path.suffix or 'no suffix'}")
    if spacing is not None and (len(spacing) != arr.ndim or not all(s > 0 for s in spacing)):
        raise ValueError(f"{path}: expected {arr.ndim} positive spacings, got {spacing!r}")
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    if spacing is not None:
        image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    sitk.WriteImage(image, str(path), useCompression=False)
    return path
