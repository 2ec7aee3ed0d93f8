"""ONNX conversions: tf2onnx from the Keras model, onnxruntime static quantization for int8.

Returns serialized ModelProto bytes with the edgetl metadata in `metadata_props` (docs/interfaces.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from edgetl import __version__
from edgetl.export.formats import ONNX_OPSET
from edgetl.runtime.metadata import (
    ONNX_COLOR_KEY,
    ONNX_LABELS_KEY,
    ONNX_MEAN_KEY,
    ONNX_METADATA_KEY,
    ONNX_RANGE_KEY,
    ONNX_STD_KEY,
)

INPUT_NAME = "image"


def to_onnx_float(model, batch_size: int | None, opset: int | None = None):
    """Keras model -> float32 ModelProto, its input's batch fixed at `batch_size` (None: dynamic).

    tf2onnx cannot infer an input signature from a Keras 3 model, so it is given one explicitly.
    """
    import tensorflow as tf
    import tf2onnx

    shape = tuple(model.inputs[0].shape)  # (None, R, R, 3)
    spec = (tf.TensorSpec((batch_size, *shape[1:]), tf.float32, name=INPUT_NAME),)
    # tf2onnx's duplicate-merging pass keeps an arbitrary one of equal constants (the ReLU6 bounds),
    # so its output names change from one conversion to the next; the duplicates are a few scalars.
    from tf2onnx.optimizer import _optimizers

    optimizers = {k: v for k, v in _optimizers.items() if k != "merge_duplication"}

    def convert():
        return tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset or ONNX_OPSET, optimizers=optimizers)

    # tf2onnx deep-copies the whole graph before each optimizer pass, to restore it if the pass raises, and
    # that copying is most of a conversion's time (README, Speed). Passes run in place instead; only if one
    # raises is the model converted again the guarded way (the same bytes either way: tests/test_export.py).
    try:
        with _environ(TF2ONNX_CATCH_ERRORS, "FALSE"):
            proto, _ = convert()
    except Exception:
        proto, _ = convert()
    return canonical_names(proto)


# tf2onnx reads it per conversion: present, the optimizers run without a safety copy (tf2onnx/convert.py).
TF2ONNX_CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"


@contextlib.contextmanager
def _environ(name: str, value: str):
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


_NUMBERED = re.compile(r"__(\d+)")


def canonical_names(proto):
    """Renumber tf2onnx's made-up names (`Conv__211`, `unk__396`) in order of first appearance.

    tf2onnx draws those numbers from a process-wide counter, and tracing the same model twice does
    not consume it identically, so the same model converted twice in one process gave different
    bytes. Reproducible artifacts (bit-identical int8 from one calibration manifest) need equal
    names; an injective renumbering keeps every name distinct and readable.
    """
    mapping: dict[str, str] = {}

    def fix(name: str) -> str:
        def sub(m: re.Match) -> str:
            return "__" + mapping.setdefault(m.group(1), str(len(mapping) + 1))

        return _NUMBERED.sub(sub, name) if name else name

    g = proto.graph
    # Number in node order (deterministic), not initializer order (which is not).
    order: dict[str, int] = {}
    for value in g.input:
        value.name = fix(value.name)
    for node in g.node:
        node.name = fix(node.name)
        node.input[:] = [fix(n) for n in node.input]
        node.output[:] = [fix(n) for n in node.output]
        for n in list(node.input) + list(node.output):
            order.setdefault(n, len(order))
    for value in list(g.input) + list(g.output) + list(g.value_info):
        value.name = fix(value.name)
        if value.type.HasField("tensor_type"):
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_param"):
                    dim.dim_param = fix(dim.dim_param)
    for init in g.initializer:
        init.name = fix(init.name)
    for field in (g.initializer, g.value_info):
        items = sorted(field, key=lambda v: (order.get(v.name, len(order)), v.name))
        copies = [type(v)() for v in items]
        for c, v in zip(copies, items):
            c.CopyFrom(v)
        del field[:]
        field.extend(copies)
    return proto


class _ImagesReader:
    """onnxruntime CalibrationDataReader over float32 pixel arrays, one image per step (in order)."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.input_name = input_name
        self.images = np.asarray(images, np.float32)
        self.i = 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        batch = self.images[self.i : self.i + 1]
        self.i += 1
        return {self.input_name: batch}

    def rewind(self):
        self.i = 0


