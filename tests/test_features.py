"""edgetl.features.bottlenecks: the bottleneck cache, with a real backbone (V1 0.25 at 96 px, ImageNet) on real
photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import FLOWERS, WEIGHTS_DIR, copy_subset

from edgetl.data.dataset import ImageRecord, SplitConfig, scan_dataset
from edgetl.features.backbones import BackboneSpec, build_feature_extractor, resolve_weights
from edgetl.features.bottlenecks import DIGEST_BYTES, cache_key, compute_features, default_cache_dir
from edgetl.runtime.images import load_image

SPEC = BackboneSpec("v1", 0.25, 96)
RES = SPEC.resolution


class CountingEmbed:
    """The real extractor, counting the images it is asked to embed (a cache hit must not reach it)."""

    def __init__(self, model):
        self.model = model
        self.images = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.shape[1:] == (RES, RES, 3)
        self.images += len(batch)
        return self.model.predict_on_batch(batch)


@pytest.fixture(scope="module")
def backbone():
    weights = resolve_weights(SPEC, "imagenet", WEIGHTS_DIR)
    return build_feature_extractor(SPEC, weights), cache_key(SPEC.id, weights.sha256, RES)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[ImageRecord]:
    root = copy_subset(FLOWERS, tmp_path_factory.mktemp("flowers") / "ds", ["daisy", "roses"], 9)
    return scan_dataset(root, SplitConfig(30, 30)).records


def entry_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.bin"))


def run(records, backbone, cache_dir, **kw):
    model, key = backbone
    embed = CountingEmbed(model)
    result = compute_features(records, embed, key, RES, cache_dir=cache_dir, batch_size=kw.pop("batch_size", 5), **kw)
    return result, embed


def test_second_run_computes_nothing(records, backbone, tmp_path):
    first, embed1 = run(records, backbone, tmp_path)
    assert (first.computed, first.cached, first.failed) == (len(records), 0, {})
    assert embed1.images == len(records)
    assert first.features.shape == (len(records), 256) and first.features.dtype == np.float32
    assert len(entry_files(tmp_path)) == len(records)
    second, embed2 = run(records, backbone, tmp_path)
    assert (second.computed, second.cached) == (0, len(records))
    assert embed2.images == 0
    assert [r.path for r in second.records] == [r.path for r in records]
    np.testing.assert_array_equal(second.features, first.features)


def test_cached_vectors_equal_freshly_computed_ones(records, backbone, tmp_path):
    model, _ = backbone
    run(records, backbone, tmp_path)
    cached, embed = run(records, backbone, tmp_path)
    assert embed.images == 0
    fresh = np.asarray(
        model.predict(np.stack([load_image(r.path, RES) for r in records]).astype(np.float32), verbose=0)
    )
    np.testing.assert_allclose(cached.features, fresh, rtol=1e-5, atol=1e-5)
    # the rows are in record order, not cache or completion order
    one = np.asarray(model.predict(load_image(records[-1].path, RES)[None].astype(np.float32), verbose=0))[0]
    np.testing.assert_allclose(cached.features[-1], one, rtol=1e-5, atol=1e-5)


def test_partial_cache_computes_only_the_missing(records, backbone, tmp_path):
    first, _ = run(records[:5], backbone, tmp_path)
    both, embed = run(records, backbone, tmp_path)
    assert (both.computed, both.cached) == (len(records) - 5, 5)
    assert embed.images == len(records) - 5
    np.testing.assert_array_equal(both.features[:5], first.features)


@pytest.mark.parametrize(
    "damage",
    ["truncate", "truncate_to_digest", "empty", "flip_bit_in_vector", "flip_bit_in_digest", "append_garbage"],
)
def test_damaged_cache_entry_is_detected_and_recomputed(records, backbone, tmp_path, damage):
    first, _ = run(records, backbone, tmp_path)
    victim = records[0 if damage in ("truncate", "flip_bit_in_vector") else 3]  # first entry too: it sets the size
    (entry,) = [p for p in entry_files(tmp_path) if p.stem == victim.content_hash]
    blob = bytearray(entry.read_bytes())
    assert len(blob) == 256 * 4 + DIGEST_BYTES
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "truncate_to_digest":
        blob = blob[-DIGEST_BYTES:]
    elif damage == "empty":
        blob = bytearray()
    elif damage == "flip_bit_in_vector":
        blob[100] ^= 0x01
    elif damage == "flip_bit_in_digest":
        blob[-1] ^= 0x80
    elif damage == "append_garbage":
        blob += b"\0\0\0\0"
    entry.write_bytes(bytes(blob))

    again, embed = run(records, backbone, tmp_path)
    assert (again.computed, again.cached) == (1, len(records) - 1)
    assert embed.images == 1
    np.testing.assert_allclose(again.features, first.features, rtol=1e-5, atol=1e-5)
    # the entry was repaired: a third run reads everything from the cache
    third, embed3 = run(records, backbone, tmp_path)
    assert (third.computed, embed3.images) == (0, 0)
    assert entry.stat().st_size == 256 * 4 + DIGEST_BYTES


def test_decode_failures_are_reported_and_never_cached(records, backbone, tmp_path):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    text = bad_dir / "notes.jpg"
    text.write_text("this is not a photo")
    empty = bad_dir / "empty.jpg"
    empty.write_bytes(b"")
    truncated = bad_dir / "cut.jpg"
    truncated.write_bytes(records[0].path.read_bytes()[:1500])
    bad = []
    for p in (text, empty, truncated):
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        bad.append(ImageRecord(p, "daisy", 0, digest, "training"))
    mixed = records[:2] + bad[:2] + records[2:4] + bad[2:]
    cache = tmp_path / "cache"

    result, embed = run(mixed, backbone, cache, batch_size=3)
    assert set(result.failed) == {text, empty, truncated}
    for path, why in result.failed.items():
        assert why, path
    assert "truncated" in result.failed[truncated].lower()
    assert [r.path for r in result.records] == [r.path for r in records[:4]]
    assert result.features.shape == (4, 256)
    assert (result.computed, result.cached) == (4, 0)
    stems = {p.stem for p in entry_files(cache)}
    assert stems == {r.content_hash for r in records[:4]}
    assert not any(b.content_hash in stems for b in bad)

    again, embed = run(mixed, backbone, cache, batch_size=3)
    assert set(again.failed) == {text, empty, truncated}  # reported again, not remembered as good
    assert (again.computed, again.cached, embed.images) == (0, 4, 0)


def test_the_skipping_warning_names_the_file(records, backbone, tmp_path, capsys):
    bad = tmp_path / "broken_photo.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really")
    rec = ImageRecord(bad, "daisy", 0, hashlib.sha256(bad.read_bytes()).hexdigest(), "training")
    run([rec] + records[:1], backbone, tmp_path / "cache")
    out = capsys.readouterr().out
    assert f"skipping {bad}" in out


def test_everything_failing_gives_an_empty_feature_set(backbone, tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("nope")
    rec = ImageRecord(bad, "a", 0, hashlib.sha256(b"nope").hexdigest(), "training")
    result, embed = run([rec], backbone, tmp_path / "cache")
    assert result.records == [] and len(result.features) == 0 and list(result.failed) == [bad]
    assert embed.images == 0


def test_cache_key_separates_backbones_weights_and_resolution():
    base = cache_key("v1-a0.25-r96", "abc", 96)
    assert base == cache_key("v1-a0.25-r96", "abc", 96)
    others = {
        cache_key("v1-a0.5-r96", "abc", 96),
        cache_key("v1-a0.25-r96", "abd", 96),
        cache_key("v1-a0.25-r96", "", 96),
        cache_key("v1-a0.25-r128", "abc", 128),
    }
    assert base not in others and len(others) == 4


def test_identical_files_share_one_cache_entry(records, backbone, tmp_path):
    dup_path = tmp_path / "copy.jpg"
    dup_path.write_bytes(records[0].path.read_bytes())
    dup = ImageRecord(dup_path, "roses", 1, records[0].content_hash, "training")
    result, embed = run([records[0], dup], backbone, tmp_path / "cache")
    assert len(entry_files(tmp_path / "cache")) == 1
    assert len(result.records) == 2
    np.testing.assert_allclose(result.features[0], result.features[1], rtol=1e-5, atol=1e-5)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGETL_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "bottlenecks"


def test_litert_engine_matches_tensorflow_and_reports_its_check(backbone, records):
    from edgetl.features.engine import CHECK_IMAGES, FEATURE_TOLERANCE, Embedder

    model, _ = backbone
    batch = np.stack([load_image(r.path, RES) for r in records[:6]]).astype(np.float32)
    embed = Embedder(model, "litert")
    ours, later = embed(batch), embed(batch[:2])
    reference = np.asarray(model.predict_on_batch(batch), np.float32)
    assert embed.engine == "litert" and embed.info["checked_images"] == min(CHECK_IMAGES, len(batch))
    assert 0 <= embed.info["max_abs_diff_vs_tensorflow"] <= FEATURE_TOLERANCE
    np.testing.assert_allclose(ours, reference, atol=FEATURE_TOLERANCE)
    np.testing.assert_allclose(later, ours[:2], atol=1e-6)


def test_a_wrong_conversion_falls_back_to_tensorflow(backbone, records, monkeypatch, capsys):
    """Another backbone's flatbuffer stands in for a conversion gone wrong: the check catches it."""
    import edgetl.features.engine as engine

    model, _ = backbone
    other = build_feature_extractor(SPEC, resolve_weights(SPEC, "none"))  # random weights: other features
    monkeypatch.setattr(engine, "convert_backbone", lambda _extractor, real=engine.convert_backbone: real(other))
    batch = np.stack([load_image(r.path, RES) for r in records[:3]]).astype(np.float32)
    embed = engine.Embedder(model, "litert")
    features = embed(batch)
    assert embed.engine == "tensorflow" and "check failed" in embed.info["engine"]
    assert embed.info["max_abs_diff_vs_tensorflow"] > engine.FEATURE_TOLERANCE
    said = capsys.readouterr()
    assert "LiteRT features differ from TensorFlow's" in said.out + said.err
    np.testing.assert_allclose(features, model.predict_on_batch(batch), atol=1e-6)
