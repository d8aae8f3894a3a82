"""DICOM input/output: CT files and series to float32 HU tensors, and derived series back;
MetaImage files (the FDA LCD-CT toolbox's format) to arrays and back.

Reading and decoding rely on pydicom and its pylibjpeg plugins (JPEG, JPEG-LS, JPEG 2000, RLE),
so compressed files read with the default install. Volumes (NIfTI through nibabel, NRRD through
pynrrd) and PASCAL VOC box files (defusedxml) for real lesion data; MetaImage through SimpleITK
(:mod:`lidplug.io.metaimage`).
"""

from lidplug.io.meta import DicomMeta
from lidplug.io.metaimage import MetaImage, read_metaimage, write_metaimage
from lidplug.io.names import ensure_inside, series_folder_name
from lidplug.io.reader import read_dicom
from lidplug.io.voc import VocBoxes, read_voc_boxes
from lidplug.io.volume import Volume, read_label_volume, read_volume
from lidplug.io.writer import write_dicom

__all__ = [
    "DicomMeta",
    "MetaImage",
    "VocBoxes",
    "Volume",
    "ensure_inside",
    "read_dicom",
    "read_label_volume",
    "read_metaimage",
    "read_voc_boxes",
    "read_volume",
    "series_folder_name",
    "write_dicom",
    "write_metaimage",
]
