import subprocess
import sys

import numpy as np
import pytest
import torch

from lidplug.data import (
    LesionSpec,
    PhantomDataset,
    Tissue,
    collate,
    generate_phantom,
    mask_to_box,
)

SIZE = 96  # 4 mm pixels: small and fast, still holds 3-30 mm lesions (>= 2 px)


@pytest.fixture(scope="module")
def dataset():
    return PhantomDataset(24, size=SIZE, seed=3, max_lesions=3)


@pytest.fixture(scope="module")
def phantoms(dataset):
    return [dataset.phantom(i) for i in range(len(dataset))]


def test_same_seed_same_phantom_other_seed_other_phantom(dataset):
    again = PhantomDataset(24, size=SIZE, seed=3).phantom(5)
    assert torch.equal(dataset.phantom(5).hu, again.hu)
    assert torch.equal(dataset.phantom(5).boxes, again.boxes)
    assert not torch.equal(PhantomDataset(24, size=SIZE, seed=4).phantom(5).hu, again.hu)


def test_phantom_is_identical_in_another_process(dataset, tmp_path):
    code = ("from lidplug.data import PhantomDataset; "
            f"p = PhantomDataset(24, size={SIZE}, seed=3).phantom(5); "
            "print(float(p.hu.double().sum()), p.boxes.tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path)  # outside the checkout: the installed package
    ph = dataset.phantom(5)
    assert out.stdout.strip() == f"{float(ph.hu.double().sum())} {ph.boxes.tolist()}"


def test_boxes_are_tight_around_lesion_masks(phantoms):
    lesions = 0
    for ph in phantoms:
        assert ph.boxes.shape == (len(ph.hosts), 4) and len(ph.contrasts) == len(ph.hosts)
        for k, box in enumerate(ph.boxes, start=1):
            mask = ph.lesions == k
            assert torch.equal(box, mask_to_box(mask))
            lesions += 1
    assert lesions >= 20


def test_lesion_contrast_lies_inside_box_and_matches(phantoms):
    for ph in phantoms:
        diff = ph.hu - ph.background
        outside = torch.ones_like(diff, dtype=torch.bool)
        for k, (box, contrast) in enumerate(zip(ph.boxes, ph.contrasts, strict=True), start=1):
            x1, y1, x2, y2 = box.int().tolist()
            # The soft edge (< half contrast) may reach 2 pixels past the mask, no further.
            outside[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = False
            inside = diff[ph.lesions == k]
            assert abs(contrast) >= 10 and -60 <= contrast <= 80
            assert np.sign(inside.mean().item()) == np.sign(contrast)
            assert abs(inside.mean().item()) >= 0.4 * abs(contrast)
        assert diff[outside].abs().max() == 0


def test_lesions_sit_inside_their_host_organ(phantoms):
    for ph in phantoms:
        for k, host in enumerate(ph.hosts, start=1):
            assert host in (Tissue.LIVER, Tissue.SPLEEN, Tissue.KIDNEY, Tissue.MUSCLE)
            assert (ph.tissue[ph.lesions == k] == host).all()


def test_lesion_sizes_follow_the_spec():
    ph = [generate_phantom(s, size=256, num_lesions=3) for s in range(6)]
    widths = torch.cat([(p.boxes[:, 2:] - p.boxes[:, :2]).max(1).values * p.spacing for p in ph])
    assert ph[0].spacing == 1.5
    assert widths.min() >= 1.5 and widths.max() <= 45  # 3-30 mm diameters, lobulated/elongated
    small = generate_phantom(0, size=64, num_lesions=3, lesions=LesionSpec(diameter_mm=(1, 2)))
    assert (small.boxes[:, 2:] > small.boxes[:, :2]).all()  # never below one pixel


def test_lesion_free_fraction(dataset, phantoms):
    free = [len(p.hosts) == 0 for p in phantoms]
    assert abs(sum(free) / len(free) - dataset.lesion_free_fraction) <= 0.05
    always = PhantomDataset(5, size=SIZE, lesion_free_fraction=0.0)
    assert all(len(always.phantom(i).hosts) >= 1 for i in range(5))
    none = PhantomDataset(5, size=SIZE, lesion_free_fraction=1.0)
    assert all(len(none.phantom(i).hosts) == 0 for i in range(5))


HU_RANGES = {
    Tissue.AIR: (-1010, -990), Tissue.FAT: (-120, -75), Tissue.MUSCLE: (40, 65),
    Tissue.LIVER: (45, 115), Tissue.SPLEEN: (35, 125), Tissue.KIDNEY: (25, 190),
    Tissue.LUNG: (-890, -810), Tissue.BONE: (450, 1150), Tissue.MARROW: (140, 310),
}


def _eroded(mask: torch.Tensor) -> torch.Tensor:
    """Drop the boundary pixels, which blend neighbouring tissues (partial volume)."""
    core = torch.zeros_like(mask)
    core[1:-1, 1:-1] = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1]
                        & mask[1:-1, :-2] & mask[1:-1, 2:])
    return core


