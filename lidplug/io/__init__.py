"""DICOM input/output: CT files and series to float32 HU tensors, and derived series back.

Reading and decoding rely on pydicom and its pylibjpeg plugins (JPEG, JPEG-LS, JPEG 2000, RLE),
so compressed files read with the default install.
"""

from lidplug.io.meta import DicomMeta
from lidplug.io.names import ensure_inside, series_folder_name
from lidplug.io.reader import read_dicom
from lidplug.io.writer import write_dicom

__all__ = ["DicomMeta", "ensure_inside", "read_dicom", "series_folder_name", "write_dicom"]
