"""Class-folder datasets: scanning, the deterministic split, duplicate handling, image decoding.

TensorFlow-free on purpose: `load_image` is the single preprocessing used for training features,
calibration, benchmarks and on the device, so it must import with only numpy and Pillow.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgetl.io.files import DiskError, sha256_file
from edgetl.io.text import has_hidden, visible
from edgetl.params import Interval, validate
from edgetl.runtime.images import load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
MIN_IMAGES_PER_CLASS = 20
# Past this many small classes, one note lists them instead of one note each (a folder of thousands).
MAX_CLASS_NOTES = 10
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

    def messages(self, limit: int = 20) -> list[str]:
        """The scan's warnings, then its skipped files (at most `limit`, then how many more), printable."""
        lines = [f"warning: {visible(note)}" for note in self.warnings]
        lines += [f"warning: skipping {visible(path)}: {visible(why)}" for path, why in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"warning: ... and {len(self.skipped) - limit} more skipped file(s) (run.json lists them)")
        return lines

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


def _kind(entry: Path | os.DirEntry) -> tuple[str | None, int]:
    """(None for a regular file (following symlinks), else what it is; its size). Never opens the file: a
    FIFO's open() blocks until someone writes to it."""
    try:
        st = entry.stat()
    except OSError as e:  # a dangling symlink, a symlink loop (ELOOP), no permission
        return f"cannot be read ({e.strerror or type(e).__name__})", 0
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None, st.st_size
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what, 0
    return "a device node" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file", 0


def _walk(folder: Path, skipped: list[tuple[Path, str]]) -> list[tuple[tuple[str, ...], os.DirEntry]]:
    """Every entry under `folder` except the real folders, which are entered (symlinked ones are not: no
    loops), keyed by its path's parts: the order of sorted(Path.rglob(...)), without the Path objects that make
    a folder of 100,000 files slow."""
    out, stack = [], [(str(folder), ())]
    while stack:
        path, parts = stack.pop()
        try:
            with os.scandir(path) as entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        stack.append((e.path, (*parts, e.name)))
                    else:
                        out.append(((*parts, e.name), e))
        except OSError as e:
            skipped.append((Path(path), f"cannot be read ({e.strerror or type(e).__name__})"))
    out.sort(key=lambda item: item[0])
    return out


def _images_in(class_dir: Path, skipped: list[tuple[Path, str]]) -> list[Path]:
    """The image files under `class_dir`; everything else is skipped with the reason."""
    files = []
    for parts, entry in _walk(class_dir, skipped):
        name = parts[-1]
        if name.startswith("."):
            continue
        kind, size = _kind(entry)
        if kind == "a folder":  # a symlink to a folder
            continue
        f = Path(entry.path)
        if kind is not None:
            skipped.append((f, f"not a regular file: {kind}" if kind.startswith("a ") else kind))
        elif os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            skipped.append((f, "not an image file extension"))
        elif size == 0:
            skipped.append((f, "empty file (0 bytes)"))
        else:
            files.append(f)
    return files


def _class_name(class_dir: Path, notes: list[str]) -> str:
    """The folder's name, with control characters written as escapes (never carried into labels or files)."""
    if not has_hidden(class_dir.name):
        return class_dir.name
    name = visible(class_dir.name)
    notes.append(f"class folder '{name}' has control characters in its name: the class is named '{name}'")
    return name


