"""The real-CT readers on the real samples (skipped, saying why, where they are absent)."""

import math
import shutil
import warnings

import numpy as np
import pytest
import torch
from real_data import need
from scipy import ndimage

from lidplug.data import (
    DeepLesionDataset,
    HybridDataset,
    read_annotated_series,
    read_deeplesion_volumes,
    read_masked_volume,
    read_nodules,
    split_nodules,
)
from lidplug.data.insertion import insert, placements, resample_signal, site_mask
from lidplug.pipeline import SHIPPED_RUNS, load_run

LPCD = "lung-pet-ct-dx"


def _series(patient: str, kernels: list[str]):
    root = need(LPCD)
    return read_annotated_series([root / f"Lung_Dx-{patient}" / k for k in kernels],
                                 root / "boxes" / patient)


def _lung_around(image: torch.Tensor, box, margin: int = 15) -> float:
    x1, y1, x2, y2 = (int(v) for v in box)
    ring = torch.zeros_like(image, dtype=torch.bool)
    ring[max(0, y1 - margin):y2 + margin, max(0, x1 - margin):x2 + margin] = True
    ring[y1:y2, x1:x2] = False
    return float(image[ring & (image < -400)].median())


@pytest.mark.parametrize(("patient", "kernels", "counts"), [
    ("A0001", ["series3-kernel-B", "series2-kernel-L"], [9, 11]),
    ("A0002", ["series3-kernel-B40f", "series2-kernel-B70f"], [10, 8]),
])
def test_tumour_boxes_lie_on_tumours(patient, kernels, counts):
    volumes = _series(patient, kernels)
    assert [sum(b.shape[0] for b in v.boxes) for v in volumes] == counts
    for v in volumes:
        assert v.hu.shape[1:] == (512, 512) and v.hu.dtype == torch.float32
        assert v.patient == f"Lung_Dx-{patient}" and v.kernel in kernels[0] + kernels[1]
        assert all(e is not None and e > 0 for e in v.exposure)
        for k in v.lesion_slices:
            for box in v.boxes[k].tolist():
                x1, y1, x2, y2 = (int(b) for b in box)
                inside = float(v.hu[k, y1:y2, x1:x2].mean())
                # The tumour (soft tissue) is far above the air-filled lung around it.
                assert inside - _lung_around(v.hu[k], box) > 300, (v.source, k, box)


def test_a_box_file_naming_no_slice_is_refused_naming_it(tmp_path):
    root = need(LPCD)
    boxes = tmp_path / "boxes"
    shutil.copytree(root / "boxes" / "A0002", boxes)
    stray = boxes / "1.2.3.4.5.xml"
    shutil.copy(next(boxes.glob("*.xml")), stray)
    with pytest.raises(ValueError, match=r"1\.2\.3\.4\.5\.xml: expected a box file named by the "
                                         "SOPInstanceUID of a slice"):
        read_annotated_series([root / "Lung_Dx-A0002" / "series3-kernel-B40f",
                               root / "Lung_Dx-A0002" / "series2-kernel-B70f"], boxes)
    # One kernel alone leaves the other kernel's box files naming no slice: refused too.
    with pytest.raises(ValueError, match="naming no slice"):
        read_annotated_series(root / "Lung_Dx-A0002" / "series3-kernel-B40f",
                              root / "boxes" / "A0002")


@pytest.mark.parametrize(("name", "voxels", "slices"), [("lung1", 837, 3), ("lung2", 24644, 11)])
def test_tumour_mask_and_volume_align(name, voxels, slices):
    folder = need("pyradiomics-lung")
    v = read_masked_volume(folder / f"{name}_image.nrrd", folder / f"{name}_label.nrrd")
    assert int(v.mask.sum()) == voxels and len(v.lesion_slices) == slices
    m = v.mask.numpy()
    ring = ndimage.binary_dilation(m, iterations=4) & ~ndimage.binary_dilation(m, iterations=1)
    # Soft-tissue tumour inside the mask, mostly lung just outside it.
    assert float(v.hu[v.mask].mean()) - float(v.hu.numpy()[ring].mean()) > 400
    for k in v.lesion_slices:  # each slice's boxes bound its mask
        rows, cols = np.nonzero(m[k])
        box = v.boxes[k]
        assert box[:, 0].min() == cols.min() and box[:, 2].max() == cols.max() + 1
        assert box[:, 1].min() == rows.min() and box[:, 3].max() == rows.max() + 1


def test_deeplesion_hu_spacing_and_key_slices_as_dl_info_says():
    root = need("deeplesion-sample")
    volumes = read_deeplesion_volumes(root)
    assert [len(v) for v in volumes] == [13, 16, 61]
    assert [v.spacing for v in volumes] == [(0.488281, 0.488281), (0.314453, 0.314453),
                                            (0.732422, 0.732422)]
    assert [v.slice_thickness for v in volumes] == [5.0, 5.0, 1.0]
    assert [v.names[k].rsplit("/", 1)[1] for v in volumes for k in v.lesion_slices] == [
        "109.png", "014.png", "017.png", "088.png"]
    for v in volumes:
        # HU = stored value - 32768: the patient is fat and soft tissue around 0 HU, the air
        # around the patient about -1000 HU.
        body = v.hu[v.hu > -500]
        assert -100 < float(body.median()) < 100
        air = v.hu[(v.hu > -1100) & (v.hu < -900)]
        assert air.numel() > 10_000 and -1030 < float(air.median()) < -930
    # The dataset on the same files: key slices with DL_info's boxes and spacing, low dose made.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = DeepLesionDataset(root, split="train", dose=0.25)
    assert len(ds) == 4
    s = ds[0]
    assert s["meta"]["spacing"] == (0.488281, 0.488281)
    assert s["target"]["boxes"][0].tolist() == pytest.approx([226.169, 90.0204, 241.252, 111.977],
                                                             abs=1e-3)
    assert float((s["low"] - s["normal"]).std()) > 1.0


