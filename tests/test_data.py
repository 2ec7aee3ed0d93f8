"""edgetl.data.dataset: class-folder scanning, the stable split, duplicates, and load_image on odd images.

No TensorFlow: scanning only hashes files, and load_image is Pillow + numpy.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FLOWERS
from PIL import Image

from edgetl.data.dataset import (
    IMAGE_EXTENSIONS,
    MIN_IMAGES_PER_CLASS,
    SPLITS,
    DatasetError,
    SplitConfig,
    scan_dataset,
    split_for,
)
from edgetl.runtime.images import load_image


def write_image(path: Path, seed: int, size: tuple[int, int] = (12, 10), fmt: str | None = None) -> Path:
    """A small image whose bytes are unique to `seed` (so no two test files are duplicates)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt or _format_for(path))
    return path


def _format_for(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF"}[path.suffix.lower()]


def make_dataset(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    n = seed * 10_000
    for label, count in per_class.items():
        for i in range(count):
            n += 1
            write_image(root / label / f"{label}_{i:03d}.png", n)
    return root


def retrain_py_split(file_name: str, validation_percentage: float, testing_percentage: float) -> str:
    """TensorFlow's retrain.py `which_set`, transcribed: the split edgetl promises to reproduce."""
    max_num_images_per_class = 2**27 - 1
    hash_name = re.sub(r"_nohash_.*$", "", Path(file_name).name)
    hash_name_hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = (int(hash_name_hashed, 16) % (max_num_images_per_class + 1)) * (100.0 / max_num_images_per_class)
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < (testing_percentage + validation_percentage):
        return "testing"
    return "training"


def splits_by_path(dataset) -> dict[Path, str]:
    return {r.path: r.split for r in dataset.records}


# ---------------------------------------------------------------------------------------------------------
# layout


def test_classes_are_sub_folders_and_root_files_are_ignored_with_a_warning(tmp_path):
    root = make_dataset(tmp_path / "ds", {"cats": 20, "dogs": 22})
    (root / "LICENSE.txt").write_text("not a class")
    write_image(root / "stray.jpg", 999)  # an image at the root is not a class either
    ds = scan_dataset(root)
    assert ds.classes == ["cats", "dogs"]
    assert len(ds.records) == 42
    assert {r.label for r in ds.records} == {"cats", "dogs"}
    assert all(r.label_index == ds.classes.index(r.label) for r in ds.records)
    assert all(r.path.parent.name == r.label for r in ds.records)
    assert not any(r.path.parent == root for r in ds.records)
    for name in ("LICENSE.txt", "stray.jpg"):
        assert any(name in w and "root" in w for w in ds.warnings), ds.warnings


def test_images_in_nested_folders_belong_to_the_top_class_folder(tmp_path):
    root = make_dataset(tmp_path / "ds", {"cats": 20, "dogs": 20})
    write_image(root / "cats" / "2019" / "summer" / "deep.png", 777)
    ds = scan_dataset(root)
    deep = [r for r in ds.records if r.path.name == "deep.png"]
    assert len(deep) == 1 and deep[0].label == "cats"
    assert ds.classes == ["cats", "dogs"]


def test_extensions_are_case_insensitive_and_other_files_are_skipped(tmp_path):
    root = make_dataset(tmp_path / "ds", {"a": 20, "b": 20})
    names = ["upper.JPG", "mixed.Jpeg", "lower.jpeg", "pic.png", "PIC2.PNG", "bitmap.bmp", "anim.gif", "Anim2.GIF"]
    for i, name in enumerate(names):
        write_image(root / "a" / name, 500 + i)
    (root / "a" / "notes.txt").write_text("hello")
    (root / "a" / "photo.tiff").write_bytes(b"II*\0")
    ds = scan_dataset(root)
    found = {r.path.name for r in ds.records if r.label == "a"}
    assert set(names) <= found
    assert "notes.txt" not in found and "photo.tiff" not in found
    assert {p.name for p, _ in ds.skipped} == {"notes.txt", "photo.tiff"}
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
    # and every one of those decodes
    for name in names:
        assert load_image(root / "a" / name, 16).shape == (16, 16, 3)


def test_hidden_files_and_folders_are_not_data(tmp_path):
    root = make_dataset(tmp_path / "ds", {"a": 20, "b": 20})
    write_image(root / ".thumbnails" / "x.png", 1234)
    write_image(root / "a" / "._x.png", 1235)
    ds = scan_dataset(root)
    assert ds.classes == ["a", "b"]
    assert not any(r.path.name.startswith(".") for r in ds.records)


def test_fewer_than_twenty_images_warns(tmp_path):
    root = make_dataset(tmp_path / "ds", {"few": 7, "many": MIN_IMAGES_PER_CLASS})
    ds = scan_dataset(root, SplitConfig(20, 20))
    few = [w for w in ds.warnings if "'few'" in w]
    assert len(few) == 1 and "7" in few[0] and str(MIN_IMAGES_PER_CLASS) in few[0]
    assert not any("'many'" in w for w in ds.warnings)


# ---------------------------------------------------------------------------------------------------------
# fewer than two classes


def test_zero_classes_is_a_dataset_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"at least two class.*found 0"):
        scan_dataset(tmp_path / "empty")
    # files at the root are not classes either
    only_files = tmp_path / "only_files"
    write_image(only_files / "a.png", 1)
    write_image(only_files / "b.png", 2)
    with pytest.raises(DatasetError, match=r"found 0"):
        scan_dataset(only_files)


def test_one_class_is_a_dataset_error_naming_it(tmp_path):
    root = make_dataset(tmp_path / "ds", {"roses": 25})
    with pytest.raises(DatasetError, match=r"at least two class.*found 1 \(roses\)"):
        scan_dataset(root)


def test_empty_class_folder_does_not_count_and_is_named(tmp_path):
    root = make_dataset(tmp_path / "ds", {"roses": 25})
    (root / "tulips").mkdir()
    (root / "daisy").mkdir()
    (root / "daisy" / "readme.txt").write_text("no photos here")  # a folder with no *images* is empty too
    with pytest.raises(DatasetError) as info:
        scan_dataset(root)
    message = str(info.value)
    assert "found 1 (roses)" in message
    assert "tulips" in message and "daisy" in message, message
    assert "\n" not in message


def test_an_empty_class_folder_next_to_two_real_ones_is_ignored_with_a_warning(tmp_path):
    root = make_dataset(tmp_path / "ds", {"roses": 20, "tulips": 20})
    (root / "daisy").mkdir()
    ds = scan_dataset(root)
    assert ds.classes == ["roses", "tulips"]
    assert any("daisy" in w and "no images" in w for w in ds.warnings)


def test_missing_folder_and_bad_percentages_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nope")
    root = make_dataset(tmp_path / "ds", {"a": 20, "b": 20})
    for val, test in [(-1, 10), (10, 100), (60, 40), (50, 50.0)]:
        with pytest.raises(DatasetError, match="percentage"):
            scan_dataset(root, SplitConfig(val, test))


# ---------------------------------------------------------------------------------------------------------
# the split


def test_split_is_retrain_py_hash_of_the_file_name():
    names = [f"img_{i}.jpg" for i in range(300)] + ["15922772266_1167a06620.jpg", "x_nohash_3.png"]
    for name in names:
        assert split_for(name, 10, 10) == retrain_py_split(name, 10, 10), name
        assert split_for(name, 25, 30) == retrain_py_split(name, 25, 30), name
    seen = {split_for(n, 10, 10) for n in names}
    assert seen == set(SPLITS)


def test_split_depends_on_the_name_only_not_content_or_folder(tmp_path):
    a = make_dataset(tmp_path / "a", {"x": 30, "y": 30}, seed=1)
    b = make_dataset(tmp_path / "b", {"x": 30, "y": 30}, seed=2)  # same names, different pixels
    sa, sb = scan_dataset(a, SplitConfig(20, 20)), scan_dataset(b, SplitConfig(20, 20))
    assert {(r.label, r.path.name): r.split for r in sa.records} == {
        (r.label, r.path.name): r.split for r in sb.records
    }
    assert [r.content_hash for r in sa.records] != [r.content_hash for r in sb.records]
    # repeatable
    assert splits_by_path(scan_dataset(a, SplitConfig(20, 20))) == splits_by_path(sa)


def test_nohash_suffix_is_ignored():
    # Pick a base name whose nohash variants would otherwise scatter.
    for base in ("speaker1", "bird", "IMG_0042"):
        variants = [f"{base}_nohash_{i}.jpg" for i in range(40)] + [f"{base}_nohash_.png", f"{base}_nohash_x_y.jpeg"]
        assert len({split_for(v, 30, 30) for v in variants}) == 1
        assert split_for(variants[0], 30, 30) == retrain_py_split(base, 30, 30)
    # without the marker the same suffixes do scatter (the test above could not pass by accident)
    assert len({split_for(f"bird_{i}.jpg", 30, 30) for i in range(40)}) == 3


def test_nohash_siblings_land_in_the_same_split_in_a_scan(tmp_path):
    root = make_dataset(tmp_path / "ds", {"a": 20, "b": 20})
    for i in range(12):
        write_image(root / "a" / f"person7_nohash_{i}.png", 3000 + i)
    ds = scan_dataset(root, SplitConfig(30, 30))
    assert len({r.split for r in ds.records if r.path.name.startswith("person7_nohash_")}) == 1


def test_adding_images_never_moves_an_existing_one(tmp_path):
    root = make_dataset(tmp_path / "ds", {"a": 25, "b": 25})
    before = splits_by_path(scan_dataset(root, SplitConfig(15, 15)))
    for i in range(60):
        write_image(root / ("a" if i % 2 else "b") / f"new_{i}.png", 9000 + i)
    write_image(root / "c" / "brand_new_class_0.png", 8000)
    for i in range(1, 20):
        write_image(root / "c" / f"brand_new_class_{i}.png", 8000 + i)
    after_ds = scan_dataset(root, SplitConfig(15, 15))
    after = splits_by_path(after_ds)
    assert len(after) == len(before) + 80
    assert {p: after[p] for p in before} == before
    # label indices change with a new class, but which set an image is in does not
    assert after_ds.classes == ["a", "b", "c"]


def test_split_proportions_on_the_real_flowers_folder():
    ds = scan_dataset(FLOWERS, SplitConfig(10, 10))
    n = len(ds.records)
    assert n == 3670
    assert ds.classes == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    for split, share in (("validation", 0.10), ("testing", 0.10), ("training", 0.80)):
        assert abs(len(ds.split(split)) / n - share) < 0.02, (split, len(ds.split(split)))
    assert any("LICENSE.txt" in w for w in ds.warnings)
    with pytest.raises(ValueError):
        ds.split("train")


# ---------------------------------------------------------------------------------------------------------
# duplicates


def test_identical_files_under_two_labels_on_real_flowers_are_kept_out_of_eval():
    ds = scan_dataset(FLOWERS, SplitConfig(10, 10))
    name = "15922772266_1167a06620.jpg"
    copies = [r for r in ds.records if r.path.name == name]
    assert sorted(r.label for r in copies) == ["roses", "tulips"]
    assert len({r.content_hash for r in copies}) == 1
    assert all(r.split == "training" for r in copies)
    warned = [w for w in ds.warnings if "identical" in w]
    assert len(warned) == 1
    assert str(FLOWERS / "roses" / name) in warned[0] and str(FLOWERS / "tulips" / name) in warned[0]
    # Every hash that appears under two labels is training-only.
    labels_by_hash: dict[str, set[str]] = {}
    for r in ds.records:
        labels_by_hash.setdefault(r.content_hash, set()).add(r.label)
    for r in ds.records:
        if len(labels_by_hash[r.content_hash]) > 1:
            assert r.split == "training"


def test_identical_files_under_two_labels_leave_validation_and_test(tmp_path):
    root = make_dataset(tmp_path / "ds", {"roses": 20, "tulips": 20})
    # names that the hash alone would put in validation and testing
    val_name = next(f"v{i}.png" for i in range(1000) if split_for(f"v{i}.png", 20, 20) == "validation")
    test_name = next(f"t{i}.png" for i in range(1000) if split_for(f"t{i}.png", 20, 20) == "testing")
    write_image(root / "roses" / val_name, 4242)
    shutil.copy(root / "roses" / val_name, root / "tulips" / val_name)
    write_image(root / "roses" / test_name, 4343)
    shutil.copy(root / "roses" / test_name, root / "tulips" / "renamed_copy.png")  # same bytes, other name
    ds = scan_dataset(root, SplitConfig(20, 20))
    for name in (val_name, test_name, "renamed_copy.png"):
        recs = [r for r in ds.records if r.path.name == name]
        assert recs and all(r.split == "training" for r in recs), name
    assert len([r for r in ds.records if r.path.name == val_name]) == 2  # both kept, not dropped
    assert sum("identical" in w for w in ds.warnings) == 2


def test_identical_files_within_one_class_share_a_split(tmp_path):
    root = make_dataset(tmp_path / "ds", {"a": 20, "b": 20})
    names = [f"dup{i}.png" for i in range(200)]
    first_test = next(n for n in names if split_for(n, 20, 20) == "testing")
    first_train = next(n for n in names if split_for(n, 20, 20) == "training")
    write_image(root / "a" / first_test, 5555)
    shutil.copy(root / "a" / first_test, root / "a" / first_train)
    ds = scan_dataset(root, SplitConfig(20, 20))
    splits = {r.split for r in ds.records if r.path.name in (first_test, first_train)}
    assert len(splits) == 1  # a test image is never also trained on
    assert not any("identical" in w for w in ds.warnings)


# ---------------------------------------------------------------------------------------------------------
# load_image


def _two_colour(h: int = 40, w: int = 60) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return arr


@pytest.fixture
def odd_images(tmp_path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    rgb = _two_colour()
    out["L"] = tmp_path / "gray.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 60, dtype=np.uint8), (40, 1)), "L").save(out["L"])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:, :30, 3] = 0  # left half fully transparent
    out["RGBA"] = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(out["RGBA"])
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out["P"] = tmp_path / "palette.png"
    pal.save(out["P"], transparency=pal.getpixel((0, 0)))  # the red half's index is transparent
    out["P_gif"] = tmp_path / "palette.gif"
    pal.save(out["P_gif"], transparency=pal.getpixel((0, 0)))
    out["CMYK"] = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(out["CMYK"], quality=95)
    out["I;16"] = tmp_path / "deep.png"
    Image.fromarray(np.tile(np.linspace(0, 65535, 60).astype(np.uint16), (40, 1))).save(out["I;16"])
    out["EXIF"] = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    Image.fromarray(rgb).save(out["EXIF"], exif=exif, quality=95)
    return out


def test_odd_image_modes_decode_to_uint8_rgb(odd_images):
    expected_modes = {
        "L": "L",
        "RGBA": "RGBA",
        "P": "P",
        "P_gif": "P",
        "CMYK": "CMYK",
        "I;16": ("I;16", "I"),
        "EXIF": "RGB",
    }
    for key, path in odd_images.items():
        with Image.open(path) as im:
            assert im.mode in np.atleast_1d(expected_modes[key]), (key, im.mode)  # the file really is that mode
        for size in (32, 96):
            arr = load_image(path, size)
            assert arr.dtype == np.uint8, key
            assert arr.shape == (size, size, 3), key


def test_odd_image_modes_decode_to_the_right_pixels(odd_images):
    s = 32
    gray = load_image(odd_images["L"], s)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert gray[s // 2, 0, 0] < 20 and gray[s // 2, -1, 0] > 235
    for key in ("RGBA", "P", "P_gif"):  # transparency composited on white, opaque part unchanged
        arr = load_image(odd_images[key], s).astype(int)
        assert (abs(arr[s // 2, 2] - (255, 255, 255)) <= 3).all(), key
        assert (abs(arr[s // 2, -3] - (0, 0, 255)) <= 3).all(), key
    cmyk = load_image(odd_images["CMYK"], s).astype(int)
    assert (abs(cmyk[s // 2, 2] - (255, 0, 0)) <= 12).all(), cmyk[s // 2, 2]
    assert (abs(cmyk[s // 2, -3] - (0, 0, 255)) <= 12).all(), cmyk[s // 2, -3]
    deep = load_image(odd_images["I;16"], s).astype(int)  # 16-bit range scaled to 0..255, not clipped
    assert deep[s // 2, 0, 0] < 20 and deep[s // 2, -1, 0] > 235
    assert 100 < deep[s // 2, s // 2, 0] < 155
    rot = load_image(odd_images["EXIF"], s).astype(int)
    # red was on the left; rotated 90 degrees clockwise it is on top
    assert (abs(rot[2, s // 2] - (255, 0, 0)) <= 12).all(), rot[2, s // 2]
    assert (abs(rot[-3, s // 2] - (0, 0, 255)) <= 12).all(), rot[-3, s // 2]


def test_load_image_resizes_the_whole_image_without_cropping(tmp_path):
    arr = np.zeros((30, 90, 3), np.uint8)
    arr[:, :10] = 255  # a white band at the far left: a centre crop would lose it
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 30)
    assert out[:, 0].min() > 200 and out[:, -1].max() < 10


def test_undecodable_files_raise_for_the_caller_to_report(tmp_path):
    (tmp_path / "text.jpg").write_text("this is not a JPEG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    good = write_image(tmp_path / "good.jpg", 1, size=(64, 64))
    (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name in ("text.jpg", "empty.jpg", "truncated.jpg"):
        with pytest.raises((OSError, ValueError)):
            load_image(tmp_path / name, 16)
