"""edgetl.data.pixels: each photo decoded once, every resolution the same pixels `load_image` gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FLOWERS, copy_subset

from edgetl.data.dataset import scan_dataset
from edgetl.data.pixels import INDEX, LazyPixels, build_store, open_store
from edgetl.runtime.images import load_image


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = copy_subset(FLOWERS, tmp_path_factory.mktemp("px") / "flowers", ["daisy", "roses"], 20)
    (root / "roses" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "daisy" / "grey.png").write_bytes(b"")  # replaced below by a real greyscale PNG
    from PIL import Image

    Image.fromarray(np.arange(50 * 70, dtype=np.uint8).reshape(50, 70) % 251, "L").save(root / "daisy" / "grey.png")
    return scan_dataset(root)


def test_store_gives_load_image_pixels_at_every_resolution(dataset, tmp_path):
    store = build_store(tmp_path / "px", dataset.records, [96, 64])
    assert store.resolutions == (64, 96)
    for r in dataset.records:
        if r.path.name == "broken.jpg":
            continue
        for size in (64, 96, 80):  # 80 is not in the store: decoded as usual
            assert np.array_equal(store.load(r.path, size), load_image(r.path, size)), (r.path, size)


def test_undecodable_file_raises_like_load_image(dataset, tmp_path):
    store = build_store(tmp_path / "px", dataset.records, [64])
    broken = next(r.path for r in dataset.records if r.path.name == "broken.jpg")
    with pytest.raises(ValueError, match="broken.jpg|cannot identify|Error"):
        store.load(broken, 64)
    assert str(broken) in store.failed


def test_finished_store_is_reused_and_a_changed_dataset_rebuilds(dataset, tmp_path):
    directory = tmp_path / "px"
    build_store(directory, dataset.records, [64])
    index = json.loads((directory / INDEX).read_text())
    assert open_store(directory, dataset.records, [64]) is not None
    assert open_store(directory, dataset.records, [96]) is None  # a resolution it does not hold
    assert open_store(directory, dataset.records[1:], [64]) is None  # other records
    (directory / "r64.u8").write_bytes(b"\0" * 10)  # truncated: not reused
    assert open_store(directory, dataset.records, [64]) is None
    rebuilt = build_store(directory, dataset.records, [64])
    assert rebuilt.seconds > 0 and json.loads((directory / INDEX).read_text())["paths"] == index["paths"]


def test_unfinished_store_without_index_is_not_reused(dataset, tmp_path):
    directory = tmp_path / "px"
    build_store(directory, dataset.records, [64])
    (directory / INDEX).unlink()  # as a kill before the index lands leaves it
    assert open_store(directory, dataset.records, [64]) is None


def test_lazy_pixels_decode_on_first_use_and_remove(dataset, tmp_path):
    lazy = LazyPixels(tmp_path / "px", dataset.records, [64, 96])
    assert not (tmp_path / "px").exists()  # nothing asked for yet: nothing decoded
    first = dataset.records[0]
    assert np.array_equal(lazy(first.path, 96), load_image(first.path, 96))
    assert sorted(p.name for p in (tmp_path / "px").iterdir()) == [INDEX, "r64.u8", "r96.u8"]
    lazy.remove()
    assert not (tmp_path / "px").exists()


def test_lazy_pixels_asked_from_many_threads_at_once_build_one_store(dataset, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    lazy = LazyPixels(tmp_path / "px", dataset.records, [64])
    good = [r for r in dataset.records if r.path.name != "broken.jpg"]
    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(lambda r: lazy(r.path, 64), good))
    for r, image in zip(good, images):
        assert np.array_equal(image, load_image(r.path, 64)), r.path