def test_nodules_signal_sizes_and_splits():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nodules = read_nodules(need("lidc-nodule-vois"))
    assert len(nodules) == 994 and any("2 nodule(s)" in str(w.message) for w in caught)
    for n in nodules[:50]:
        assert (n.signal[~n.mask] == 0).all() and n.mask[0].any() and n.mask[-1].any()
        assert -1000 < n.background_hu < -500  # lung around it
    ours = np.array([n.diameter_mm for n in nodules])
    theirs = np.array([float(n.info["diameter_mm"]) for n in nodules])
    assert np.corrcoef(ours, theirs)[0, 1] > 0.8
    splits = split_nodules(nodules)
    patients = {k: {n.patient for n in v} for k, v in splits.items()}
    assert not (patients["train"] & patients["validation"]) and not (
        patients["train"] & patients["test"]) and not (patients["validation"] & patients["test"])
    assert sum(len(v) for v in splits.values()) == 994
    assert 0.5 < len(splits["train"]) / 994 < 0.7


def test_real_nodule_inserted_keeps_its_profile_and_the_background():
    nodules = read_nodules(need("lidc-nodule-vois"))
    volume = _series("A0002", ["series3-kernel-B40f", "series2-kernel-B70f"])[0]
    background = volume.hu[3]
    nodule = max(nodules[:40], key=lambda n: int(n.mask.sum()) if n.diameter_mm < 15 else 0)
    # At the nodule's own spacing nothing is resampled: its HU profile, pixel for pixel.
    signal, mask = resample_signal(nodule.signal, nodule.mask, nodule.spacing, nodule.spacing)
    placed = placements([(signal, mask)], site_mask(background, volume.spacing),
                        np.random.default_rng(0))
    assert placed[0] is not None
    hybrid, _, labels = insert(background, placed)
    p = placed[0]
    assert torch.allclose((hybrid - background)[p.rows, p.cols][mask], nodule.signal[mask],
                          rtol=0, atol=1e-3)
    assert torch.equal(hybrid[labels == 0], background[labels == 0])
    # At the slice's spacing the contrast is kept (mean over the mask).
    s2, m2 = resample_signal(nodule.signal, nodule.mask, nodule.spacing, volume.spacing)
    assert float(s2[m2].mean()) == pytest.approx(nodule.contrast_hu, rel=0.05)
    area = float(m2.sum()) * volume.spacing[0] * volume.spacing[1]
    assert 2 * math.sqrt(area / math.pi) == pytest.approx(nodule.diameter_mm, rel=0.1)


def _shipped_options(root):
    spec, _ = load_run(SHIPPED_RUNS["real-lung"], ["--data.root", str(root)])
    return {k: v for k, v in spec.data.options.items()}


def test_hybrid_splits_never_share_a_patient():
    root = need("lidc-nodule-vois").parent
    need(LPCD), need("pyradiomics-lung"), need("deeplesion-sample")
    options = _shipped_options(root)
    options.pop("patch")
    scans, patients, nodules = {}, {}, {}
    for split in ("train", "validation", "test"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = HybridDataset(root, split=split, n=4, dose=0.1, **options)
        scans[split] = {v.source for v in ds.volumes}
        patients[split] = {v.patient for v in ds.volumes}
        nodules[split] = {n.patient for n in ds.nodules}
        sample = ds[0]
        assert sample["meta"]["patient"] in patients[split]
        assert set(sample["meta"]["nodules"]) <= {n.name for n in ds.nodules}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not scans[a] & scans[b] and not patients[a] & patients[b]
        assert not nodules[a] & nodules[b]


def test_hybrid_low_dose_noise_is_calibrated_to_the_scan():
    root = need("lidc-nodule-vois").parent
    need(LPCD), need("pyradiomics-lung")
    options = _shipped_options(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = HybridDataset(root, split="test", n=6, dose=0.25, **options)
    from lidplug.simulation import noise_level

    for v in ds.volumes:
        cal = ds.calibration(v)
        assert 4 < cal.noise_hu < 25  # the smooth kernels' own noise, measured
        assert cal.low_dose_noise_hu == pytest.approx(2 * cal.noise_hu)  # quarter dose: twice
    measured = []
    for i in range(len(ds)):
        s = ds[i]
        low, normal = noise_level(s["low"], s["meta"]["spacing"][1]), noise_level(
            s["normal"], s["meta"]["spacing"][1])
        if math.isfinite(low) and math.isfinite(normal):
            measured.append(low / normal)
    assert len(measured) >= 3
    assert float(np.median(measured)) == pytest.approx(2.0, rel=0.2)
