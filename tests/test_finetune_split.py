"""Fine-tuning on cached activations (`edgetl.train.split`): where the classifier is cut, that the cached
activations are the frozen part's output of each view, and that training the upper part trains the
classifier itself, which stays a raw-pixels-in model that converts to TFLite and answers the same there.
Tiny models (V2 0.35 @96 with random weights for the residual cut, V1 0.25 @96 with ImageNet's) and 24 photos.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FLOWERS, WEIGHTS_DIR, copy_subset

from edgetl.features.backbones import BackboneSpec, ResolvedWeights, build_feature_extractor, resolve_weights
from edgetl.train.finetune import FineTuneConfig, fine_tune, unfreeze_top
from edgetl.train.head import Head, HeadConfig
from edgetl.train.run import build_classifier
from edgetl.train.split import backbone_of, cache_views, split_classifier

RES = 96


def classifier(version: str, alpha: float, imagenet: bool, classes: int = 3):
    spec = BackboneSpec(version, alpha, RES)
    weights = resolve_weights(spec, "imagenet", WEIGHTS_DIR) if imagenet else ResolvedWeights(None, "random", "", "")
    extractor = build_feature_extractor(spec, weights)
    width = int(extractor.output.shape[-1])
    rng = np.random.default_rng(0)
    head = Head(rng.normal(0, 0.05, (width, classes)).astype(np.float32), np.zeros(classes, np.float32))
    return build_classifier(extractor, head, classes)


def pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, RES, RES, 3)).astype(np.uint8)


def test_the_cut_steps_below_a_residual_connection_and_the_parts_compose_to_the_classifier():
    model = classifier("v2", 0.35, imagenet=False)
    # The last 100 layers of MobileNet V2 start right after block 5's residual add: one tensor crosses.
    unfreeze_top(model, 100)
    assert split_classifier(model, 100).cut == "block_5_add"
    # 105 would start inside block 5, where block 4's output still crosses by the skip connection: the cut
    # goes down to block 4's output, and block 5's first layers run frozen in the upper part.
    unfreeze_top(model, 105)
    split = split_classifier(model, 105)
    assert split.cut == "block_4_add" and split.shape == (RES // 8, RES // 8, 16)
    assert not backbone_of(model).get_layer("block_5_expand").trainable
    images = pixels(4).astype(np.float32)
    whole = model.predict(images, verbose=0)
    parts = split.upper.predict(split.lower.predict(images, verbose=0), verbose=0)
    np.testing.assert_allclose(parts, whole, atol=1e-5)


def test_cached_views_are_the_frozen_part_output_of_each_augmented_view():
    import keras
    import tensorflow as tf

    model = classifier("v1", 0.25, imagenet=True)
    unfreeze_top(model, 6)
    split = split_classifier(model, 6)
    images = pixels(5)
    flip = lambda data, size: data.batch(size).map(lambda a: tf.cast(a[:, :, ::-1], tf.float32))  # noqa: E731
    cached, engine = cache_views(split, images, 2, flip, batch_size=2)
    # The reference is built apart from the split: the backbone's own layer, fed the flipped photos scaled.
    backbone = backbone_of(model)
    frozen = keras.Model(backbone.input, backbone.get_layer(split.cut).output)
    expected = frozen.predict(images[:, :, ::-1].astype(np.float32) / 127.5 - 1.0, verbose=0)
    assert cached.shape == (2, 5, *split.shape) and cached.nbytes == 2 * 5 * split.bytes_per_image
    np.testing.assert_allclose(cached[0], expected, rtol=1e-4, atol=1e-4)  # LiteRT's float rounding
    assert engine["engine"] == "litert" and engine["max_abs_diff_vs_tensorflow"] < 1e-4
    np.testing.assert_array_equal(cached[1], cached[0])
    plain = cache_views(split, images, 1, None, batch_size=3)[0][0]
    assert np.abs(plain - cached[0]).max() > 1e-3  # the flip did reach the cache


def test_fine_tuning_on_cached_views_trains_the_classifier_which_converts_like_any_other(tmp_path):
    import keras

    from edgetl.data.dataset import SplitConfig, scan_dataset
    from edgetl.export import ModelSource, export_artifact
    from edgetl.runtime.model import load_model
    from edgetl.train.finetune import predict

    photos = copy_subset(FLOWERS, tmp_path / "photos", ["daisy", "roses", "tulips"], 8)
    dataset = scan_dataset(photos, SplitConfig(25, 25))
    splits = {}
    for name in ("training", "validation"):
        records = dataset.split(name)
        labels = np.array([r.label_index for r in records])
        splits[name] = (None, labels, records)
    model = classifier("v1", 0.25, imagenet=True)
    layers = backbone_of(model).layers
    before = [[w.copy() for w in layer.get_weights()] for layer in layers]
    config = FineTuneConfig(layers=6, max_epochs=2, views=2, batch_size=4, learning_rate=1e-3)
    result = fine_tune(model, splits, RES, HeadConfig(), config, log=lambda line: None)
    info = result.info
    assert result.model is model and info["views"] == 2 and info["cut"] == backbone_of(model).layers[-7].name
    assert info["cache_megabytes"] > 0 and info["cache_engine"] == "litert" and 1 <= info["epochs_run"] <= 2
    changed = [
        i
        for i, (layer, old) in enumerate(zip(layers, before))
        if any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), old))
    ]
    assert changed and min(changed) >= len(layers) - 6  # the top 6 trained, nothing below the cut moved
    assert not model.trainable_weights  # frozen again for inference
    assert tuple(model.input.shape) == (None, RES, RES, 3)
    records = dataset.split("training")[:4]
    probs = predict(model, records, RES)
    reloaded = tmp_path / "model.keras"
    model.save(reloaded)
    np.testing.assert_allclose(predict(keras.saving.load_model(reloaded), records, RES), probs, atol=1e-6)
    path = export_artifact(
        ModelSource(model, None), "tflite-float32", tmp_path / "m.tflite", {"labels": dataset.classes}
    )
    from edgetl.data.dataset import decode_images

    images, _, _ = decode_images(records, RES)
    np.testing.assert_allclose(load_model(path).predict(images.astype(np.float32)), probs, atol=1e-4)


@pytest.mark.parametrize("views", [-1, 1.5])
def test_views_must_be_a_whole_number_from_zero(views):
    with pytest.raises(ValueError, match="views"):
        FineTuneConfig(views=views)


def test_a_sweep_retrains_a_fine_tuned_point_when_its_views_change(tmp_path):
    from dataclasses import replace

    from edgetl.sweep.config import SweepConfig, train_key

    spec, weights = BackboneSpec("v1", 0.25, 96), ResolvedWeights(None, "random", "", "")
    config = SweepConfig(image_dir=tmp_path, output_dir=tmp_path / "out", points=(spec,))
    keys = [train_key(replace(config, fine_tune=FineTuneConfig(views=v)), spec, weights) for v in (0, 1, 2)]
    assert len(set(keys)) == 3 and train_key(config, spec, weights) not in keys
