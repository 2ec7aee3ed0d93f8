"""Issue 29's memory fixes: what keeps a sweep's peak memory from growing with its photos.

- `decode_images` fills one array (never a list of images and then a stacked copy), and an export in a sweep
  reads its test images a batch at a time from the pixel store (`StoredImages`) instead of holding them;
- `atomic_write_with` streams a file to disk atomically (the benchmark's test images, no in-memory copy),
  and a benchmark child reads the one image it times (`first_image`), not the whole test split;
- `trim_malloc` hands the C heap's free pages back to the OS;
- the audio import error MediaPipe keeps no longer pins the frames that first imported it.

Fast: Pillow and numpy only, except the MediaPipe check (one child process).
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.data.dataset import ImageRecord, SplitConfig, decode_images, scan_dataset
from edgetl.data.pixels import LazyPixels
from edgetl.export.formats import ExportError
from edgetl.export.inputs import StoredImages
from edgetl.io.files import DiskError, atomic_write_with
from edgetl.io.memory import trim_malloc
from edgetl.measure.bench import first_image, prepare_test_images
from edgetl.runtime.images import load_image

REPO = Path(__file__).resolve().parents[1]


def photos(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (40, 30)) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"img_{seed}_{i}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


def records(paths: list[Path]) -> list[ImageRecord]:
    return [ImageRecord(p, "a", 0, str(i), "testing") for i, p in enumerate(paths)]


# ---------------------------------------------------------------------------------------------------------
# decode_images


def test_decode_images_is_the_stack_of_load_image(tmp_path):
    paths = photos(tmp_path, 7)
    images, kept, failed = decode_images(records(paths), 24)
    assert images.dtype == np.uint8 and images.shape == (7, 24, 24, 3)
    np.testing.assert_array_equal(images, np.stack([load_image(p, 24) for p in paths]))
    assert [r.path for r in kept] == paths and failed == []


def test_decode_images_leaves_out_a_bad_file(tmp_path):
    paths = photos(tmp_path, 5)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    recs = records(paths[:2] + [bad] + paths[2:])
    images, kept, failed = decode_images(recs, 16)
    assert images.shape == (5, 16, 16, 3) and images.flags.owndata
    np.testing.assert_array_equal(images, np.stack([load_image(p, 16) for p in paths]))
    assert [r.path for r in kept] == paths
    assert len(failed) == 1 and str(bad) in failed[0]


def test_decode_images_of_nothing_is_an_empty_array():
    images, kept, failed = decode_images([], 32)
    assert images.shape == (0, 32, 32, 3) and images.dtype == np.uint8 and kept == [] == failed


def test_decode_images_holds_the_pixels_once(tmp_path):
    """Its peak allocation is about the output, not twice it (a list of images, then their stacked copy)."""
    size, paths = 48, photos(tmp_path, 60)
    recs = records(paths)
    decode_images(recs[:1], size)  # imports and caches outside the measurement
    tracemalloc.start()
    try:
        images, _, _ = decode_images(recs, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * images.nbytes, f"peak {peak} bytes for a {images.nbytes}-byte result"


def test_stored_images_reads_the_same_pixels_a_slice_at_a_time(tmp_path):
    """An export in a sweep holds no test split: its checks read each batch again from the pixel store."""
    paths = photos(tmp_path, 9)
    recs = records(paths)
    store = LazyPixels(tmp_path / "pixels", recs, (24,))
    stored = StoredImages(recs, 24, store)
    whole = decode_images(recs, 24)[0]
    assert len(stored) == 9
    np.testing.assert_array_equal(np.concatenate([stored[i : i + 4] for i in range(0, 9, 4)]), whole)
    np.testing.assert_array_equal(stored[3:5], whole[3:5])
    store.remove()
    paths[4].write_bytes(b"not a png any more")
    with pytest.raises(ExportError, match="no longer"):
        StoredImages(recs, 24, None)[3:6]


# ---------------------------------------------------------------------------------------------------------
# atomic_write_with and the benchmark's test images


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_with_streams_to_the_target(tmp_path):
    target = tmp_path / "sub" / "data.bin"
    assert atomic_write_with(target, lambda f: [f.write(b"x" * 1000) for _ in range(5)]) == target
    assert target.read_bytes() == b"x" * 5000
    assert leftovers(target.parent) == []
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_with_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"new, half written")
        raise RuntimeError("the writer broke")

    with pytest.raises(RuntimeError, match="the writer broke"):
        atomic_write_with(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_atomic_write_with_turns_a_full_disk_into_a_disk_error(tmp_path):
    target = tmp_path / "data.bin"

    def full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskError, match="cannot write the test file .* no space left on device"):
        atomic_write_with(target, full, "the test file")
    assert not target.exists() and leftovers(tmp_path) == []


def test_prepare_test_images_writes_the_decoded_split(tmp_path):
    for c in ("cats", "dogs"):
        photos(tmp_path / "data" / c, 30, seed=len(c) + (c == "dogs"))
    dataset = scan_dataset(tmp_path / "data", SplitConfig(10, 30))
    out = tmp_path / "out" / "test.npz"
    path, labels = prepare_test_images(dataset, 20, out)
    test = dataset.split("testing")
    with np.load(path) as data:
        np.testing.assert_array_equal(data["images"], decode_images(test, 20)[0])
        np.testing.assert_array_equal(data["labels"], [r.label_index for r in test])
        assert data["paths"].tolist() == data["requested"].tolist() == [str(r.path) for r in test]
    np.testing.assert_array_equal(labels, [r.label_index for r in test])
    assert leftovers(out.parent) == []
    stamp = out.stat().st_mtime_ns
    assert prepare_test_images(dataset, 20, out)[0] == out and out.stat().st_mtime_ns == stamp  # reused


def test_first_image_reads_one_image_of_the_npz(tmp_path):
    """The benchmark child times one image: it reads that one, not the test split, before its peak RSS."""
    images = np.random.default_rng(0).integers(0, 256, (50, 64, 64, 3), dtype=np.uint8)
    path = atomic_write_with(tmp_path / "test.npz", lambda f: np.savez(f, images=images, labels=np.arange(50)))
    first_image(path)  # imports outside the measurement
    tracemalloc.start()
    try:
        first = first_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(first, images[0])
    assert first.flags.writeable and first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert peak < images.nbytes / 10, f"peak {peak} bytes for one {first.nbytes}-byte image"


# ---------------------------------------------------------------------------------------------------------
# trim_malloc


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_trim_malloc_is_harmless_anywhere():
    assert trim_malloc() in (True, False)
    assert trim_malloc() == trim_malloc()  # again: nothing breaks, same answer
    assert np.arange(10).sum() == 45


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim; a no-op elsewhere")
def test_trim_malloc_returns_freed_heap_pages_to_the_os():
    """Small blocks freed below a live one stay resident (the heap cannot shrink past it) until trimmed."""
    if not trim_malloc():
        pytest.skip("no glibc malloc_trim in this process")
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block, count = 16 * 1024, 4096  # 64 MiB in blocks under the mmap threshold: they come from the heap
    blocks = [libc.malloc(block) for _ in range(count)]
    keep = libc.malloc(block)  # above them: the heap's top cannot be given back past this one
    try:
        for b in blocks:
            ctypes.memset(b, 1, block)  # resident
        for b in blocks:
            libc.free(b)
        before = rss_bytes()
        assert trim_malloc()
        after = rss_bytes()
    finally:
        libc.free(keep)
    assert before - after > count * block // 2, f"RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB"


# ---------------------------------------------------------------------------------------------------------
# MediaPipe's stored audio import error

PINNED = """
import sys, weakref
import numpy as np
from edgetl.export import tflite_metadata

def first_import():
    pixels = np.ones(1000)
    tflite_metadata._mediapipe_metadata()
    return weakref.ref(pixels)

ref = first_import()
error = getattr(sys.modules.get(tflite_metadata.AUDIO_RECORD_MODULE), tflite_metadata.AUDIO_ERROR, None)
print("freed" if ref() is None else "pinned", "error" if error is not None else "no-error",
      "traceback" if getattr(error, "__traceback__", None) is not None else "no-traceback")
"""


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="mediapipe is not installed")
def test_mediapipe_import_pins_no_frame_of_its_caller():
    """The first import of MediaPipe's metadata writer leaves the caller's locals free to go."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    proc = subprocess.run([sys.executable, "-c", PINNED], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    freed, error, traceback = proc.stdout.split()[-3:]
    assert traceback == "no-traceback"
    assert freed == "freed", f"the caller's array outlived it ({error}: MediaPipe kept its audio import error)"
