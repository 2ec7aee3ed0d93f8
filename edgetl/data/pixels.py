"""Decode once per sweep: every photo read and decoded once, resized to each resolution the grid needs.

A sweep used to decode each JPEG again for every grid point (features), and again for each point's
export check, calibration and benchmark. On flowers, decoding and resizing cost more than a small
backbone's forward pass. `PixelStore` decodes each image once, resizes the decoded picture to every
resolution of the grid (the very pixels `load_image` gives: same function, same image), and keeps them
as one raw uint8 file per resolution. Every later stage reads its images from there with `load`,
which has `load_image`'s signature, so the stages take a loader and stay unaware of the store.

Reads are `pread`s of one image's bytes, not memory maps, so the sweep's resident memory does not grow
with the store (nor with the number of grid points). The store is a temporary of the sweep: it lives
in OUTPUT_DIR/.pixels while the sweep runs (a killed sweep reuses it when it resumes, `index.json`
being written last) and is deleted when the sweep finishes.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgetl.data.dataset import ImageRecord
from edgetl.io.files import DiskError, atomic_write_json, free_bytes, writing
from edgetl.io.quiet import bars_off
from edgetl.runtime.images import PREPROCESS_VERSION, load_image, open_rgb, resized

PIXELS_DIR = ".pixels"
INDEX = "index.json"

#: `load(path, size) -> uint8 (size, size, 3)`, raising OSError/ValueError for an undecodable file.
Loader = Callable[[str | Path, int], np.ndarray]


@dataclass
class PixelStore:
    """Decoded images of a list of records, one raw uint8 file per resolution, read one image at a time."""

    directory: Path
    resolutions: tuple[int, ...]
    rows: dict[str, int]  # str(record path) -> row in every resolution's file
    failed: dict[str, str]  # str(record path) -> why it could not be decoded
    seconds: float = 0.0  # what building it took (0 when it was reused)
    _fds: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:  # opened up front: loads come from several threads at once
        self._fds = {size: os.open(self.directory / f"r{size}.u8", os.O_RDONLY) for size in self.resolutions}

    def load(self, path: str | Path, size: int) -> np.ndarray:
        """`load_image(path, size)` from the store; photos or sizes it does not hold are decoded as usual."""
        key = str(path)
        if key in self.failed:
            raise ValueError(self.failed[key])
        row = self.rows.get(key)
        if row is None or size not in self.resolutions:
            return load_image(path, size)
        nbytes = size * size * 3
        data = os.pread(self._fds[size], nbytes, row * nbytes)
        if len(data) != nbytes:
            raise OSError(f"{self.directory}/r{size}.u8 is truncated (row {row}); delete {self.directory}")
        return np.frombuffer(data, np.uint8).reshape(size, size, 3)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def store_bytes(photos: int, resolutions: Sequence[int]) -> int:
    """The store's exact size: every photo at every resolution as raw uint8 RGB."""
    return photos * sum(int(r) * int(r) * 3 for r in set(resolutions))


def _index_matches(index: dict, records: Sequence[ImageRecord], resolutions: tuple[int, ...]) -> bool:
    return (
        index.get("preprocess_version") == PREPROCESS_VERSION
        and set(resolutions) <= set(index.get("resolutions", []))
        and index.get("paths") == [str(r.path) for r in records]
        and index.get("hashes") == [r.content_hash for r in records]
    )


