"""Class-folder datasets: scanning, the deterministic split, duplicate handling, image decoding.

TensorFlow-free on purpose: `load_image` is the single preprocessing used for training features,
calibration, benchmarks and on the device, so it must import with only numpy and Pillow.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgetl.io.files import DiskError, sha256_file
from edgetl.params import Interval, validate
from edgetl.runtime.images import load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
MIN_IMAGES_PER_CLASS = 20
SPLITS = ("training", "validation", "testing")
# retrain.py's constant: percentages are taken modulo this many "buckets".
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1


class DatasetError(ValueError):
    """The image folder cannot be used as a class-folder dataset."""


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: str
    label_index: int
    content_hash: str  # sha256 of the file bytes: cache key and duplicate detection
    split: str  # one of SPLITS


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    records: list[ImageRecord]
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why)

    def split(self, name: str) -> list[ImageRecord]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [r for r in self.records if r.split == name]

    def without(self, bad: dict[Path, str]) -> Dataset:
        """The same dataset minus files that failed to decode (recorded as skipped)."""
        if not bad:
            return self
        kept = [r for r in self.records if r.path not in bad]
        return Dataset(self.root, self.classes, kept, list(self.warnings), self.skipped + list(bad.items()))

    def summary(self) -> str:
        counts = {s: len(self.split(s)) for s in SPLITS}
        text = (
            f"{len(self.records)} images in {len(self.classes)} classes "
            f"(train {counts['training']}, validation {counts['validation']}, test {counts['testing']})"
        )
        if self.skipped:
            text += f"; {len(self.skipped)} file(s) skipped"
        return text


def split_for(file_name: str, validation_percentage: float, testing_percentage: float) -> str:
    """retrain.py's stable split: a hash of the file name, ignoring anything from '_nohash_' on.

    Depending only on the name means an image never changes set when others are added.
    """
    hash_name = re.sub(r"_nohash_.*$", "", file_name)
    digest = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage = (int(digest, 16) % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / MAX_NUM_IMAGES_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"


@dataclass(frozen=True)
class SplitConfig:
    """Which share of each class goes to validation and test (retrain.py's stable, name-hashed split)."""

    validation_percentage: float = 10.0
    testing_percentage: float = 10.0

    CONSTRAINTS: ClassVar[dict] = {
        "validation_percentage": Interval(float, 0, 100, "left"),
        "testing_percentage": Interval(float, 0, 100, "left"),
    }

    def __post_init__(self) -> None:
        validate(self, DatasetError)
        v, t = self.validation_percentage, self.testing_percentage
        if v + t >= 100:
            raise DatasetError(
                f"validation ({v}) and testing ({t}) percentages must be in [0, 100) and leave room for training"
            )


def scan_dataset(image_dir: str | Path, split: SplitConfig = SplitConfig()) -> Dataset:
    """Index a class-folder dataset: one sub-folder per class, images inside (searched recursively).

    Long because it is one pass in order (folders, files, hashes, splits, duplicate rules), each step
    feeding the next; split into pieces it would pass half a dozen dicts around.
    """
    root = Path(image_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image directory not found: {root}")
    validation_percentage, testing_percentage = split.validation_percentage, split.testing_percentage
    notes: list[str] = []
    skipped: list[tuple[Path, str]] = []
    for entry in sorted(root.iterdir()):
        if entry.is_file():
            notes.append(f"ignoring {entry}: files at the dataset root are not classes")

    class_files: dict[str, list[Path]] = {}
    empty_dirs: list[str] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = []
        for f in sorted(class_dir.rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
            else:
                skipped.append((f, "not an image file extension"))
        if not files:
            notes.append(f"ignoring class folder {class_dir}: no images in it")
            empty_dirs.append(class_dir.name)
            continue
        if len(files) < MIN_IMAGES_PER_CLASS:
            notes.append(
                f"class {class_dir.name!r} has only {len(files)} images "
                f"(fewer than {MIN_IMAGES_PER_CLASS}); accuracy on it will be unreliable"
            )
        class_files[class_dir.name] = files

    if len(class_files) < 2:
        found = ", ".join(class_files) or "none"
        empty = ""
        if empty_dirs:
            empty = f"; folders with no images ({'/'.join(IMAGE_EXTENSIONS)}): {', '.join(empty_dirs)}"
        raise DatasetError(
            f"{root} needs at least two class sub-folders with images; found {len(class_files)} ({found}){empty}"
        )
    classes = sorted(class_files)

    hashes: dict[Path, str] = {}
    labels_by_hash: dict[str, set[str]] = defaultdict(set)
    for label, files in class_files.items():
        for f in files:
            try:
                hashes[f] = sha256_file(f)
            except OSError as e:
                skipped.append((f, f"unreadable: {e}"))
                continue
            labels_by_hash[hashes[f]].add(label)

    conflicted = {h for h, labels in labels_by_hash.items() if len(labels) > 1}
    first_split_by_hash: dict[str, str] = {}
    records = []
    for label in classes:
        for f in class_files[label]:
            if f not in hashes:
                continue
            h = hashes[f]
            split = split_for(f.name, validation_percentage, testing_percentage)
            if h in conflicted:
                # The same bytes under two labels can't be scored fairly: train only.
                split = "training"
            # Copies within one class follow the first copy, so a test image is never also trained on.
            split = first_split_by_hash.setdefault(h, split)
            records.append(ImageRecord(f, label, classes.index(label), h, split))
    for h in sorted(conflicted):
        same = sorted(str(r.path) for r in records if r.content_hash == h)
        notes.append(f"identical files under different labels, kept out of validation/test: {', '.join(same)}")

    dataset = Dataset(root, classes, records, notes, skipped)
    for s in ("training", "testing"):
        if not dataset.split(s):
            raise DatasetError(f"{root}: the {s} split is empty; add images or change the percentages")
    return dataset


def decode_images(records: list[ImageRecord], size: int, load=None) -> tuple[np.ndarray, list[ImageRecord], list[str]]:
    """`load_image` for each record: (uint8 array (N, size, size, 3), the records that decoded, failures).

    A file that cannot be decoded is one failure line naming it, never an exception. `load` (with
    `load_image`'s signature) is where the pixels come from: a sweep's `edgetl.data.pixels` store, decoded once.
    """
    load = load or load_image
    images, kept, failed = [], [], []
    for r in records:
        try:
            images.append(load(r.path, size))
            kept.append(r)
        except DiskError:
            raise  # the sweep's decoded-pixel store could not be written: not this file's fault
        except Exception as e:  # any decoder failure is one bad file
            failed.append(f"{r.path}: {type(e).__name__}: {e}")
    array = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return array, kept, failed
