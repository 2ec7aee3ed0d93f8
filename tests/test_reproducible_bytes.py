"""Artifacts depend only on their inputs: the same point, trained and exported twice in one process and once in
a fresh one, gives the same bytes in every format.

Keras numbers unnamed layers per process (global_average_pooling2d_1, _2, ...), and those names end up inside
.tflite and .onnx files; a sweep resumed after a kill used to write files a few bytes different from an
uninterrupted one. Real ImageNet weights (V1 0.25 at 96 px) on a few real photos: about two minutes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FLOWERS, WEIGHTS_DIR, copy_subset

from edgetl.cli.main import main
from edgetl.export import FORMATS
from edgetl.export.formats import ON_REQUEST

pytestmark = pytest.mark.slow


def _point_args(image_dir: Path, out: Path, cache: Path) -> tuple[list[str], list[str]]:
    train = [
        "train",
        "--image_dir",
        str(image_dir),
        "--backbone",
        "v1",
        "--alpha",
        "0.25",
        "--resolution",
        "96",
        "--weights_dir",
        str(WEIGHTS_DIR),
        "--bottleneck_dir",
        str(cache),
        "--output_dir",
        str(out),
        "--validation_percentage",
        "20",
        "--testing_percentage",
        "20",
        "--how_many_training_steps",
        "100",
    ]
    export = ["export", "--run", str(out), "--calibration_images", "12"]
    return train, export


def _files(run_dir: Path) -> dict[str, bytes]:
    files = {"model.tflite": (run_dir / "model.tflite").read_bytes()}
    for spec in FORMATS.values():
        if spec.name not in ON_REQUEST:  # `edgetl export`'s default: every format but those made on request
            files[spec.name] = (run_dir / "artifacts" / f"{spec.name}{spec.suffix}").read_bytes()
    return files


def test_same_point_gives_the_same_bytes_in_any_process(tmp_path):
    image_dir = copy_subset(FLOWERS, tmp_path / "photos", ["daisy", "roses"], 15)
    cache = tmp_path / "cache"
    outputs = []
    for name in ("first", "second"):  # the second build runs after the first one named its layers
        train, export = _point_args(image_dir, tmp_path / name, cache)
        assert main(train) == 0 and main(export) == 0
        outputs.append(_files(tmp_path / name))
    train, export = _point_args(image_dir, tmp_path / "fresh", cache)
    for argv in (train, export):
        subprocess.run([sys.executable, "-m", "edgetl.cli.main", *argv], check=True, capture_output=True)
    outputs.append(_files(tmp_path / "fresh"))
    first, second, fresh = outputs
    assert set(first) == {"model.tflite", *(f for f in FORMATS if f not in ON_REQUEST)}
    for name in first:
        assert first[name] == second[name], f"{name}: a second build in the same process wrote other bytes"
        assert first[name] == fresh[name], f"{name}: a fresh process wrote other bytes"
