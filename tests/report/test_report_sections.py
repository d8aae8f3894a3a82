"""Section rules that must not look at results: which lesions, how large a crop, which scale."""

import numpy as np
import pytest

from lidplug.report.lesions import crop_size, pick_evenly
from lidplug.report.maps import nice_limit


def test_crop_size_grows_with_large_lesions_up_to_the_slice():
    assert crop_size(3.0, (64, 64)) == 24
    assert crop_size(16.0, (96, 96)) == 40
    assert crop_size(50.0, (64, 64)) == 64


def test_pick_evenly_spans_smallest_to_largest_and_ignores_results():
    sizes = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert pick_evenly(sizes, 3) == [1, 2, 0]          # smallest, middle, largest
    assert pick_evenly(sizes, 10) == [1, 3, 2, 4, 0]   # fewer lesions than asked: all, by size
    assert pick_evenly([2.0, 2.0, 1.0], 2) == [2, 1]   # ties keep their order
    with pytest.raises(ValueError, match="k >= 1"):
        pick_evenly(sizes, 0)


def test_nice_limit_rounds_up_within_floor_and_cap():
    assert nice_limit(np.array([0.1, -0.2])) == 5.0
    assert nice_limit(np.full(10, -37.0)) == 50.0
    assert nice_limit(np.full(10, 180.0)) == 100.0
    assert nice_limit(np.array([np.nan])) == 5.0
