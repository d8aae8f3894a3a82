import pytest
import torch

from lidplug.data import LesionDataset, MapImages, make_sample


class _Counting(LesionDataset):
    """Sample i: images filled with i, one box; counts how often samples are computed."""

    def __init__(self, n=3, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.n, self.offset, self.calls = n, offset, 0

    def __len__(self):
        return self.n

    def _make_sample(self, index):
        self.calls += 1
        image = torch.full((1, 4, 4), float(index) + self.offset)
        return make_sample(image, image + 1, [[0, 0, 2, 2]], [1],
                           {"id": f"s{index}", "spacing": (1.0, 1.0), "seed": None})

    def _config(self):
        return {"offset": self.offset}


def test_indexing():
    ds = _Counting()
    assert ds[-1]["meta"]["id"] == "s2"
    with pytest.raises(IndexError, match="-3 <= index < 3"):
        ds[3]
    with pytest.raises(TypeError, match="int"):
        ds[1.0]


def test_memory_cache_hands_out_copies():
    ds = _Counting(cache="memory", transform=lambda s: (s["low"].add_(100), s)[1])
    first = ds[1]
    assert first["low"].eq(101).all()  # the in-place transform changed its copy only
    assert ds[1]["low"].eq(101).all() and ds.calls == 1


def test_disk_cache_is_shared_and_keyed_by_config(tmp_path):
    ds = _Counting(cache=tmp_path)
    a = ds[2]
    again = _Counting(cache=tmp_path)  # another instance, e.g. another worker or run
    b = again[2]
    assert again.calls == 0 and torch.equal(a["low"], b["low"]) and b["meta"] == a["meta"]
    other = _Counting(cache=tmp_path, offset=0.5)  # other arguments: another cache folder
    assert other[2]["low"].eq(2.5).all() and other.calls == 1
    assert len(list(tmp_path.iterdir())) == 2 and not list(tmp_path.rglob("*.tmp"))


def test_transform_runs_after_the_cache(tmp_path):
    ds = _Counting(cache=tmp_path, transform=MapImages(lambda x: x * 2))
    assert ds[1]["low"].eq(2).all() and ds[1]["low"].eq(2).all()
    assert _Counting(cache=tmp_path)[1]["low"].eq(1).all()  # the cache holds HU


@pytest.mark.parametrize("damage", ["truncate", "empty", "junk"])
def test_a_damaged_cache_file_is_rebuilt(tmp_path, damage):
    """Regression: a truncated cache file failed the same way on every rerun."""
    first = _Counting(cache=tmp_path)
    expected = first[1]
    path = next(tmp_path.rglob("00000001.pt"))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "empty": b"",
                      "junk": b"not a sample"}[damage])
    again = _Counting(cache=tmp_path)
    with pytest.warns(RuntimeWarning, match="rebuilt"):
        sample = again[1]
    assert again.calls == 1 and torch.equal(sample["low"], expected["low"])
    assert _Counting(cache=tmp_path)[1]["meta"] == expected["meta"]  # the file was rewritten
