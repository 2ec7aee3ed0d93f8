"""A small but real run directory for the export tests, built without `edgetl train`.

Real photos (a few per class, copied from the shared flowers set into tmp), MobileNet V1 alpha 0.25
at 96 px with weights=None, and a Dense head fitted to the photos' features. Built by hand, following
docs/interfaces.md, so the export tests depend only on the run-directory contract.

The model is conftest's `informative_mobilenet`: BatchNorm statistics from the photos and a logistic
regression head fitted to them, so comparing top-1 answers between the float model and an artifact
says something about the conversion, not about coin flips.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import FLOWERS, copy_subset, informative_mobilenet

CLASSES = ["daisy", "roses", "tulips"]
PER_CLASS = 20
RESOLUTION = 96
VALIDATION_PERCENTAGE = 10.0
TESTING_PERCENTAGE = 30.0  # ~18 test images: enough for agreement to mean something


@dataclass
class ExportRun:
    run_dir: Path
    image_dir: Path
    classes: list[str]
    resolution: int


def copy_photos(dst: Path, per_class: int = PER_CLASS) -> Path:
    """The first `per_class` photos (sorted) of each class, copied (../shared is never written)."""
    return copy_subset(FLOWERS, dst, CLASSES, per_class)


def write_run_dir(run_dir: Path, model, image_dir: Path, classes: list[str]) -> Path:
    """run.json, model.keras, saved_model/, labels.txt as docs/interfaces.md describes them."""
    from edgetl import __version__

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "labels.txt").write_text("".join(f"{c}\n" for c in classes))
    model.save(run_dir / "model.keras")
    model.export(str(run_dir / "saved_model"), verbose=False)
    run = {
        "edgetl_version": __version__,
        "image_dir": str(image_dir.resolve()),
        "validation_percentage": VALIDATION_PERCENTAGE,
        "testing_percentage": TESTING_PERCENTAGE,
        "classes": classes,
        "backbone": {
            "version": "v1",
            "alpha": 0.25,
            "resolution": RESOLUTION,
            "weights": "none (random)",
            "weights_sha256": "",
        },
        "training": {"head": "logistic regression fitted by tests/export_fixtures.py"},
        "metrics": {},
        "num_skipped_files": 0,
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    return run_dir


def build_export_run(root: Path) -> ExportRun:
    from edgetl.data.dataset import SplitConfig, scan_dataset
    from edgetl.runtime.images import load_image

    image_dir = copy_photos(root / "photos")
    dataset = scan_dataset(image_dir, SplitConfig(VALIDATION_PERCENTAGE, TESTING_PERCENTAGE))
    images = np.stack([load_image(r.path, RESOLUTION) for r in dataset.records])
    labels = np.array([r.label_index for r in dataset.records])
    model = informative_mobilenet(RESOLUTION, len(dataset.classes), images, labels)
    run_dir = write_run_dir(root / "run", model, image_dir, dataset.classes)
    return ExportRun(run_dir, image_dir, dataset.classes, RESOLUTION)


def copy_run(run: ExportRun, dst: Path) -> Path:
    """A private copy of the run directory (artifacts and export.json are per test)."""
    shutil.copytree(run.run_dir, dst, ignore=shutil.ignore_patterns("artifacts"))
    return dst
