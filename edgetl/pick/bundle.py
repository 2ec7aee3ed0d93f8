"""`edgetl bundle`: what a device needs to measure a sweep's artifacts itself, in one zip.

Latency is a property of a machine: the sweep's figures belong to the machine that ran it. The bundle
carries the artifacts (all that passed, or the Pareto front), the test images the sweep scored them on
(one .npz per resolution, labels included), edgetl's TensorFlow-free runtime and `device_bench.py`,
which measures every artifact on the device and writes one JSON naming the device. `edgetl report
--device_results` then re-picks on those latencies (`edgetl.pick.device`).

Layout of the zip::

    device_bench.py            run this on the device: python device_bench.py
    bundle.json                the artifacts, their host figures and SHA-256, the test sets
    artifacts/<point>/<format>.<tflite|onnx>
    test_images/r<R>.npz       uint8 images (N, R, R, 3) and labels, in the sweep's test-split order
    edgetl/                    the package's source (only the runtime and the benchmark child are used)
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
from edgetl.pick.pareto import Budget, PickConfig, pick

BUNDLE_JSON = "bundle.json"
DEVICE_BENCH = "device_bench.py"
_PACKAGE = Path(__file__).resolve().parent
_DEVICE_BENCH_SOURCE = _PACKAGE.parent / "tools" / DEVICE_BENCH


def bundle_rows(sweep_dir: Path, front_only: bool) -> list[ArtifactResult]:
    """The sweep's successful rows, or only those on the Pareto front."""
    rows = [r for r in read_results(sweep_dir) if r.ok]
    if not rows:
        raise ValueError(f"{sweep_dir}/results.json has no successful artifact to bundle")
    return pick(rows, Budget(), PickConfig()).front if front_only else rows


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
    files[DEVICE_BENCH] = _DEVICE_BENCH_SOURCE.read_bytes()
    files[BUNDLE_JSON] = json.dumps(
        {"edgetl_version": __version__, "sweep": str(sweep_dir.resolve()), "artifacts": entries}, indent=1
    ).encode()
    return atomic_write_bytes(Path(out), deterministic_zip(sorted(files.items()), compress=True))
