"""Names of output files and folders taken from input files, made safe to write to.

Text read from a file (a SeriesInstanceUID, a DL_info.csv file name, a box file's name) is data,
never a path: a crafted value such as ``../../victim``, an absolute path, a separator or a NUL
byte would otherwise steer a writer outside its output folder. Every writer that names outputs
after input text goes through these two functions.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["ensure_inside", "series_folder_name"]

# A DICOM UID (PS3.5 9.1): digits in dot-separated components, at most 64 characters. Such a
# name holds no separator, no "..", nothing a file system reads specially.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX = 64


def series_folder_name(series_uid: str, index: int) -> str:
    """The output folder of one series among several read from one folder.

    Args:
        series_uid: the series' SeriesInstanceUID as read from its files.
        index: its 1-based place among the folder's series (sorted by UID).

    Returns:
        ``series_uid`` itself when it is a well-formed DICOM UID, else ``series-<index>``.
    """
    text = str(series_uid)
    if len(text) <= _UID_MAX and _UID.fullmatch(text):
        return text
    return f"series-{index}"


def ensure_inside(root: str | Path, path: str | Path) -> Path:
    """``path`` if it resolves inside ``root`` (symbolic links followed), else ValueError.

    The last line of defence of a writer: whatever a name was made from, nothing is written
    outside the folder the user named.
    """
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if path_r != root_r and root_r not in path_r.parents:
        raise ValueError(f"{path}: expected a path inside the output folder {root}, got one "
                         f"that resolves to {path_r}")
    return Path(path)
