"""edgetl.export.tflite.share_quantization_vectors: a lossless rewrite that stores each quantization vector once.

Real TensorFlow converter and LiteRT interpreter on a tiny conv net (built once per module, a few seconds):
the rewrite must be smaller, deterministic, and change nothing the interpreter or the schema can see.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import set_batchnorm_statistics, synthetic_images

from edgetl.export.flatbuffer_repack import BUFFER_ALIGNMENT
from edgetl.export.tflite import share_quantization_vectors
from edgetl.export.tflite_metadata import associated_files
from edgetl.runtime import load_model

SIZE = 32


@dataclass
class Converted:
    int8: bytes  # bare flatbuffer, full-integer (per-channel int8 weights, uint8 in/out)
    float32: bytes
    shared: bytes  # share_quantization_vectors(int8)
    images: np.ndarray  # uint8 (N, SIZE, SIZE, 3)
    dir: Path


def _tiny_conv_net():
    """Conv/BatchNorm/ReLU blocks, several of the same width, so equal zero-point vectors repeat."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    for filters, stride in ((8, 2), (16, 1), (16, 2), (16, 1)):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(6.0)(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(6.0)(x)
    features = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    head = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, head(features.output))
    # BatchNorm statistics from one training-mode pass over a batch (momentum 0), as after training:
    # every channel then varies from image to image, and folding gives distinct per-channel scales.
    # beta 1 keeps most ReLU6 units active, so int8 features still tell the images apart.
    batch = synthetic_images(32, SIZE, seed=3).astype(np.float32)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    set_batchnorm_statistics(norms, lambda x: model(x, training=True), batch, beta=1.0)
    # A head scaled to the features' spread, so the answers are confident and differ between images
    # (with random weights every image gets the same answer, and equal outputs would prove little).
    f = np.asarray(features.predict(batch, verbose=0))
    kernel = np.random.default_rng(1).normal(size=(f.shape[1], 3))
    kernel = kernel / ((f - f.mean(axis=0)) @ kernel).std(axis=0) * 3.0
    head.set_weights([kernel.astype(np.float32), (-(f @ kernel).mean(axis=0)).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Converted:
    from edgetl.export import ModelSource, tflite, tflite_metadata

    metadata = {"labels": ["a", "b", "c"], "format": "tflite-int8", "input": {"mean": 0.0, "std": 1.0}}

    out = tmp_path_factory.mktemp("sharing")
    saved_model = out / "saved_model"
    _tiny_conv_net().export(str(saved_model), verbose=False)
    source = ModelSource(None, saved_model)
    calibration = synthetic_images(16, SIZE, seed=42)
    with pytest.MonkeyPatch.context() as patch:  # the converter's own output, before convert() shares it
        patch.setattr(tflite, "share_quantization_vectors", lambda flatbuffer: flatbuffer)
        patch.setattr(tflite, "with_standard_metadata", lambda flatbuffer, info: flatbuffer)
        patch.setattr(tflite, "associated_files", lambda info: b"")
        int8 = tflite.convert(source, "tflite-int8", metadata, calibration_images=calibration, io_type="uint8")
        float32 = tflite.convert(source, "tflite-float32", metadata)
    exported = tflite.convert(source, "tflite-int8", metadata, calibration_images=calibration, io_type="uint8")
    shared = share_quantization_vectors(int8)
    # what `edgetl export` writes is the shared rewrite with the standard metadata, added first: its repacking
    # would otherwise undo the sharing. So the file saves what sharing saves (the model_sha256 line aside).
    assert exported == tflite.finish(int8, metadata)
    with_metadata_unshared = len(tflite_metadata.with_standard_metadata(int8, tflite_metadata.standard_info(metadata)))
    assert len(exported) <= with_metadata_unshared - (len(int8) - len(shared)) + 128
    return Converted(int8=int8, float32=float32, shared=shared, images=synthetic_images(40, SIZE, seed=7), dir=out)


def _write(path: Path, flatbuffer: bytes) -> Path:
    path.write_bytes(flatbuffer)
    return path


def _interpreter(flatbuffer: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    return interpreter


def _differences(a, b, path: str = "model") -> list[str]:
    """Paths where two object-API trees (ModelT ...) differ; numpy vectors must match dtype and bytes."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        same = a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        return [] if same else [path]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} != {len(b)})"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    if hasattr(a, "__dict__") and type(a) is type(b):
        return [d for k in vars(a) for d in _differences(vars(a)[k], vars(b)[k], f"{path}.{k}")]
    return [] if type(a) is type(b) and a == b else [f"{path} ({a!r} != {b!r})"]


def _zero_point_vectors(flatbuffer: bytes) -> list[tuple[int, bytes]]:
    """(position in the file, raw bytes) of every tensor's zero_point vector."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    found = []
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            q = subgraph.Tensors(t).Quantization()
            if q is not None and not q.ZeroPointIsNone():
                found.append((q._tab.Vector(q._tab.Offset(10)), q.ZeroPointAsNumpy().tobytes()))
    return found


# ---------------------------------------------------------------------------------------------------------


def test_int8_rewrite_is_smaller_and_shares_vectors(converted):
    before, after = _zero_point_vectors(converted.int8), _zero_point_vectors(converted.shared)
    assert [raw for _, raw in before] == [raw for _, raw in after]  # same values, tensor by tensor
    distinct = {raw for _, raw in after}
    assert len(distinct) < len(after)  # the net repeats widths: there was something to share
    # Each distinct vector lies at exactly one place, and the original had copies the rewrite dropped.
    assert len({pos for pos, _ in after}) == len(distinct)
    assert len({pos for pos, _ in before}) == len(before)
    assert len(converted.shared) < len(converted.int8)
    assert converted.shared[4:8] == b"TFL3"


def test_rewrite_keeps_every_field(converted):
    """Unpacked through the schema, the two models are equal field by field (buffers, operator codes incl.
    deprecated_builtin_code, subgraph and tensor names, metadata entries, signature defs ...)."""
    from tensorflow.lite.python import schema_py_generated as schema

    original = schema.ModelT.InitFromPackedBuf(converted.int8, 0)
    rewritten = schema.ModelT.InitFromPackedBuf(converted.shared, 0)
    assert _differences(original, rewritten) == []
    assert original.metadata and original.signatureDefs  # the comparison covered them


def test_buffers_are_aligned(converted):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(converted.shared, 0)
    starts = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            starts.append(buffer._tab.Vector(buffer._tab.Offset(4)))
    assert starts and all(pos % BUFFER_ALIGNMENT == 0 for pos in starts)


def test_outputs_are_bit_identical(converted):
    paths = [
        _write(converted.dir / name, data)
        for name, data in (("original.tflite", converted.int8), ("shared.tflite", converted.shared))
    ]
    original, shared = (load_model(p) for p in paths)
    assert shared.backend == "ai_edge_litert"
    assert shared.input_dtype == np.uint8 and shared.output_dtype == np.uint8
    a, b = original.predict(converted.images, batch_size=16), shared.predict(converted.images, batch_size=16)
    assert a.shape == (len(converted.images), 3)
    assert a.tobytes() == b.tobytes()
    assert len(set(a.argmax(axis=1))) == 3 and len(np.unique(a, axis=0)) > len(a) // 2  # answers vary
    # The raw uint8 output of one invoke, and the signature runner, agree too.
    for model in (original, shared):
        model.set_input(converted.images[3])
        model.invoke()
    assert original.output().tobytes() == shared.output().tobytes()
    runners = [_interpreter(data).get_signature_runner() for data in (converted.int8, converted.shared)]
    (name,) = runners[0].get_input_details()
    outputs = [r(**{name: converted.images[:1]}) for r in runners]
    assert outputs[0].keys() == outputs[1].keys()
    assert all(outputs[0][k].tobytes() == outputs[1][k].tobytes() for k in outputs[0])


def test_interpreter_sees_identical_tensors(converted):
    original, shared = _interpreter(converted.int8), _interpreter(converted.shared)
    a, b = original.get_tensor_details(), shared.get_tensor_details()
    assert len(a) == len(b)
    per_channel = 0
    for x, y in zip(a, b):
        keys = ("name", "index", "dtype", "quantization")
        assert [x[k] for k in keys] == [y[k] for k in keys]
        assert list(x["shape"]) == list(y["shape"]) and list(x["shape_signature"]) == list(y["shape_signature"])
        qx, qy = x["quantization_parameters"], y["quantization_parameters"]
        assert qx["quantized_dimension"] == qy["quantized_dimension"]
        for key in ("scales", "zero_points"):
            assert qx[key].dtype == qy[key].dtype and qx[key].tobytes() == qy[key].tobytes(), (x["name"], key)
        per_channel += len(qx["scales"]) > 1
    assert per_channel >= 8  # conv weights and biases are quantized per channel
    assert original.get_signature_list() == shared.get_signature_list()


def test_rewrite_is_deterministic(converted):
    assert share_quantization_vectors(converted.int8) == converted.shared
    # ... across processes too (nothing depends on hashing or ids).
    path = _write(converted.dir / "for_subprocess.tflite", converted.int8)
    code = (
        "import hashlib, sys; from edgetl.export.tflite import share_quantization_vectors as s; "
        "print(hashlib.sha256(s(open(sys.argv[1], 'rb').read())).hexdigest())"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=repo, check=True)
    assert out.stdout.split()[-1] == hashlib.sha256(converted.shared).hexdigest()


def test_rewriting_twice_changes_nothing(converted):
    # Nothing repeats any more, so the second pass returns its input.
    assert share_quantization_vectors(converted.shared) == converted.shared


def test_float_model_is_returned_unchanged(converted):
    assert share_quantization_vectors(converted.float32) == converted.float32
    path = _write(converted.dir / "float.tflite", share_quantization_vectors(converted.float32))
    assert load_model(path).predict(converted.images[:4]).shape == (4, 3)


def test_rejects_what_it_cannot_rewrite_losslessly(converted):
    with pytest.raises(ValueError, match="metadata is appended"):
        share_quantization_vectors(converted.int8 + associated_files({"labels": ["a", "b", "c"], "edgetl_json": {}}))
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        share_quantization_vectors(b"\x00" * 64)
