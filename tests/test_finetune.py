"""`edgetl train` with augmented views and with fine-tuning, end to end on a few real photos (V1 0.25 @96).

Accuracy is not the point (25 photos per class); what is checked is that the views are cached and trained
on, that fine-tuning trains exactly the layers it says (batch norm frozen), and that the result is a run
like any other: exported to every format, int8 included.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_train import flowers, private_cache, run_cli, train_args  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


def test_augmented_views_are_cached_and_trained_on(flowers, tmp_path, private_cache):  # noqa: F811
    cache = tmp_path / "cache"
    argv = train_args(flowers, tmp_path / "run", cache, "--augment_views", "2", "--no_tune")
    first = run_cli(argv, tmp_path / "run")
    assert first.rc == 0, first.out[-2000:] + first.err[-2000:]
    m = first.run["metrics"]
    assert m["num_augmented"] == 2 * m["num_train"] and first.run["augment_views"] == 2
    keys = sorted(p.name for p in cache.iterdir())
    assert len(keys) == 3 and sum(k.endswith("-view1") or k.endswith("-view2") for k in keys) == 2
    second = run_cli(argv, tmp_path / "run")
    assert "augmented views: 2 per training image" in second.out and "0 computed" in second.out
    assert second.run["metrics"]["test_accuracy"] == m["test_accuracy"]  # cached views, same seed, same head


def test_tuning_and_refit_are_recorded(flowers, tmp_path, private_cache):  # noqa: F811
    given = run_cli(train_args(flowers, tmp_path / "fixed", tmp_path / "c", "--l2", "0.01"), tmp_path / "fixed")
    assert given.rc == 0
    tuning = given.run["tuning"]
    assert {row["l2"] for row in tuning["table"]} == {0.01}  # a flag fixes its setting
    assert given.run["training"]["l2"] == 0.01 and tuning["refit_steps"] >= given.run["metrics"]["best_step"]
    assert len(tuning["table"]) == 2 * 2 * 2  # learning rate x dropout x label smoothing


@pytest.fixture(scope="module")
def fine_tuned(flowers, tmp_path_factory, private_cache):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("ft") / "run"
    argv = train_args(
        flowers,
        run_dir,
        run_dir.parent / "cache",
        "--fine_tune",
        "--fine_tune_layers",
        "6",
        "--fine_tune_epochs",
        "2",
        "--no_tune",
    )
    result = run_cli(argv, run_dir)
    assert result.rc == 0, result.out[-3000:] + result.err[-3000:]
    return run_dir, result


def test_fine_tuning_trains_the_top_layers_only_and_keeps_batch_norm(fine_tuned):
    import keras
    from conftest import WEIGHTS_DIR

    from edgetl.features.backbones import BackboneSpec, build_feature_extractor, resolve_weights

    run_dir, result = fine_tuned
    info = result.run["fine_tune"]
    assert info["layers"] == 6 and 1 <= info["epochs_run"] <= 2 and len(info["history"]) == info["epochs_run"]
    assert "fine-tuning the last 6 backbone layers" in result.out
    tuned = keras.saving.load_model(run_dir / "model.keras", compile=False)
    spec = BackboneSpec("v1", 0.25, 96)
    original = build_feature_extractor(spec, resolve_weights(spec, "imagenet", WEIGHTS_DIR))
    tuned_backbone = next(layer for layer in tuned.layers if isinstance(layer, keras.Model))
    original_backbone = next(layer for layer in original.layers if isinstance(layer, keras.Model))
    changed = [
        layer.name
        for layer, ref in zip(tuned_backbone.layers, original_backbone.layers)
        if any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), ref.get_weights()))
    ]
    top = {layer.name for layer in original_backbone.layers[-6:]}
    assert changed and set(changed) <= top
    assert not any(isinstance(tuned_backbone.get_layer(n), keras.layers.BatchNormalization) for n in changed)


def test_a_fine_tuned_run_exports_to_int8_like_any_other(fine_tuned):
    run_dir, _ = fine_tuned
    result = run_cli(["export", "--run", str(run_dir), "--quantize", "int8"])
    assert result.rc == 0, result.out[-3000:] + result.err[-3000:]
    from edgetl.export import read_export_summary

    for fmt in ("tflite-int8", "onnx-int8"):
        entry = read_export_summary(run_dir)[fmt]
        assert (run_dir / entry["path"]).is_file() and entry["status"] == "ok", entry
