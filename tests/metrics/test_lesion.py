"""Lesion regions (mask, ring, box) and lesion metrics on hand-built maps and on phantoms."""

import math
import warnings

import numpy as np
import pytest
import torch

from lidplug.data.phantom import generate_phantom
from lidplug.metrics import LesionRegion, lesion_metrics, lesion_regions


def square_map(size=32, at=((10, 10),), side=3):
    """[1, H, W] map with square lesions of ``side`` pixels, labelled 1, 2, ... at (row, col)."""
    m = torch.zeros(1, size, size, dtype=torch.int16)
    for k, (r, c) in enumerate(at, start=1):
        m[0, r : r + side, c : c + side] = k
    return m


def flat_images(lesion_map, contrast=20.0, background=40.0):
    """Reference image [N, 1, H, W]: flat background with flat lesions of ``contrast``."""
    return (background + contrast * (lesion_map > 0).double())[:, None]


def test_ring_is_a_chessboard_annulus():
    (r,) = lesion_regions(square_map(), gap=1, width=3)
    assert (r.image, r.label) == (0, 1)
    assert r.mask.dtype == torch.bool and r.ring.dtype == torch.bool
    assert int(r.mask.sum()) == 9
    # Chessboard distance 2..4 from a 3x3 square: an 11x11 square minus a 5x5 one.
    assert int(r.ring.sum()) == 11 * 11 - 5 * 5
    assert not r.ring[9, 9] and r.ring[8, 8] and r.ring[6, 6] and not r.ring[5, 5]
    assert not (r.ring & r.mask).any()
    torch.testing.assert_close(r.box, torch.tensor([10.0, 10.0, 13.0, 13.0]))


def test_ring_avoids_other_lesions_and_stays_allowed():
    lm = square_map(at=((10, 10), (10, 17)))  # 4 pixels apart: rings would overlap
    r1, r2 = lesion_regions(lm, gap=1, width=3)
    other = lm[0] == 2
    near_other = torch.nn.functional.max_pool2d(other[None, None].float(), 3, 1, 1)[0, 0] > 0
    assert not (r1.ring & near_other).any() and not (r2.ring & (lm[0] == 1)).any()
    allowed = torch.zeros(1, 32, 32, dtype=torch.bool)
    allowed[0, :, :12] = True
    (r,) = lesion_regions(square_map(), allowed, gap=1, width=3)[:1]
    assert r.ring.any() and not r.ring[:, 12:].any()


def test_ring_stays_in_the_host_organ_away_from_its_border():
    lm = square_map()
    organs = torch.ones(1, 32, 32, dtype=torch.uint8)
    organs[0, :, 14:] = 2  # the lesion (columns 10..12) sits in organ 1, near organ 2
    (r,) = lesion_regions(lm, organ_map=organs, gap=1, width=3)
    # Organ 1 minus the column next to organ 2 (the gap from its border): columns < 13.
    cols = torch.nonzero(r.ring)[:, 1]
    # Rows 6..16 x columns 6..12, minus the lesion and its gap (rows 9..13 x columns 9..12).
    assert cols.max() == 12 and int(r.ring.sum()) == 11 * 7 - 5 * 4


def test_lesions_without_a_ring_are_left_out_with_a_warning():
    lm = square_map(at=((10, 10), (20, 20)))
    allowed = torch.zeros(1, 32, 32, dtype=torch.bool)
    allowed[0, 16:, 16:] = True
    with pytest.warns(RuntimeWarning, match=r"left out 1 lesion.*\(0, 1\)"):
        regions = lesion_regions(lm, allowed)
    assert [r.label for r in regions] == [2]


