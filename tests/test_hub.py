"""--tfhub_module: a local SavedModel image feature-vector module, loaded with hub.load (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FLOWERS, WEIGHTS_DIR, copy_subset

from edgetl.cli.main import main

pytestmark = pytest.mark.slow  # real training, conversion or sweeps: minutes


@pytest.fixture(scope="module")
def hub_module(tmp_path_factory) -> Path:
    """A TF Hub-style feature-vector module: float images in [0, 1] -> pooled ImageNet MobileNet features."""
    import keras
    import tensorflow as tf

    class FeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self.net = keras.applications.MobileNet(
                alpha=0.25,
                include_top=False,
                pooling="avg",
                input_shape=(96, 96, 3),
                weights=str(WEIGHTS_DIR / "mobilenet_2_5_224_tf_no_top.h5"),
            )

        @tf.function(input_signature=[tf.TensorSpec([None, 96, 96, 3], tf.float32)])
        def __call__(self, images):
            return self.net(images * 2.0 - 1.0, training=False)

    path = tmp_path_factory.mktemp("hub") / "mobilenet_feature_vector"
    tf.saved_model.save(FeatureVector(), str(path))
    return path


def test_train_with_a_local_hub_module(hub_module, tmp_path, capsys):
    data = copy_subset(FLOWERS, tmp_path / "flowers", ["daisy", "sunflowers"], 20)
    run = tmp_path / "run"
    args = [
        "train",
        "--image_dir",
        str(data),
        "--tfhub_module",
        str(hub_module),
        "--resolution",
        "96",
        "--bottleneck_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(run),
    ]
    assert main(args) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["backbone"]["version"] == "hub" and info["backbone"]["weights"] == f"hub:{hub_module}"
    assert info["metrics"]["test_accuracy"] > 0.7  # real ImageNet features separate daisies from sunflowers

    import keras

    from edgetl.data.dataset import scan_dataset
    from edgetl.features.backbones import register_custom_layers
    from edgetl.runtime import load_model, read_metadata
    from edgetl.runtime.images import load_image

    register_custom_layers()
    model = keras.saving.load_model(run / "model.keras", compile=False)
    test = scan_dataset(data).split("testing")
    images = np.stack([load_image(r.path, 96) for r in test])
    keras_top = model.predict_on_batch(images.astype(np.float32)).argmax(axis=1)
    tflite_top = load_model(run / "model.tflite").predict(images).argmax(axis=1)
    assert (keras_top == tflite_top).all()
    assert read_metadata(run / "model.tflite")["labels"] == ["daisy", "sunflowers"]

    capsys.readouterr()
    assert main(args) == 0
    assert "bottlenecks: 0 computed" in capsys.readouterr().out


def test_missing_hub_module_is_a_clear_error(tmp_path, capsys):
    data = copy_subset(FLOWERS, tmp_path / "flowers", ["daisy", "sunflowers"], 20)
    code = main(
        [
            "train",
            "--image_dir",
            str(data),
            "--tfhub_module",
            str(tmp_path / "nope"),
            "--resolution",
            "96",
            "--output_dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_hub_run_exports_to_tflite_and_onnx(hub_module, tmp_path):
    data = copy_subset(FLOWERS, tmp_path / "flowers", ["daisy", "sunflowers"], 20)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--image_dir",
                str(data),
                "--tfhub_module",
                str(hub_module),
                "--resolution",
                "96",
                "--output_dir",
                str(run),
            ]
        )
        == 0
    )
    assert main(["export", "--run", str(run), "--format", "tflite,onnx", "--quantize", "float32"]) == 0
    summary = json.loads((run / "artifacts" / "export.json").read_text())["formats"]
    for fmt in ("tflite-float32", "onnx-float32"):
        assert summary[fmt]["status"] == "ok" and summary[fmt]["agreement"] == 1.0