def quantize_int8(float_proto, calibration_images: np.ndarray):
    """Static QDQ quantization: per-channel int8 weights, uint8 activations, MinMax calibration.

    The model is pre-processed first (shape inference + graph optimization: batch norm and the
    depthwise Mul/Add folded into the convolutions), as onnxruntime recommends; it roughly halves
    the quantization error of a MobileNet here.

    Full 8-bit weights, not `reduce_range`: the artifact is made for the device. onnxruntime's
    default u8s8 kernels on x86 CPUs without VNNI (AVX2) saturate in int16 with full-range weights;
    sessions there need `session.x64quantprecision=1` (edgetl.runtime's job) to run it faithfully.
    7-bit weights would avoid that but cost MobileNetV2 about 2.5x the error everywhere.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgetl-onnx-quant-") as tmp:
        src = Path(tmp) / "float.onnx"
        pre = Path(tmp) / "pre.onnx"
        dst = Path(tmp) / "int8.onnx"
        onnx.save(float_proto, str(src))
        model_in = src
        # Symbolic shape inference needs sympy, which onnxruntime does not require; these models have
        # static shapes (but the batch, on request), so ONNX's own shape inference is enough without it.
        for skip_symbolic in (False, True):
            try:
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=skip_symbolic)
                model_in = pre
                break
            except ImportError:
                continue
            except Exception:  # pre-processing is an optimization; quantization works without it
                break
        input_name = float_proto.graph.input[0].name
        quantize_static(
            str(model_in),
            str(dst),
            _ImagesReader(input_name, calibration_images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(str(dst))


def with_metadata(proto, metadata: dict):
    """edgetl's metadata_props (replacing old ones) and producer, so the file alone says how to run it.

    Keys (docs/interfaces.md): ``edgetl`` (the JSON), ``labels`` (newline-joined, index order),
    ``normalization_mean`` / ``normalization_std`` (per RGB channel, comma-separated: the input is
    (pixel - mean) / std), ``color_space`` (RGB) and ``pixel_range`` (0..255).
    """

    inp = metadata.get("input") or {}
    ours = [
        (ONNX_METADATA_KEY, json.dumps(metadata)),
        (ONNX_LABELS_KEY, "\n".join(metadata["labels"])),
        (ONNX_MEAN_KEY, ",".join([f"{float(inp.get('mean', 0.0)):g}"] * 3)),
        (ONNX_STD_KEY, ",".join([f"{float(inp.get('std', 1.0)):g}"] * 3)),
        (ONNX_COLOR_KEY, "RGB"),
        (ONNX_RANGE_KEY, "0..255"),
    ]
    names = {key for key, _ in ours}
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in names]
    del proto.metadata_props[:]
    for key, value in keep + ours:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "edgetl", __version__
    return proto


def convert(
    source, fmt: str, metadata: dict, calibration_images: np.ndarray | None = None, io_type: str = "uint8"
) -> bytes:
    """The serialized ONNX model of `fmt` (onnx-float32 or onnx-int8) from `source.keras_model`, metadata included.

    `source` is an `edgetl.export.artifact.ModelSource`; `io_type` is unused (ONNX inputs are float32).
    """
    if fmt not in ("onnx-float32", "onnx-int8"):
        raise ValueError(f"not an ONNX format: {fmt!r}")
    proto = to_onnx_float(source.keras_model, source.batch_size)
    if fmt == "onnx-int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("onnx-int8 needs calibration images")
        proto = quantize_int8(proto, calibration_images)
    proto.doc_string = f"edgetl {fmt}"
    # The graph's bytes (ModelProto field 7) are what `label_image --verify` hashes again on the device.
    metadata = {**metadata, "model_sha256": hashlib.sha256(proto.graph.SerializeToString()).hexdigest()}
    return with_metadata(proto, metadata).SerializeToString()