def test_contrast_recovery_known_values():
    lm = square_map(at=((10, 10), (20, 20)))
    regions = lesion_regions(lm)
    ref = flat_images(lm)
    lesion = (lm > 0)[:, None]
    cases = {
        "reference": (ref, 1.0),
        "half contrast": (ref - 10.0 * lesion, 0.5),
        "blurred away": (torch.full_like(ref, 40.0), 0.0),
        "offset": (ref + 15.0, 1.0),
    }
    for name, (image, expected) in cases.items():
        m = lesion_metrics(image, ref, regions)
        np.testing.assert_allclose(m["contrast_recovery"], expected, atol=1e-12, err_msg=name)
    m = lesion_metrics(ref + 15.0, ref, regions)
    np.testing.assert_allclose(m["lesion_rmse_hu"], 15.0)
    np.testing.assert_allclose(m["contrast_hu"], 20.0)
    np.testing.assert_allclose(m["diameter_px"], 2 * math.sqrt(9 / math.pi))
    assert m["image"].tolist() == [0, 0] and m["label"].tolist() == [1, 2]
    assert m["contrast_recovery"].dtype == np.float64 and m["image"].dtype == np.int64
    assert np.isinf(lesion_metrics(ref, ref, regions)["cnr"]).all()  # flat ring


def test_cnr_and_lesion_rmse_match_numpy():
    lm = square_map(at=((0, 0), (14, 14)))  # the first lesion's box is clipped at the corner
    regions = lesion_regions(lm)
    ref = flat_images(lm)
    image = ref + 5.0 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0),
                                    dtype=torch.float64)
    m = lesion_metrics(image, ref, regions, box_margin=2)
    x, y = image[0, 0].numpy(), ref[0, 0].numpy()
    for i, r in enumerate(regions):
        mask, ring = r.mask.numpy(), r.ring.numpy()
        cnr = abs(x[mask].mean() - x[ring].mean()) / x[ring].std(ddof=1)
        assert m["cnr"][i] == pytest.approx(cnr)
    # Boxes (0, 0, 3, 3) and (14, 14, 17, 17) dilated by 2: rows/cols 0..4 and 12..18.
    err = (x - y) ** 2
    expected = [np.sqrt(err[:5, :5].mean()), np.sqrt(err[12:19, 12:19].mean())]
    np.testing.assert_allclose(m["lesion_rmse_hu"], expected)


def test_phantom_regions_boxes_and_rings():
    phantoms = [generate_phantom(s, size=96, num_lesions=3) for s in range(4)]
    lm = torch.stack([p.lesions for p in phantoms])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a lesion filling its organ is dropped
        regions = lesion_regions(lm, organ_map=torch.stack([p.tissue for p in phantoms]))
    assert regions
    for r in regions:
        p = phantoms[r.image]
        torch.testing.assert_close(r.box, p.boxes[r.label - 1])  # the phantom's tight boxes
        host = p.tissue[r.mask].mode().values
        assert (p.tissue[r.ring] == host).all()
    ref = torch.stack([p.hu for p in phantoms])[:, None]
    np.testing.assert_allclose(lesion_metrics(ref, ref, regions)["contrast_recovery"], 1.0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: lesion_regions(torch.zeros(1, 8, 8)), TypeError, "integer Tensor"),
        (lambda: lesion_regions(torch.zeros(8, 8, dtype=torch.int64)), ValueError, r"\[N, H, W\]"),
        (lambda: lesion_regions(-torch.ones(1, 8, 8, dtype=torch.int64)), ValueError, ">= 0"),
        (lambda: lesion_regions(square_map(), torch.ones(1, 32, 31, dtype=torch.bool)),
         ValueError, "allowed of lesion_map's shape"),
        (lambda: lesion_regions(square_map(), torch.ones(1, 32, 32)), TypeError, "bool Tensor"),
        (lambda: lesion_regions(square_map(), width=0), ValueError, "width >= 1"),
        (lambda: lesion_metrics(torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 32, 32),
                                lesion_regions(square_map()), box_margin=-1),
         ValueError, "box_margin >= 0"),
        (lambda: lesion_metrics(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16),
                                lesion_regions(square_map())), ValueError, "regions of 1 images"),
        (lambda: lesion_metrics(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32),
                                [LesionRegion(0, 1, torch.ones(32, 32, dtype=torch.bool),
                                              torch.zeros(32, 32, dtype=torch.bool),
                                              torch.zeros(4))]),
         ValueError, "ring of >= 2 pixels"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
