"""How much disk a sweep may need, checked before the long work starts (a warning, never a refusal)."""

from __future__ import annotations

from pathlib import Path

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
    output += n * sum(r * r * 3 for r in {p.resolution for p in config.points})  # OUTPUT_DIR/.pixels, while it runs
    return int(cache * SPACE_MARGIN), int(output * SPACE_MARGIN)


def check_space(config, dataset, say) -> None:
    """Warn before the long work when the output or the cache file system looks too small for the sweep."""

    cache_need, out_need = estimate_space(config, dataset)
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
