"""Lesion datasets: low/normal-dose CT pairs with lesion boxes, as torch Datasets.

Every dataset yields the sample dict documented in :mod:`lidplug.data.sample` with images in HU;
pass ``transform=MapImages(HUWindow())`` for the normalised window models see, and
``collate_fn=collate`` to a DataLoader for detection-style batches.

* :class:`PhantomDataset`: built-in synthetic abdominal phantoms with lesions (no download).
* :class:`DeepLesionDataset`: NIH DeepLesion key slices, low dose simulated on the fly.
* :class:`PairedDicomDataset`: real low/normal-dose DICOM series (AAPM-Mayo layout).
* :class:`HybridDataset`: real chest CT with real LIDC nodules inserted (or the scans' own
  annotated tumours), low dose simulated with a calibrated photon count.

Real scans and nodules (one reader per source format): :func:`read_annotated_series` (DICOM
series with VOC box files), :func:`read_masked_volume` (NIfTI/NRRD with a label map),
:func:`read_deeplesion_volumes` (DeepLesion's layout), :func:`read_nodules` (LIDC nodule crops),
as :class:`CTVolume` and :class:`Nodule`.
"""

from lidplug.data.boxes import make_target, mask_to_box, validate_boxes
from lidplug.data.dataset import LesionDataset
from lidplug.data.deeplesion import DeepLesionDataset, read_dl_info, write_deeplesion
from lidplug.data.hybrid import HybridDataset
from lidplug.data.nodules import Nodule, read_nodules
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
from lidplug.data.sources import Source, parse_sources, split_nodules
from lidplug.data.transforms import (
    HU_MAX,
    HU_MIN,
    LUNG_HU,
    SOFT_TISSUE_HU,
    HUWindow,
    MapImages,
)
from lidplug.data.volumes import (
    CTVolume,
    read_annotated_series,
    read_deeplesion_volumes,
    read_masked_volume,
)

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "LESION_TYPES",
    "LUNG_HU",
    "SOFT_TISSUE_HU",
    "UNKNOWN_LESION_LABEL",
    "CTVolume",
    "DeepLesionDataset",
    "HUWindow",
    "HybridDataset",
    "LesionDataset",
    "LesionSpec",
    "MapImages",
    "Nodule",
    "PairedDicomDataset",
    "Phantom",
    "PhantomDataset",
    "Source",
    "Tissue",
    "collate",
    "derive_seed",
    "generate_phantom",
    "make_sample",
    "make_target",
    "mask_to_box",
    "parse_sources",
    "read_annotated_series",
    "read_boxes_csv",
    "read_deeplesion_volumes",
    "read_dl_info",
    "read_masked_volume",
    "read_nodules",
    "read_png_hu",
    "split_nodules",
    "validate_boxes",
    "write_deeplesion",
    "write_png_hu",
]
