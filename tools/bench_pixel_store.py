"""Issue 29's choice of how a sweep keeps its decoded photos, by measurement: decode again for every grid point,
keep them raw (`edgetl.data.pixels`, today's choice), or keep them compressed (zlib, the standard library's).

    .venv/bin/python tools/bench_pixel_store.py                     # 400 flowers photos, the full grid's sizes
    .venv/bin/python tools/bench_pixel_store.py --photos 1000 --resolutions 128,224 --grid_points 3,3

For a sample of real photos, one thread, each step timed over the whole sample: decoding and resizing a photo
to one resolution (`load_image`, what every grid point would pay without a store); reading it back from a raw
uint8 file (`pread`, as `PixelStore.load` does; the file is fresh, so it is read from the page cache: the
sweep's own case, since it reads the store while its pages are warm); decompressing it from zlib at levels 1
and 6. Then, for a sweep of --sweep_photos photos whose grid has --grid_points points at each resolution (the
full grid: 5 of each; each point reads every photo once for its features), the seconds and bytes of each way.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGETL_TEST_DATA", REPO.parent / "shared"))

from edgetl.runtime.images import load_image  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def sample_photos(root: Path, n: int, seed: int = 0) -> list[Path]:
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
        raise SystemExit(f"no photos under {root}")
    return random.Random(seed).sample(photos, min(n, len(photos)))


def per_photo(fn, items) -> tuple[float, list]:
    """Mean seconds per item of `fn` over `items`, and its results."""
    clock = time.perf_counter()
    out = [fn(x) for x in items]
    return (time.perf_counter() - clock) / len(items), out


def measure(photos: list[Path], size: int) -> dict:
    """Seconds per photo of each way to get its (size, size, 3) pixels, and bytes per photo stored."""
    decode_s, pixels = per_photo(lambda p: load_image(p, size), photos)
    row = {"resolution": size, "raw_bytes": pixels[0].nbytes, "decode_s": decode_s}
    with tempfile.NamedTemporaryFile(prefix="edgetl-pixels-") as f:
        f.write(b"".join(p.tobytes() for p in pixels))
        f.flush()
        fd, nbytes = f.fileno(), pixels[0].nbytes
        row["raw_read_s"], _ = per_photo(lambda i: os.pread(fd, nbytes, i * nbytes), range(len(pixels)))
    for level in (1, 6):
        compress_s, blobs = per_photo(lambda p: zlib.compress(p.tobytes(), level), pixels)
        row[f"zlib{level}_compress_s"] = compress_s
        row[f"zlib{level}_bytes"] = sum(len(b) for b in blobs) / len(blobs)
        row[f"zlib{level}_read_s"], _ = per_photo(zlib.decompress, blobs)
    return row


def sweep_costs(rows: list[dict], photos: int, points: list[int]) -> list[tuple[str, float, float]]:
    """(way, seconds, bytes) for a sweep of `photos` photos with `points[i]` grid points at rows[i]'s size.
    A store is built by decoding each photo once per resolution (its resizes share the decode, so this
    overstates it a little) and read once per point."""
    ways = []
    ways.append(("decode at every point", sum(n * r["decode_s"] for r, n in zip(rows, points)) * photos, 0.0))
    ways.append(
        (
            "raw store (edgetl today)",
            sum(r["decode_s"] + n * r["raw_read_s"] for r, n in zip(rows, points)) * photos,
            sum(r["raw_bytes"] for r in rows) * photos,
        )
    )
    for level in (1, 6):
        per_photo_s = sum(
            r["decode_s"] + r[f"zlib{level}_compress_s"] + n * r[f"zlib{level}_read_s"] for r, n in zip(rows, points)
        )
        stored = sum(r[f"zlib{level}_bytes"] for r in rows) * photos
        ways.append((f"zlib level {level} store", per_photo_s * photos, stored))
    return ways


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image_dir", type=Path, default=SHARED / "datasets" / "flowers")
    p.add_argument("--photos", type=int, default=400, help="photos timed")
    p.add_argument("--resolutions", default="128,160,192,224")
    p.add_argument("--grid_points", default="5,5,5,5", help="grid points at each resolution (the full grid)")
    p.add_argument("--sweep_photos", type=int, default=20000, help="photos of the sweep the costs are for")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.resolutions.split(",")]
    points = [int(s) for s in args.grid_points.split(",")]
    if len(points) != len(sizes):
        p.error("--grid_points needs one count per resolution")
    photos = sample_photos(args.image_dir, args.photos)
    print(f"{len(photos)} photos of {args.image_dir}, one thread, page cache warm", flush=True)
    print("| size | decode + resize | raw read | zlib-1 read | zlib-6 read | raw KB | zlib-1 KB | zlib-6 KB |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    rows = []
    for size in sizes:
        r = measure(photos, size)
        rows.append(r)
        ms = [f"{1000 * r[k]:.2f} ms" for k in ("decode_s", "raw_read_s", "zlib1_read_s", "zlib6_read_s")]
        kb = [f"{r[k] / 1000:.0f}" for k in ("raw_bytes", "zlib1_bytes", "zlib6_bytes")]
        print(f"| {size} | " + " | ".join(ms + kb) + " |", flush=True)
    print(f"\nA sweep of {args.sweep_photos:,} photos, {sum(points)} grid points ({args.grid_points} per resolution):")
    print("| way | seconds (one core) | disk |")
    print("|---|--:|--:|")
    for way, seconds, nbytes in sweep_costs(rows, args.sweep_photos, points):
        print(f"| {way} | {seconds:,.0f} s | {nbytes / 1e6:,.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
