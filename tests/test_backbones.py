"""edgetl.features.backbones with the real ImageNet weight files in ../shared/weights: names, lookup, models, MACs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FLOWERS, WEIGHTS_DIR

from edgetl.features.backbones import (
    ALPHAS,
    KERAS_RESOLUTIONS,
    BackboneSpec,
    ResolvedWeights,
    WeightsNotFoundError,
    build_feature_extractor,
    count_macs,
    keras_cache_dir,
    resolve_weights,
    weights_file_name,
)
from edgetl.runtime.images import load_image

SHARED_FILES = sorted(p.name for p in WEIGHTS_DIR.glob("*.h5"))
RANDOM = ResolvedWeights(None, "random", "", "")


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """A private, empty Keras cache for one test (the session one is shared)."""
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv("EDGETL_WEIGHTS_DIR", raising=False)
    return home


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Four real flower photos (two daisies, two roses) as uint8 128x128."""
    paths = sorted((FLOWERS / "daisy").iterdir())[:2] + sorted((FLOWERS / "roses").iterdir())[:2]
    return np.stack([load_image(p, 128) for p in paths])


def _spec_for_file(name: str) -> list[tuple[str, float, int]]:
    return [
        (v, a, r) for v in ALPHAS for a in ALPHAS[v] for r in KERAS_RESOLUTIONS[v] if weights_file_name(v, a, r) == name
    ]


# ---------------------------------------------------------------------------------------------------------
# file names


def test_shared_weights_are_present():
    assert len(SHARED_FILES) == 5, f"expected the 5 ImageNet files in {WEIGHTS_DIR}, found {SHARED_FILES}"


@pytest.mark.parametrize("name", SHARED_FILES)
def test_weights_file_name_produces_each_shared_file_name(name):
    matches = _spec_for_file(name)
    assert len(matches) == 1, (name, matches)


@pytest.fixture
def keras_own_models_dir():
    """The folder Keras' weights="imagenet" reads. Keras fixes it when first imported (from KERAS_HOME then),
    so it is asked, not assumed; whatever a test adds there is removed afterwards."""
    from keras.src.backend.config import keras_home  # private accessor; there is no public one

    models = Path(keras_home()) / "models"
    models.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(models))
    yield models
    for name in set(os.listdir(models)) - before:
        (models / name).unlink()


@pytest.mark.parametrize("name", SHARED_FILES)
def test_keras_itself_loads_each_file_by_that_name(name, keras_own_models_dir):
    """Keras' weights="imagenet" asks its cache for the very name weights_file_name gives (else: a download)."""
    import keras

    ((version, alpha, resolution),) = _spec_for_file(name)
    before = set(os.listdir(keras_own_models_dir))
    assert name not in before
    (keras_own_models_dir / name).symlink_to(WEIGHTS_DIR / name)
    family = keras.applications.MobileNet if version == "v1" else keras.applications.MobileNetV2
    # Offline, a different name would raise "URL fetch failure" here.
    model = family(weights="imagenet", include_top=False, alpha=alpha, input_shape=(resolution, resolution, 3))
    assert model.count_params() > 0
    assert set(os.listdir(keras_own_models_dir)) - before == {name}  # nothing else fetched or written


def test_weights_file_name_follows_keras_alpha_spelling():
    assert weights_file_name("v1", 0.25, 128) == "mobilenet_2_5_128_tf_no_top.h5"
    assert weights_file_name("v1", 0.5, 192) == "mobilenet_5_0_192_tf_no_top.h5"
    assert weights_file_name("v1", 0.75, 160) == "mobilenet_7_5_160_tf_no_top.h5"
    assert weights_file_name("v2", 0.35, 96) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert weights_file_name("v2", 1.3, 224) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.3_224_no_top.h5"
    assert weights_file_name("v2", 1, 224) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


# ---------------------------------------------------------------------------------------------------------
# resolving


def test_exact_file_from_weights_dir():
    spec = BackboneSpec("v1", 0.25, 224)
    w = resolve_weights(spec, "imagenet", WEIGHTS_DIR)
    assert w.path == WEIGHTS_DIR / "mobilenet_2_5_224_tf_no_top.h5"
    assert w.source == "weights_dir"
    assert w.description == "imagenet:mobilenet_2_5_224_tf_no_top.h5"
    assert w.sha256 == "dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf"  # weights/PROOF.md


def test_resolution_fallback_uses_the_same_alpha_at_another_size_with_a_note():
    w = resolve_weights(BackboneSpec("v1", 0.25, 128), "imagenet", WEIGHTS_DIR)
    assert w.path == WEIGHTS_DIR / "mobilenet_2_5_224_tf_no_top.h5"
    assert "128" in w.note and "224" in w.note and w.path.name in w.note
    # nearest resolution that exists: V1 0.5 exists only at 160
    w = resolve_weights(BackboneSpec("v1", 0.5, 224), "imagenet", WEIGHTS_DIR)
    assert w.path.name == "mobilenet_5_0_160_tf_no_top.h5" and "160" in w.note
    # an exact match carries no fallback note
    w = resolve_weights(BackboneSpec("v1", 0.75, 192), "imagenet", WEIGHTS_DIR)
    assert w.path.name == "mobilenet_7_5_192_tf_no_top.h5" and "using the" not in w.note


def test_weights_dir_from_environment(monkeypatch):
    monkeypatch.setenv("EDGETL_WEIGHTS_DIR", str(WEIGHTS_DIR))
    w = resolve_weights(BackboneSpec("v2", 1.0, 160), "imagenet")
    assert w.path == WEIGHTS_DIR / weights_file_name("v2", 1.0, 224)
    assert w.source == "weights_dir"