def open_store(directory: Path, records: Sequence[ImageRecord], resolutions: Sequence[int]) -> PixelStore | None:
    """The finished store in `directory` when it holds exactly these records at these resolutions, else None."""
    try:
        index = json.loads((Path(directory) / INDEX).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or not _index_matches(index, records, tuple(resolutions)):
        return None
    held = tuple(index["resolutions"])
    nbytes = {size: len(records) * size * size * 3 for size in held}
    if any(
        not (Path(directory) / f"r{s}.u8").is_file() or (Path(directory) / f"r{s}.u8").stat().st_size != n
        for s, n in nbytes.items()
    ):
        return None
    return PixelStore(Path(directory), held, {p: i for i, p in enumerate(index["paths"])}, dict(index["failed"]))


def build_store(
    directory: Path, records: Sequence[ImageRecord], resolutions: Sequence[int], workers: int | None = None
) -> PixelStore:
    """Decode every record once, resize it to each of `resolutions`, and write the store (or reuse a finished one).

    Decoding runs in threads (Pillow releases the GIL while it decodes and resizes). An undecodable file
    is noted in the store, and whoever loads it gets the error `load_image` would have raised.
    """
    directory = Path(directory)
    resolutions = tuple(sorted({int(r) for r in resolutions}))
    existing = open_store(directory, records, resolutions)
    if existing is not None:
        return existing
    started = time.perf_counter()
    shutil.rmtree(directory, ignore_errors=True)
    needed = store_bytes(len(records), resolutions)
    free = free_bytes(directory)
    if free is not None and free < needed:  # refused before decoding, not after filling the disk
        raise DiskError(
            f"cannot write the decoded-pixel store ({needed / 1e6:.1f} MB: {len(records)} photos at "
            f"{', '.join(map(str, resolutions))} px) to {directory}: only {free / 1e6:.1f} MB free there. Nothing "
            "was decoded; free some space or choose another --output_dir, then run the same command again"
        )
    failed: dict[str, str] = {}
    with writing(directory, "the decoded-pixel store (OUTPUT_DIR/.pixels)", needed, cleanup=(directory,)):
        directory.mkdir(parents=True)
        fds = {s: os.open(directory / f"r{s}.u8", os.O_RDWR | os.O_CREAT, 0o644) for s in resolutions}
        try:
            for s, fd in fds.items():
                os.ftruncate(fd, len(records) * s * s * 3)

            def decode(i: int) -> None:
                try:
                    image = open_rgb(records[i].path)
                except Exception as e:  # any decoder failure is one bad file, not a failed sweep
                    failed[str(records[i].path)] = f"{type(e).__name__}: {e}"
                    return
                for s, fd in fds.items():
                    os.pwrite(fd, resized(image, s).tobytes(), i * s * s * 3)

            with (
                ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool,
                tqdm(
                    total=len(records),
                    desc=f"decoding once at {', '.join(map(str, resolutions))} px",
                    unit="img",
                    leave=False,
                    disable=bars_off(),
                ) as bar,
            ):
                for _ in pool.map(decode, range(len(records))):
                    bar.update(1)
            for fd in fds.values():
                os.fsync(fd)  # the index, written next, must not land before the pixels
        finally:
            for fd in fds.values():
                os.close(fd)
        seconds = time.perf_counter() - started
        atomic_write_json(
            directory / INDEX,
            {
                "preprocess_version": PREPROCESS_VERSION,
                "resolutions": list(resolutions),
                "paths": [str(r.path) for r in records],
                "hashes": [r.content_hash for r in records],
                "failed": failed,
                "seconds": round(seconds, 2),
            },
            "the decoded-pixel store's index",
        )
    return PixelStore(directory, resolutions, {str(r.path): i for i, r in enumerate(records)}, failed, seconds)


class LazyPixels:
    """A sweep's loader: builds the store for every resolution of the grid on the first image asked for.

    A warm re-run, whose units are all finished, never asks, so it never decodes. `remove()` at the end.
    """

    def __init__(self, directory: Path, records: Sequence[ImageRecord], resolutions: Sequence[int]):
        self.directory, self.records, self.resolutions = Path(directory), list(records), tuple(resolutions)
        self.store: PixelStore | None = None
        self._building = threading.Lock()  # the first loads come from several decode threads at once

    def __call__(self, path: str | Path, size: int) -> np.ndarray:
        return self.build().load(path, size)

    def build(self) -> PixelStore:
        """The store, built (or opened) on the first call."""
        if self.store is None:
            with self._building:
                if self.store is None:
                    self.store = build_store(self.directory, self.records, self.resolutions)
        return self.store

    def __getstate__(self) -> dict:
        """For a worker process (`edgetl.sweep.local`): what it needs to open the store itself, once built."""
        return {"directory": self.directory, "records": self.records, "resolutions": self.resolutions}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"], state["records"], state["resolutions"])

    def remove(self) -> None:
        if self.store is not None:
            self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)
