"""A small but real run directory for the export tests, built without `edgetl train`.

Real photos (a few per class, copied from the shared flowers set into tmp), MobileNet V1 alpha 0.25
at 96 px with weights=None, and a Dense head fitted to the photos' features. Built by hand, following
docs/interfaces.md, so the export tests depend only on the run-directory contract.

weights=None alone gives a useless model: with default BatchNorm statistics the activations vanish
through the 13 blocks and every photo gets exactly the same features. So the BatchNorm statistics
are set from the training photos (one training-mode pass with momentum 0) with beta 2 (most ReLU6
units active: a smooth random net that int8 can track), and the head is a logistic regression on
the photos' features, trained until its answers are confident: then comparing top-1 answers between
the float model and an artifact says something about the conversion, not about coin flips.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import FLOWERS, copy_subset

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


def _fit_head(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (numpy, full batch), folded back onto the raw features."""
    mu, sd = features.mean(0), features.std(0) + 1e-6
    z = (features - mu) / sd
    onehot = np.eye(num_classes)[labels]
    w = np.zeros((z.shape[1], num_classes))
    b = np.zeros(num_classes)
    for _ in range(3000):
        logits = z @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(z)
        w -= 0.5 * (z.T @ g + 1e-4 * w)
        b -= 0.5 * g.sum(0)
    kernel = w / sd[:, None]
    bias = b - (mu / sd) @ w
    return kernel.astype(np.float32), bias.astype(np.float32)


def build_model(images_uint8: np.ndarray, labels: np.ndarray, num_classes: int):
    """The edgetl classifier shape (see edgetl.backbones/train), random backbone made informative."""
    import keras

    keras.utils.set_random_seed(0)
    shape = (RESOLUTION, RESOLUTION, 3)
    backbone = keras.applications.MobileNet(
        input_shape=shape, alpha=0.25, include_top=False, pooling="avg", weights=None
    )
    backbone.trainable = False
    inputs = keras.Input(shape, dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_pm1")(inputs)
    features = backbone(x, training=False)
    extractor = keras.Model(inputs, features)

    scaled = images_uint8.astype(np.float32) / 127.5 - 1.0
    bns = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
        layer.beta.assign(np.full(layer.beta.shape, 2.0, np.float32))
    backbone.trainable = True  # a frozen BatchNorm ignores training=True
    backbone(scaled, training=True)  # moving statistics := these photos' statistics
    backbone.trainable = False
    for layer in bns:
        layer.momentum = 0.99

    feats = np.asarray(extractor.predict(images_uint8.astype(np.float32), verbose=0), np.float64)
    spread = float(feats.std(0).mean())
    if not spread > 1e-3:
        raise AssertionError(f"random backbone features are degenerate (spread {spread:g})")
    kernel, bias = _fit_head(feats, labels, num_classes)
    dense = keras.layers.Dense(num_classes, activation="softmax", name="head")
    outputs = dense(features)
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs, name="edgetl_classifier")


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
        "backbone": {"version": "v1", "alpha": 0.25, "resolution": RESOLUTION, "weights": "none (random)",
                     "weights_sha256": ""},
        "training": {"head": "logistic regression fitted by tests/export_fixtures.py"},
        "metrics": {},
        "num_skipped_files": 0,
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    return run_dir


def build_export_run(root: Path) -> ExportRun:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgetl.data import load_image, scan_dataset

    image_dir = copy_photos(root / "photos")
    dataset = scan_dataset(image_dir, VALIDATION_PERCENTAGE, TESTING_PERCENTAGE)
    images = np.stack([load_image(r.path, RESOLUTION) for r in dataset.records])
    labels = np.array([r.label_index for r in dataset.records])
    model = build_model(images, labels, len(dataset.classes))
    run_dir = write_run_dir(root / "run", model, image_dir, dataset.classes)
    return ExportRun(run_dir, image_dir, dataset.classes, RESOLUTION)


def copy_run(run: ExportRun, dst: Path) -> Path:
    """A private copy of the run directory (artifacts and export.json are per test)."""
    shutil.copytree(run.run_dir, dst, ignore=shutil.ignore_patterns("artifacts"))
    return dst