def test_keras_cache_is_searched(keras_home):
    name = weights_file_name("v2", 1.0, 224)
    (keras_home / "models" / name).symlink_to(WEIGHTS_DIR / name)
    assert keras_cache_dir() == keras_home / "models"
    w = resolve_weights(BackboneSpec("v2", 1.0, 96), "imagenet")
    assert w.path == keras_home / "models" / name
    assert w.source == "keras_cache"


def test_missing_weights_list_the_paths_looked_at_and_do_not_download(keras_home, tmp_path):
    assert os.environ.get("EDGETL_NO_DOWNLOAD") == "1"  # conftest's hermetic environment
    spec = BackboneSpec("v2", 0.35, 128)  # not among the shared files
    started = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(spec, "imagenet", WEIGHTS_DIR)
    assert time.monotonic() - started < 5  # no network timeout was waited for
    message = str(info.value)
    for directory in (WEIGHTS_DIR, keras_home / "models"):
        for r in KERAS_RESOLUTIONS["v2"]:
            assert str(directory / weights_file_name("v2", 0.35, r)) in message
    assert "download" in message and "--weights none" in message and "--weights_dir" in message
    assert os.listdir(keras_home / "models") == []  # nothing fetched, no partial download
    # the same when the caller forbids downloads explicitly
    with pytest.raises(WeightsNotFoundError):
        resolve_weights(spec, "imagenet", tmp_path, allow_download=False)
    assert isinstance(info.value, FileNotFoundError)  # the CLI prints these as a one-line user error


def test_weights_none_is_random():
    w = resolve_weights(BackboneSpec("v1", 0.25, 96), "none", WEIGHTS_DIR)
    assert w.path is None and w.source == "random" and w.sha256 == ""
    assert w.description == "none (random)"


def test_weights_as_a_file_path(tmp_path):
    path = WEIGHTS_DIR / "mobilenet_2_5_224_tf_no_top.h5"
    w = resolve_weights(BackboneSpec("v1", 0.25, 96), str(path))
    assert w.path == path and w.sha256
    with pytest.raises(WeightsNotFoundError, match="not found"):
        resolve_weights(BackboneSpec("v1", 0.25, 96), str(tmp_path / "missing.h5"))


def test_backbone_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown backbone"):
        BackboneSpec("v3", 1.0, 224)
    with pytest.raises(ValueError, match="width multiplier"):
        BackboneSpec("v1", 0.35, 224)
    with pytest.raises(ValueError, match="width multiplier"):
        BackboneSpec("v2", 0.25, 224)
    for r in (16, 1024):
        with pytest.raises(ValueError, match="resolution"):
            BackboneSpec("v2", 1.0, r)
    assert BackboneSpec("v2", 0.35, 96).id == "v2-a0.35-r96"


# ---------------------------------------------------------------------------------------------------------
# models


def test_feature_extractor_is_frozen_and_scales_pixels_inside(photos):
    import keras

    spec = BackboneSpec("v1", 0.25, 128)
    w = resolve_weights(spec, "imagenet", WEIGHTS_DIR)
    extractor = build_feature_extractor(spec, w)
    assert extractor.input_shape == (None, 128, 128, 3)
    assert extractor.output_shape == (None, 256)
    assert extractor.trainable_weights == []
    feats = np.asarray(extractor.predict(photos.astype(np.float32), verbose=0))
    # the stock Keras model on x/127.5 - 1 (Keras' mobilenet.preprocess_input) gives the same features
    reference = keras.applications.MobileNet(
        weights=str(w.path), include_top=False, alpha=0.25, input_shape=(128, 128, 3), pooling="avg"
    )
    expected = np.asarray(reference.predict(photos.astype(np.float32) / 127.5 - 1.0, verbose=0))
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-4)


def test_real_weights_give_different_features_than_random(photos):
    spec = BackboneSpec("v1", 0.25, 128)
    x = photos.astype(np.float32)
    real = np.asarray(
        build_feature_extractor(spec, resolve_weights(spec, "imagenet", WEIGHTS_DIR)).predict(x, verbose=0)
    )
    rand = np.asarray(build_feature_extractor(spec, resolve_weights(spec, "none")).predict(x, verbose=0))
    assert real.shape == rand.shape == (4, 256)
    assert np.isfinite(real).all() and np.isfinite(rand).all()
    assert not np.allclose(real, rand, atol=1e-3)
    # ImageNet features tell photos apart; the random net's activations vanish to ~the same vector
    assert real.std(axis=0).mean() > 0.1
    assert real.std(axis=0).mean() > 100 * rand.std(axis=0).mean()
    # and two daisies are closer to each other than a daisy to a rose
    unit = real / np.linalg.norm(real, axis=1, keepdims=True)
    cos = unit @ unit.T
    assert cos[0, 1] > max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3]) - 0.05


@pytest.mark.parametrize(
    "version, expected",
    [("v2", 300e6), ("v1", 569e6)],  # the papers' mult-adds at 224, alpha 1.0 (with their 1000-way FC)
)
def test_count_macs_matches_the_papers(version, expected):
    model = build_feature_extractor(BackboneSpec(version, 1.0, 224), RANDOM)
    macs = count_macs(model)
    assert abs(macs - expected) / expected < 0.01, macs


def test_count_macs_scales_with_width_and_resolution():
    small = count_macs(build_feature_extractor(BackboneSpec("v1", 0.25, 128), RANDOM))
    bigger = count_macs(build_feature_extractor(BackboneSpec("v1", 0.25, 224), RANDOM))
    # the MobileNet V1 paper's table: 0.25 at 128 -> 14M, at 224 -> 41M
    assert abs(small - 14e6) / 14e6 < 0.05, small
    assert abs(bigger - 41e6) / 41e6 < 0.05, bigger
