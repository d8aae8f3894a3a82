"""PASCAL VOC box files (one XML file per image), parsed by a hardened XML parser.

A box file comes with the data, not from the user's own hands: it is read with defusedxml,
which refuses DTDs, entity declarations and external references, so a crafted file cannot
expand entities into gigabytes ("billion laughs") or make the parser read other files.

Layout read (the fields lidplug uses)::

    <annotation>
      <size><width>512</width><height>512</height></size>
      <object><name>A</name><bndbox><xmin>290</xmin><ymin>305</ymin>
              <xmax>338</xmax><ymax>378</ymax></bndbox></object>   (one per box)
    </annotation>

VOC coordinates are pixel indices of the box's first and last pixel; lidplug's boxes are pixel
*edges* (``x2`` one past the last column, as :mod:`lidplug.data.boxes`), so ``x2 = xmax + 1``
when ``inclusive=True`` (VOC's own convention). Many tools write edges instead; the default
keeps the file's numbers as they are.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VocBoxes", "read_voc_boxes"]


@dataclass
class VocBoxes:
    """The boxes of one VOC file.

    Attributes:
        boxes: ``[[x1, y1, x2, y2], ...]`` in pixels.
        names: each box's class name (``<name>``).
        size: ``(height, width)`` from ``<size>``, or None when absent.
        path: the file.
    """

    boxes: list[list[float]]
    names: list[str]
    size: tuple[int, int] | None
    path: Path


def _number(node, tag: str, path: Path, where: str) -> float:
    child = None if node is None else node.find(tag)
    text = None if child is None else (child.text or "").strip()
    try:
        value = float(text) if text else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{path}: expected a number in {where}/{tag}, got {text!r}")
    return value


def read_voc_boxes(path: str | os.PathLike, *, inclusive: bool = False) -> VocBoxes:
    """Read the boxes of a PASCAL VOC XML file.

    Args:
        path: the XML file.
        inclusive: read ``xmax``/``ymax`` as the last pixel inside the box (VOC's convention)
            and add 1; False keeps the numbers as written (edges).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not well-formed XML, a DTD or entity (refused), no ``<annotation>`` root,
            a box without four finite numbers or with ``x1 >= x2`` / ``y1 >= y2`` (names the
            file and the box).
    """
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, parse

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a VOC box file, got nothing there")
    try:
        root = parse(path).getroot()
    except (ParseError, DefusedXmlException) as err:
        raise ValueError(f"{path}: expected a well-formed VOC XML file without DTD or entities, "
                         f"got {type(err).__name__}: {err}") from None
    if root.tag != "annotation":
        raise ValueError(f"{path}: expected an <annotation> root element, got <{root.tag}>")
    size = None
    size_node = root.find("size")
    if size_node is not None and size_node.find("width") is not None:
        size = (int(_number(size_node, "height", path, "size")),
                int(_number(size_node, "width", path, "size")))
    boxes, names = [], []
    for k, obj in enumerate(root.findall("object")):
        where = f"object[{k}]/bndbox"
        box_node = obj.find("bndbox")
        x1, y1, x2, y2 = (_number(box_node, t, path, where) for t in ("xmin", "ymin", "xmax",
                                                                      "ymax"))
        if inclusive:
            x2, y2 = x2 + 1, y2 + 1
        if not (x1 < x2 and y1 < y2):
            raise ValueError(f"{path}: expected xmin < xmax and ymin < ymax in {where}, got "
                             f"{[x1, y1, x2, y2]}")
        boxes.append([x1, y1, x2, y2])
        names.append((obj.findtext("name") or "").strip())
    return VocBoxes(boxes, names, size, path)
