"""How much disk a sweep may need, announced and checked before the long work starts.

The estimate is a warning when the disk looks too small; the one exact part, the decoded-pixel store, is
refused by `edgetl.data.pixels.build_store` before it decodes anything (a warm re-run never builds it)."""

from __future__ import annotations

from pathlib import Path

from edgetl.data.pixels import PIXELS_DIR, store_bytes
from edgetl.export import FORMATS
from edgetl.features.bottlenecks import default_cache_dir
from edgetl.io.files import free_bytes

#: Rough no-top parameter counts at alpha 1 (they scale with alpha squared): what the space check assumes.
_PARAMS_AT_ALPHA_1 = {"v1": 3.2e6, "v2": 2.3e6}
_BYTES_PER_WEIGHT = {"float32": 4.0, "float16": 2.0, "dynamic": 1.1, "int8": 1.1, "int16x8": 1.2}
_MIN_FILE_BYTES = 4096  # a cache entry is a small file: one file-system block at least
SPACE_MARGIN = 1.5


def estimate_space(config, dataset) -> tuple[int, int]:
    """(bytes the bottleneck cache, bytes the output directory) a sweep (`SweepConfig`) may need, with a 1.5x
    margin for what the estimate leaves out (directories, JSON)."""

    n, n_test = len(dataset.records), len(dataset.split("testing"))
    cache = output = 0
    for spec in config.points:
        dim = int(1024 * spec.alpha) if spec.version == "v1" else int(1280 * max(1.0, spec.alpha))
        cache += n * max(dim * 4 + 16, _MIN_FILE_BYTES)
        params = _PARAMS_AT_ALPHA_1[spec.version] * spec.alpha**2
        per_weight = 3 * 4.0 + sum(_BYTES_PER_WEIGHT[FORMATS[f].quantization] for f in config.export.formats)
        output += int(params * per_weight) + n_test * spec.resolution**2 * 3
    output += store_bytes(n, [p.resolution for p in config.points])  # OUTPUT_DIR/.pixels, while it runs
    return int(cache * SPACE_MARGIN), int(output * SPACE_MARGIN)


def check_space(config, dataset, say) -> None:
    """Warn before the long work when the output or the cache file system looks too small for the sweep."""

    cache_need, out_need = estimate_space(config, dataset)
    resolutions = sorted({p.resolution for p in config.points})
    pixels = store_bytes(len(dataset.records), resolutions)
    say(
        f"disk: about {(cache_need + out_need) / 1e6:.0f} MB at most: the decoded-pixel store "
        f"{pixels / 1e6:.0f} MB ({len(dataset.records)} photos at {', '.join(map(str, resolutions))} px, in "
        f"{Path(config.output_dir) / PIXELS_DIR} while the sweep runs), artifacts and checks "
        f"{(out_need - pixels * SPACE_MARGIN) / 1e6:.0f} MB, bottleneck cache {cache_need / 1e6:.0f} MB"
    )
    for what, path, need in (
        ("output directory", Path(config.output_dir), out_need),
        ("bottleneck cache", Path(config.features.bottleneck_dir or default_cache_dir()), cache_need),
    ):
        free = free_bytes(path)
        if free is not None and free < need:
            say(
                f"warning: the sweep may need about {need / 1e6:.0f} MB in its {what} {path}, which has "
                f"{free / 1e6:.0f} MB free; finished work is kept if it runs out, and the same command resumes"
            )