def _class_folders(root: Path, notes: list[str], skipped: list[tuple[Path, str]]):
    """({class name: image files}, names of folders without images), noting everything left out."""
    class_files: dict[str, list[Path]] = {}
    empty_dirs: list[str] = []
    few: list[str] = []
    for entry in sorted(root.iterdir()):
        kind = _kind(entry)[0]
        if entry.name.startswith("."):
            continue
        if kind is None:
            notes.append(f"ignoring {visible(entry)}: files at the dataset root are not classes")
            continue
        if kind != "a folder":
            notes.append(f"ignoring {visible(entry)}: {kind}, not a class folder")
            continue
        files = _images_in(entry, skipped)
        name = _class_name(entry, notes)
        if not files:
            notes.append(f"ignoring class folder {visible(entry)}: no images in it")
            empty_dirs.append(name)
            continue
        if name in class_files:
            raise DatasetError(f"{visible(root)}: two class folders are both named '{name}' once made printable")
        if len(files) < MIN_IMAGES_PER_CLASS:
            few.append(name)
        class_files[name] = files
    unreliable = f"(fewer than {MIN_IMAGES_PER_CLASS}); accuracy on it will be unreliable"
    if len(few) > MAX_CLASS_NOTES:
        shown = ", ".join(f"'{n}'" for n in few[:MAX_CLASS_NOTES])
        notes.append(f"{len(few)} classes have few images {unreliable}: {shown}, ...")
    else:
        notes += [f"class '{n}' has only {len(class_files[n])} images {unreliable}" for n in few]
    return class_files, empty_dirs


def scan_dataset(image_dir: str | Path, split: SplitConfig = SplitConfig()) -> Dataset:
    """Index a class-folder dataset: one sub-folder per class, images inside (searched recursively).

    Long because it is one pass in order (folders, files, hashes, splits, duplicate rules), each step
    feeding the next; split into pieces it would pass half a dozen dicts around.
    """
    root = Path(image_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image directory not found: {visible(root)}")
    validation_percentage, testing_percentage = split.validation_percentage, split.testing_percentage
    notes: list[str] = []
    skipped: list[tuple[Path, str]] = []
    class_files, empty_dirs = _class_folders(root, notes, skipped)
    if len(class_files) < 2:
        found = ", ".join(class_files) or "none"
        empty = ""
        if empty_dirs:
            empty = f"; folders with no images ({'/'.join(IMAGE_EXTENSIONS)}): {', '.join(empty_dirs)}"
        raise DatasetError(
            f"{visible(root)} needs at least two class sub-folders with images; "
            f"found {len(class_files)} ({found}){empty}"
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
    index = {label: i for i, label in enumerate(classes)}
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
            records.append(ImageRecord(f, label, index[label], h, split))
    for h in sorted(conflicted):
        same = sorted(visible(r.path) for r in records if r.content_hash == h)
        notes.append(f"identical files under different labels, kept out of validation/test: {', '.join(same)}")

    untrained = sorted(set(classes) - {r.label for r in records if r.split == "training"})
    if untrained:
        shown = ", ".join(f"'{n}'" for n in untrained[:MAX_CLASS_NOTES]) + (", ..." if len(untrained) > 10 else "")
        notes.append(f"{len(untrained)} classes have no training image, so the model cannot learn them: {shown}")
    dataset = Dataset(root, classes, records, notes, skipped)
    for s in ("training", "testing"):
        if not dataset.split(s):
            raise DatasetError(f"{visible(root)}: the {s} split is empty; add images or change the percentages")
    return dataset


def decode_images(records: list[ImageRecord], size: int, load=None) -> tuple[np.ndarray, list[ImageRecord], list[str]]:
    """`load_image` for each record: (uint8 array (N, size, size, 3), the records that decoded, failures).

    A file that cannot be decoded is one failure line naming it, never an exception. `load` (with
    `load_image`'s signature) is where the pixels come from: a sweep's `edgetl.data.pixels` store, decoded once.
    """
    load = load or load_image
    # One array filled in place: a list of images then np.stack held the split twice at its peak.
    array = np.empty((len(records), size, size, 3), np.uint8)
    kept, failed = [], []
    for r in records:
        try:
            array[len(kept)] = load(r.path, size)
        except DiskError:
            raise  # the sweep's decoded-pixel store could not be written: not this file's fault
        except Exception as e:  # any decoder failure is one bad file
            failed.append(f"{r.path}: {type(e).__name__}: {e}")
            continue
        kept.append(r)
    if failed:  # shrunk in place (no view of it exists yet), not copied
        array.resize((len(kept), size, size, 3), refcheck=False)
    return array, kept, failed
