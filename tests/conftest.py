"""Shared pytest fixtures."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from edgetl.measure.results import ArtifactResult

# ---------------------------------------------------------------------------------------------------------
# tiny_models: small real models (float32 TFLite, full-int8 TFLite, ONNX) with embedded metadata.
# TensorFlow is imported inside the fixture only, so tests that don't use it don't pay for it.

TINY_LABELS = ["daisy", "roses", "tulips"]
TINY_SIZE = 96


@dataclass
class TinyModels:
    dir: Path
    labels: list[str]
    size: int
    keras_model: object
    float_tflite: Path  # float32 in/out, written as `edgetl export` writes it (standard metadata)
    int8_tflite: Path  # full-int8, uint8 in/out, metadata embedded
    onnx: Path  # float32, metadata_props "edgetl" and "labels"
    bare_float_tflite: Path  # the float32 flatbuffer exactly as the converter wrote it (no metadata)
    bare_onnx: Path  # the ONNX without metadata_props
    meta: dict[str, dict]  # format -> the edgetl.json dict given to the writer (a .tflite adds model_sha256)
    images: list[Path]  # photos written with Pillow (PNG and JPEG, assorted sizes)
    pixels: np.ndarray  # edgetl.data.dataset.load_image of each image, uint8 (N, size, size, 3)
    keras_probs: np.ndarray  # the Keras model's probabilities for `pixels`
    extra: dict = field(default_factory=dict)

    @property
    def keras_top(self) -> list[str]:
        return [self.labels[i] for i in self.keras_probs.argmax(axis=1)]


def synthetic_images(n: int, size: int = TINY_SIZE, seed: int = 0, height: int | None = None) -> np.ndarray:
    """Deterministic, varied uint8 RGB images (flat colour + noise, gradients, stripes, checkers)."""
    rng = np.random.default_rng(seed)
    h = height or size
    yy, xx = np.mgrid[0:h, 0:size] / max(h, size)
    out = []
    for i in range(n):
        c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        kind = i % 4
        if kind == 0:
            img = c1 + rng.normal(0, 12, (h, size, 3))
        elif kind == 1:
            t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
            t = (t - t.min()) / (np.ptp(t) + 1e-9)
            img = c1 * (1 - t) + c2 * t
        elif kind == 2:
            f = rng.integers(2, 16)
            img = np.where((np.sin(2 * np.pi * f * (xx if rng.random() < 0.5 else yy)) > 0)[..., None], c1, c2)
        else:
            f = rng.integers(2, 12)
            img = np.where((((xx * f).astype(int) + (yy * f).astype(int)) % 2 == 0)[..., None], c1, c2)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def set_batchnorm_statistics(batchnorms: list, forward, images: np.ndarray, beta: float) -> None:
    """Make a random-weight net say something: BatchNorm moving statistics := one batch's, beta raised.

    With weights=None a MobileNet's activations vanish through its blocks (every image gets the same
    features), so one training-mode pass (`forward(images)`, momentum 0) sets the statistics from
    `images`, and beta keeps most ReLU6 units active: a smooth random net that int8 can track (with
    beta 0 int8 features have ~0.8x the image-to-image spread as noise; with 2, ~0.15x).
    """
    for layer in batchnorms:
        layer.momentum = 0.0
        layer.beta.assign(np.full(layer.beta.shape, beta, np.float32))
    forward(images)
    for layer in batchnorms:
        layer.momentum = 0.99


def informative_mobilenet(size: int, num_classes: int, images: np.ndarray, labels: np.ndarray | None = None):
    """edgetl's own classifier (edgetl.features.backbones + edgetl.train.run), MobileNet V1 0.25 with random weights,
    made to say something: BatchNorm statistics from `images` (uint8), and a head that is either fitted
    to `labels` (logistic regression) or random but scaled so its answers are confident and vary."""
    import keras

    from edgetl.features.backbones import BackboneSpec, ResolvedWeights, build_feature_extractor
    from edgetl.train.head import Head
    from edgetl.train.run import build_classifier

    keras.utils.set_random_seed(0)
    extractor = build_feature_extractor(BackboneSpec("v1", 0.25, size), ResolvedWeights(None, "random", "", ""))
    backbone = next(layer for layer in extractor.layers if isinstance(layer, keras.Model))
    bns = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    backbone.trainable = True  # a frozen BatchNorm ignores training=True
    set_batchnorm_statistics(bns, lambda x: backbone(x.astype(np.float32) / 127.5 - 1.0, training=True), images, 2.0)
    backbone.trainable = False
    features = np.asarray(extractor.predict(images.astype(np.float32), verbose=0), np.float64)
    if not float(features.std(0).mean()) > 1e-3:
        raise AssertionError("random backbone features are degenerate")
    if labels is not None:
        kernel, bias = fit_logistic_head(features, labels, num_classes)
    else:
        kernel = np.random.default_rng(7).normal(size=(features.shape[1], num_classes))
        kernel = kernel / (features @ kernel).std(axis=0) * 3.0
        bias = -(features @ kernel).mean(axis=0)
    return build_classifier(extractor, Head(kernel.astype(np.float32), bias.astype(np.float32)), num_classes)


def fit_logistic_head(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
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


def build_tiny_models(out_dir: Path) -> TinyModels:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnx
    import tensorflow as tf
    import tf2onnx
    from PIL import Image

    from edgetl import __version__
    from edgetl.export.onnx import with_metadata
    from edgetl.export.tflite import finish
    from edgetl.runtime.images import PREPROCESSING, load_image

    out_dir.mkdir(parents=True, exist_ok=True)
    size, labels = TINY_SIZE, list(TINY_LABELS)
    model = informative_mobilenet(size, len(labels), synthetic_images(32, size, seed=123))

    def meta(fmt: str) -> dict:
        return {
            "edgetl_version": __version__,
            "format": fmt,
            "labels": labels,
            "backbone": {"version": "v1", "alpha": 0.25, "resolution": size, "weights": "none"},
            "input": {"size": size, "mean": 0.0, "std": 1.0, "preprocessing": PREPROCESSING},
        }

    metas = {f: meta(f) for f in ("tflite-float32", "tflite-int8", "onnx")}

    saved_model = out_dir / "saved_model"
    model.export(str(saved_model), verbose=False)

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    float_bytes = converter.convert()
    bare_float = out_dir / "bare_float.tflite"
    bare_float.write_bytes(float_bytes)
    float_path = out_dir / "float.tflite"
    float_path.write_bytes(finish(float_bytes, metas["tflite-float32"]))  # as `edgetl export` writes it

    def representative_dataset():
        # Random images like the photos (pure per-pixel noise gives activation ranges that fit them badly).
        for image in synthetic_images(20, size, seed=42):
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    int8_path = out_dir / "int8.tflite"
    int8_path.write_bytes(finish(converter.convert(), metas["tflite-int8"]))

    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    bare_onnx = out_dir / "bare.onnx"
    onnx.save(proto, str(bare_onnx))
    with_metadata(proto, metas["onnx"])
    onnx_path = out_dir / "model.onnx"
    onnx.save(proto, str(onnx_path))

    image_dir = out_dir / "images"
    image_dir.mkdir(exist_ok=True)
    images = []
    for i, arr in enumerate(synthetic_images(6, 120, seed=5, height=90)):
        images.append(image_dir / f"photo_{i}.png")
        Image.fromarray(arr).save(images[-1])
    for i, arr in enumerate(synthetic_images(6, 128, seed=6)):
        images.append(image_dir / f"photo_{i}.jpg")
        Image.fromarray(arr).save(images[-1], quality=95)
    pixels = np.stack([load_image(p, size) for p in images])
    keras_probs = np.asarray(model.predict(pixels.astype(np.float32), verbose=0))

    return TinyModels(
        dir=out_dir,
        labels=labels,
        size=size,
        keras_model=model,
        float_tflite=float_path,
        int8_tflite=int8_path,
        onnx=onnx_path,
        bare_float_tflite=bare_float,
        bare_onnx=bare_onnx,
        meta=metas,
        images=images,
        pixels=pixels,
        keras_probs=keras_probs,
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


# ---------------------------------------------------------------------------------------------------------
# Test data and a hermetic environment: the real photos and weights live in ../shared (EDGETL_TEST_DATA);
# tests never download and never touch the user's caches.

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = Path(os.environ.get("EDGETL_TEST_DATA", REPO_ROOT.parent / "shared")).resolve()
FLOWERS = TEST_DATA / "datasets" / "flowers"
CATS_DOGS = TEST_DATA / "datasets" / "cats_dogs"
WEIGHTS_DIR = TEST_DATA / "weights"


@pytest.fixture(scope="session", autouse=True)
def _hermetic_environment(tmp_path_factory):
    home = tmp_path_factory.mktemp("keras_home")
    names = ("EDGETL_NO_DOWNLOAD", "KERAS_HOME", "EDGETL_WEIGHTS_DIR", "EDGETL_CACHE_DIR", "TF_CPP_MIN_LOG_LEVEL")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        EDGETL_NO_DOWNLOAD="1",
        KERAS_HOME=str(home),
        TF_CPP_MIN_LOG_LEVEL="2",
        EDGETL_CACHE_DIR=str(tmp_path_factory.mktemp("edgetl_cache")),
    )
    os.environ.pop("EDGETL_WEIGHTS_DIR", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def copy_subset(src: Path, dst: Path, classes: list[str], per_class: int) -> Path:
    """A small class-folder dataset: the first `per_class` photos (sorted) of each class, copied."""
    import shutil

    if not src.is_dir():
        pytest.fail(f"test data not found at {src}; set EDGETL_TEST_DATA to the folder holding datasets/ and weights/")
    for c in classes:
        (dst / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / c).iterdir())[:per_class]:
            shutil.copy2(f, dst / c / f.name)
    return dst


# ---------------------------------------------------------------------------------------------------------
# make_result: ArtifactResult rows for the pick and report tests (no files, no TensorFlow).

_counter = itertools.count()


def make_result(
    accuracy: float = 0.8,
    latency: float = 10.0,
    size_mb: float = 4.0,
    *,
    point: str | None = None,
    format: str = "tflite-float32",
    status: str = "ok",
    **overrides,
) -> ArtifactResult:
    """An ArtifactResult with plausible values; only the three Pareto axes usually matter.

    Shared by tests/test_pareto.py and tests/test_report.py.
    Size is given in decimal MB (1e6 bytes) to match edgetl.pick.pareto.BYTES_PER_MB.
    """
    n = next(_counter)
    point = point if point is not None else f"v2-a1.0-r224-{n}"
    fields = dict(
        point=point,
        backbone="v2",
        alpha=1.0,
        resolution=224,
        format=format,
        path=f"artifacts/{point}/{format}.bin",
        size_bytes=int(round(size_mb * 1_000_000)),
        accuracy=accuracy,
        top5_accuracy=None,
        latency_ms_p50=latency,
        latency_ms_p90=latency * 1.2,
        latency_ms_p99=latency * 1.5,
        latency_ms_mean=latency * 1.05,
        num_threads=4,
        peak_rss_mib=120.5,
        macs=300_000_000,
        params=3_500_000,
        num_test_images=200,
        per_class_accuracy={"daisy": accuracy, "rose": accuracy},
        confusion_matrix=[[90, 10], [10, 90]],
        status=status,
    )
    fields.update(overrides)
    from edgetl.measure.results import ArtifactResult

    return ArtifactResult(**fields)
