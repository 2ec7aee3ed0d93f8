"""`edgetl bundle`: what a device needs to measure a sweep's artifacts itself, in one zip.

Latency is a property of a machine: the sweep's figures belong to the machine that ran it. The bundle
carries the artifacts (all that passed, or the Pareto front), the test images the sweep scored them on
(one .npz per resolution, labels included), edgetl's TensorFlow-free runtime and `device_bench.py`,
which measures every artifact on the device and writes one JSON naming the device. `edgetl report
--device_results` then re-picks on those latencies (`edgetl.pick.device`).

Layout of the zip::

    device_bench.py            run this on the device: python device_bench.py (edgetl.measure.device_bench)
    bundle.json                the artifacts, their host figures and SHA-256, the test sets
    artifacts/<point>/<format>.<tflite|onnx>
    test_images/r<R>.npz       uint8 images (N, R, R, 3) and labels, in the sweep's test-split order
    edgetl/                    the installed package's source (the runtime, the benchmark child, device_bench)
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from edgetl import __version__
from edgetl.io.archive import deterministic_zip
from edgetl.io.files import atomic_write_bytes, sha256_file
from edgetl.measure.results import ArtifactResult, read_results
from edgetl.pick.pareto import pick_all

BUNDLE_JSON = "bundle.json"
DEVICE_BENCH = "device_bench.py"
# The installed package itself (not a source checkout's tools/), so a wheel install bundles the same files.
_PACKAGE = Path(__file__).resolve().parents[1]
#: The bundle's entry point: the package's own device benchmark, from the copy of edgetl beside it.
DEVICE_BENCH_SCRIPT = b'''#!/usr/bin/env python
"""Measure this bundle's artifacts on this device: python device_bench.py [--num_threads 1,4] [--out FILE]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the edgetl copied into the bundle

from edgetl.measure.device_bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
'''


def bundle_rows(sweep_dir: Path, front_only: bool) -> list[ArtifactResult]:
    """The sweep's successful rows, or only those on the Pareto front of their runtime (the device re-picks
    for each runtime it runs, so each runtime's front travels)."""
    rows = [r for r in read_results(sweep_dir) if r.ok]
    if not rows:
        raise ValueError(f"{sweep_dir}/results.json has no successful artifact to bundle")
    if not front_only:
        return rows
    fronts = {r.identity for p in pick_all(rows)[1].values() for r in p.front}
    return [r for r in rows if r.identity in fronts]


def _test_sets(sweep_dir: Path, rows: list[ArtifactResult]) -> dict[int, bytes]:
    """One .npz per resolution, from the points' own decoded test splits (never decoded again)."""
    sets: dict[int, bytes] = {}
    for r in rows:
        if r.resolution in sets:
            continue
        with np.load(sweep_dir / "points" / r.point / "test_images.npz") as data:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, images=data["images"], labels=data["labels"])
        sets[r.resolution] = buffer.getvalue()
    return sets


def make_bundle(sweep_dir: str | Path, out: str | Path, front_only: bool = False) -> Path:
    """Write the bundle of `sweep_dir` to `out` (a .zip); returns its path."""
    sweep_dir = Path(sweep_dir)
    rows = bundle_rows(sweep_dir, front_only)
    files: dict[str, bytes] = {}
    entries = []
    for r in rows:
        artifact = sweep_dir / r.path
        name = f"artifacts/{r.point}/{artifact.name}"
        files[name] = artifact.read_bytes()
        entries.append(
            {
                "point": r.point,
                "format": r.format,
                "resolution": r.resolution,
                "path": name,
                "sha256": sha256_file(artifact),
                "macs": r.macs,
                "params": r.params,
                "host": {k: getattr(r, k) for k in ("accuracy", "latency_ms_p50", "num_threads")},
                "host_predictions": r.predictions,
            }
        )
    for resolution, data in _test_sets(sweep_dir, rows).items():
        files[f"test_images/r{resolution}.npz"] = data
    for source in sorted(_PACKAGE.rglob("*.py")):
        files[f"edgetl/{source.relative_to(_PACKAGE).as_posix()}"] = source.read_bytes()
    files[DEVICE_BENCH] = DEVICE_BENCH_SCRIPT
    files[BUNDLE_JSON] = json.dumps(
        {"edgetl_version": __version__, "sweep": str(sweep_dir.resolve()), "artifacts": entries}, indent=1
    ).encode()
    return atomic_write_bytes(Path(out), deterministic_zip(sorted(files.items()), compress=True))