def test_tissue_hu_is_plausible():
    seen = set()
    for seed in range(6):
        ph = generate_phantom(seed, size=256, num_lesions=0)
        for tissue, (lo, hi) in HU_RANGES.items():
            core = _eroded(ph.tissue == tissue)
            if core.sum() < 10:
                continue
            seen.add(tissue)
            mean = ph.hu[core].mean().item()
            assert lo <= mean <= hi, (tissue.name, mean)
            if tissue in (Tissue.LIVER, Tissue.MUSCLE, Tissue.FAT):
                assert 1 < ph.hu[core].std().item() < 25  # textured, not flat
    assert seen == set(HU_RANGES)
    # The body stays inside the field of view: the border is air.
    edge = torch.cat([ph.tissue[0], ph.tissue[-1], ph.tissue[:, 0], ph.tissue[:, -1]])
    assert (edge == Tissue.AIR).all()


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="dose"):
        PhantomDataset(4, dose=1.5)
    with pytest.raises(ValueError, match="dose"):
        PhantomDataset(4, dose=(0.5, 0.1))
    with pytest.raises(ValueError, match="labels"):
        PhantomDataset(4, labels="organ")
    with pytest.raises(ValueError, match="size"):
        generate_phantom(0, size=16)
    with pytest.raises(ValueError, match="contrast_hu"):
        LesionSpec(contrast_hu=(-5, 5))


def test_dataset_sample_format_and_doses():
    ds = PhantomDataset(4, size=64, seed=2, dose=0.25, labels="coarse")
    s = ds[0]
    assert s["low"].shape == s["normal"].shape == (1, 64, 64)
    assert s["low"].dtype == s["normal"].dtype == torch.float32
    ph = ds.phantom(0)
    assert torch.equal(s["target"]["boxes"], ph.boxes)
    coarse = {Tissue.LIVER: 4, Tissue.KIDNEY: 6, Tissue.SPLEEN: 2, Tissue.MUSCLE: 7}
    assert s["target"]["labels"].tolist() == [coarse[h] for h in ph.hosts]
    assert s["meta"]["id"] == "phantom-2-0" and s["meta"]["dose"] == 0.25
    assert s["meta"]["spacing"] == (6.0, 6.0) and s["meta"]["source"] == "phantom"
    # Both images are noisy versions of the phantom; the quarter dose is the noisier one.
    err_low = (s["low"][0] - ph.hu).std().item()
    err_normal = (s["normal"][0] - ph.hu).std().item()
    assert 0 < err_normal < err_low
    assert torch.equal(ds[0]["low"], s["low"])  # seeded: identical on every access
    clean = PhantomDataset(4, size=64, seed=2, normal_dose=None)[0]
    assert torch.equal(clean["normal"][0], ph.hu)
    ranged = PhantomDataset(4, size=64, seed=2, dose=(0.1, 0.5))
    doses = [ranged[i]["meta"]["dose"] for i in range(3)]
    assert all(0.1 <= d <= 0.5 for d in doses) and len(set(doses)) == 3


def test_dataloader_workers_give_the_same_batches():
    ds = PhantomDataset(4, size=64, seed=9)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert batches[1]["low"].shape == (2, 1, 64, 64) and len(batches[1]["target"]) == 2
    for i in range(4):
        b = batches[i // 2]
        assert torch.equal(b["low"][i % 2], ds[i]["low"])
        assert torch.equal(b["target"][i % 2]["boxes"], ds[i]["target"]["boxes"])


@pytest.mark.parametrize(("spec", "count"), [(LesionSpec(), 60), (LesionSpec((20, 30)), 20)])
def test_lesion_equivalent_diameters_stay_in_the_spec(spec, count):
    # Big lesions do not fit everywhere: late attempts shrink them, never below the minimum.
    # Equivalent diameter: of the disc with the mask's area (1.5-mm pixels at size 256).
    d0, d1 = spec.diameter_mm
    diameters = []
    for seed in range(count):
        ph = generate_phantom(seed, size=256, num_lesions=3, lesions=spec)
        areas = torch.bincount(ph.lesions.flatten().long(), minlength=len(ph.hosts) + 1)[1:]
        diameters += (2 * torch.sqrt(areas / torch.pi) * ph.spacing).tolist()
    assert len(diameters) >= 2 * count  # skipping is rare, not the rule
    assert d0 <= min(diameters) and max(diameters) <= d1
