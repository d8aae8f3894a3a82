"""Lesion datasets: low/normal-dose CT pairs with lesion boxes, as torch Datasets.

Every dataset yields the sample dict documented in :mod:`lidplug.data.sample` with images in HU;
pass ``transform=MapImages(HUWindow())`` for the normalised window models see, and
``collate_fn=collate`` to a DataLoader for detection-style batches.

* :class:`PhantomDataset`: built-in synthetic abdominal phantoms with lesions (no download).
* :class:`DeepLesionDataset`: NIH DeepLesion key slices, low dose simulated on the fly.
* :class:`PairedDicomDataset`: real low/normal-dose DICOM series (AAPM-Mayo layout).
"""

from lidplug.data.boxes import make_target, mask_to_box, validate_boxes
from lidplug.data.dataset import LesionDataset
from lidplug.data.deeplesion import DeepLesionDataset, read_dl_info, write_deeplesion
from lidplug.data.paired_dicom import PairedDicomDataset, read_boxes_csv
from lidplug.data.phantom import LesionSpec, Phantom, PhantomDataset, Tissue, generate_phantom
from lidplug.data.png import read_png_hu, write_png_hu
from lidplug.data.sample import (
    LESION_TYPES,
    UNKNOWN_LESION_LABEL,
    collate,
    derive_seed,
    make_sample,
)
from lidplug.data.transforms import (
    HU_MAX,
    HU_MIN,
    LUNG_HU,
    SOFT_TISSUE_HU,
    HUWindow,
    MapImages,
)

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "LESION_TYPES",
    "LUNG_HU",
    "SOFT_TISSUE_HU",
    "UNKNOWN_LESION_LABEL",
    "DeepLesionDataset",
    "HUWindow",
    "LesionDataset",
    "LesionSpec",
    "MapImages",
    "PairedDicomDataset",
    "Phantom",
    "PhantomDataset",
    "Tissue",
    "collate",
    "derive_seed",
    "generate_phantom",
    "make_sample",
    "make_target",
    "mask_to_box",
    "read_boxes_csv",
    "read_dl_info",
    "read_png_hu",
    "validate_boxes",
    "write_deeplesion",
    "write_png_hu",
]
