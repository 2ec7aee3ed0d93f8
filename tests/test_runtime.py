"""edgetl.runtime on real models (tests/conftest.py: tiny_models): metadata, predict, errors."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from edgetl.runtime import ModelFileError, appended_zip_start, load_model, read_labels, read_metadata
from edgetl.runtime.metadata import model_sha256

# ---------------------------------------------------------------------------------------------------------
# metadata


def _written(meta: dict, path) -> dict:
    """What the .tflite writer stores: the given metadata plus the SHA-256 of the flatbuffer before the archive."""
    return {**meta, "model_sha256": model_sha256(path)}


def test_tflite_metadata_round_trip(tiny_models):
    tm = tiny_models
    assert read_metadata(tm.float_tflite) == _written(tm.meta["tflite-float32"], tm.float_tflite)
    assert read_metadata(tm.int8_tflite) == _written(tm.meta["tflite-int8"], tm.int8_tflite)
    assert read_metadata(tm.bare_float_tflite) is None
    model = load_model(tm.float_tflite)
    assert model.metadata == _written(tm.meta["tflite-float32"], tm.float_tflite)
    assert model.labels == tm.labels
    # The associated files are an ordinary zip after the flatbuffer: labels.txt + edgetl.json, as documented.
    data = tm.float_tflite.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data[appended_zip_start(data) :])) as zf:
        assert sorted(zf.namelist()) == ["edgetl.json", "labels.txt"]
        assert zf.read("labels.txt").decode().splitlines() == tm.labels
        assert json.loads(zf.read("edgetl.json")) == read_metadata(tm.float_tflite)


def test_writing_twice_gives_the_same_bytes(tiny_models):
    from edgetl.export.tflite import finish

    bare = tiny_models.bare_float_tflite.read_bytes()
    meta = tiny_models.meta["tflite-float32"]
    assert finish(bare, meta) == finish(bare, meta) == tiny_models.float_tflite.read_bytes()


def test_interpreter_loads_file_with_zip_appended(tiny_models):
    from ai_edge_litert.interpreter import Interpreter

    x = tiny_models.pixels[:1].astype(np.float32)
    outputs = []
    for path in (tiny_models.bare_float_tflite, tiny_models.float_tflite):
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_onnx_metadata_round_trip(tiny_models):
    import onnx

    tm = tiny_models
    assert read_metadata(tm.onnx) == tm.meta["onnx"]
    assert read_metadata(tm.bare_onnx) is None
    props = {p.key: p.value for p in onnx.load(str(tm.onnx), load_external_data=False).metadata_props}
    assert json.loads(props["edgetl"]) == tm.meta["onnx"]
    model = load_model(tm.onnx)
    assert (model.kind, model.backend) == ("onnx", "onnxruntime")
    assert model.metadata == tm.meta["onnx"]
    assert model.labels == tm.labels
    assert load_model(tm.bare_onnx).labels is None


def test_read_labels(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("  daisy \n\nroses\r\n\n tulips\n\n", encoding="utf-8")
    assert read_labels(f) == ["daisy", "roses", "tulips"]


# ---------------------------------------------------------------------------------------------------------
# predict


def test_model_attributes(tiny_models):
    f = load_model(tiny_models.float_tflite, num_threads=2)
    assert (f.kind, f.backend, f.input_size, f.input_dtype, f.num_threads) == (
        "tflite",
        "ai_edge_litert",
        96,
        np.dtype(np.float32),
        2,
    )
    assert (f.mean, f.std, f.num_classes) == (0.0, 1.0, 3)
    q = load_model(tiny_models.int8_tflite)
    assert (q.input_dtype, q.output_dtype) == (np.dtype(np.uint8), np.dtype(np.uint8))
    o = load_model(tiny_models.onnx)
    assert (o.input_size, o.input_dtype, o.num_classes) == (96, np.dtype(np.float32), 3)


@pytest.mark.parametrize("which", ["float_tflite", "onnx"])
def test_float_predict_matches_keras(tiny_models, which):
    model = load_model(getattr(tiny_models, which))
    probs = model.predict(tiny_models.pixels)
    assert probs.dtype == np.float32 and probs.shape == tiny_models.keras_probs.shape
    np.testing.assert_allclose(probs, tiny_models.keras_probs, atol=1e-4)


def test_int8_predict_tracks_keras(tiny_models):
    probs = load_model(tiny_models.int8_tflite).predict(tiny_models.pixels)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.05)
    agree = (probs.argmax(axis=1) == tiny_models.keras_probs.argmax(axis=1)).mean()
    assert agree >= 0.75, f"int8 argmax agrees with Keras on only {agree:.0%} of the images"
    assert np.abs(probs - tiny_models.keras_probs).max() < 0.35


@pytest.mark.parametrize("which", ["float_tflite", "int8_tflite", "onnx"])
def test_batch_predict_equals_one_by_one(tiny_models, which):
    model = load_model(getattr(tiny_models, which))
    pixels = tiny_models.pixels
    batched = model.predict(pixels, batch_size=5)  # 5 + 5 + 2: the TFLite input is resized each time
    single = np.concatenate([model.predict(p[None], batch_size=1) for p in pixels])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # set_input/invoke/output, the latency path, gives the same numbers.
    for p, expected in zip(pixels[:3], single):
        model.set_input(p)
        model.invoke()
        out = model.output()
        assert out.shape == (1, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out[0], expected, atol=1e-5)


def test_unresizable_model_falls_back_to_one_at_a_time(tiny_models):
    model = load_model(tiny_models.float_tflite)
    expected = model.predict(tiny_models.pixels)
    model._resizable = False  # as if resize_tensor_input had failed on this model
    np.testing.assert_allclose(model.predict(tiny_models.pixels, batch_size=4), expected, atol=1e-5)


def test_mean_std_override(tiny_models):
    """The float input is (pixel - mean) / std: check it against Keras on that input."""
    model = load_model(tiny_models.float_tflite, mean=127.5, std=127.5)
    assert (model.mean, model.std) == (127.5, 127.5)
    x = (tiny_models.pixels.astype(np.float32) - 127.5) / 127.5
    expected = np.asarray(tiny_models.keras_model.predict(x, verbose=0))
    np.testing.assert_allclose(model.predict(tiny_models.pixels), expected, atol=1e-4)


def test_predict_rejects_wrong_image_shape(tiny_models):
    model = load_model(tiny_models.float_tflite)
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros((2, 64, 64, 3), np.uint8))
    assert model.predict(np.zeros((0, 96, 96, 3), np.uint8)).shape == (0, 3)
    with pytest.raises(RuntimeError):
        load_model(tiny_models.float_tflite).output()


# ---------------------------------------------------------------------------------------------------------
# bad files


def _bad_files(tiny_models, d):
    """name -> (path, a phrase the error must contain)."""
    jpeg = tiny_models.images[-1]
    assert jpeg.suffix == ".jpg"
    float_bytes = tiny_models.float_tflite.read_bytes()
    onnx_bytes = tiny_models.onnx.read_bytes()
    files = {
        "missing": (d / "missing.tflite", None, "not found"),
        "jpeg.tflite": (d / "photo.tflite", jpeg.read_bytes(), "JPEG"),
        "text.tflite": (d / "notes.tflite", b"this is not a model\n", "text"),
        "empty.tflite": (d / "empty.tflite", b"", "empty"),
        "truncated.tflite": (d / "truncated.tflite", float_bytes[: len(float_bytes) // 2], "truncated"),
        "truncated-by-1.tflite": (d / "short.tflite", tiny_models.bare_float_tflite.read_bytes()[:-1], "truncated"),
        "jpeg.onnx": (d / "photo.onnx", jpeg.read_bytes(), "JPEG"),
        "truncated.onnx": (d / "truncated.onnx", onnx_bytes[: len(onnx_bytes) // 2], "not a valid ONNX"),
        "unknown suffix": (d / "model.pb", float_bytes, "expected .tflite or .onnx"),
    }
    for path, content, _ in files.values():
        if content is not None:
            path.write_bytes(content)
    return {name: (path, phrase) for name, (path, _, phrase) in files.items()}


def test_bad_model_files_raise_model_file_error(tiny_models, tmp_path):
    for name, (path, phrase) in _bad_files(tiny_models, tmp_path).items():
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        message = str(info.value)
        assert str(path) in message, name
        assert phrase.lower() in message.lower(), (name, message)
        assert isinstance(info.value, ValueError)


def test_every_truncation_point_is_caught(tiny_models, tmp_path):
    """tflite_runtime 2.14 does not verify flatbuffers (it segfaults): the runtime's own check must catch these."""
    from edgetl.runtime import appended_zip_start
    from edgetl.runtime.flatbuffer import FlatbufferError, check_tflite_structure

    data = tiny_models.int8_tflite.read_bytes()
    bare_len = appended_zip_start(data)
    assert bare_len is not None and bare_len < len(data)
    rng = np.random.default_rng(0)
    cuts = sorted(set(rng.integers(8, bare_len, 200).tolist()) | set(range(bare_len - 40, bare_len)))
    for cut in cuts:
        with pytest.raises(FlatbufferError):
            check_tflite_structure(data[:cut], cut)
    check_tflite_structure(data, len(data))  # the intact model passes


def test_read_metadata_rejects_non_models(tiny_models, tmp_path):
    jpeg = tiny_models.images[-1].read_bytes()
    for name in ("photo.tflite", "photo.onnx"):
        (tmp_path / name).write_bytes(jpeg)
        with pytest.raises(ModelFileError, match="JPEG"):
            read_metadata(tmp_path / name)
    onnx_bytes = tiny_models.onnx.read_bytes()
    (tmp_path / "half.onnx").write_bytes(onnx_bytes[: len(onnx_bytes) // 2])
    with pytest.raises(ModelFileError, match="half.onnx"):
        read_metadata(tmp_path / "half.onnx")
    with pytest.raises(ModelFileError, match="not found"):
        read_metadata(tmp_path / "missing.tflite")
