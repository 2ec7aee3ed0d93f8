"""TFLite conversions, from the Keras model's forward function with its weights frozen to constants.

Every model edgetl converts (a run's model, the bias-corrected copy int8 formats are made from, the
backbone the features are computed with) is converted this way: the same graph and the same numbers as
through a SavedModel (the float32 check holds them to 1e-3, and the bytes are the same in any process),
without writing and tracing a SavedModel, which took longer than the conversion itself. A
`ModelSource` that names a SavedModel is converted from it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgetl.export.flatbuffer_repack import check_bare, repack
from edgetl.export.tflite_metadata import associated_files, standard_info, with_standard_metadata
from edgetl.features.tf_functions import frozen_function
from edgetl.io.native_stderr import captured_native_stderr
from edgetl.runtime import appended_zip_start


def converter_for(source):
    """A TFLiteConverter for `source` (an `edgetl.export.artifact.ModelSource`): its SavedModel when it has one."""
    import tensorflow as tf

    if source.saved_model_dir is not None:
        return tf.lite.TFLiteConverter.from_saved_model(str(source.saved_model_dir))
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen_function(source.keras_model, source.batch_size)])


def _representative(images: np.ndarray):
    """One image per step: the converter's calibrator expects the model's own batch-1 signature."""

    def gen():
        for i in range(len(images)):
            yield [images[i : i + 1].astype(np.float32)]

    return gen


def convert(
    source, fmt: str, metadata: dict, calibration_images: np.ndarray | None = None, io_type: str = "uint8"
) -> bytes:
    """The .tflite file of `fmt` (one of the tflite-* FORMATS) from `source` (`converter_for`), metadata appended.

    `source` is an `edgetl.export.artifact.ModelSource`. For tflite-int8, `io_type` uint8 keeps the input
    as raw pixels (scale 1, zero point 0) so a camera frame goes in untouched; int8 shifts by 128; float32 adds
    quantize/dequantize ops.
    """
    import tensorflow as tf

    converter = converter_for(source)
    if fmt == "tflite-float32":
        pass
    elif fmt == "tflite-float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "tflite-int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("tflite-int8 needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(np.asarray(calibration_images, np.float32))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type in ("uint8", "int8"):
            dtype = tf.uint8 if io_type == "uint8" else tf.int8
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        elif io_type != "float32":
            raise ValueError(f"unknown io_type {io_type!r}")
    elif fmt == "tflite-int16x8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("tflite-int16x8 needs calibration images")
        # int16 activations keep 256x finer steps than int8 where ranges are wide; weights stay int8. The
        # input and output stay float32 (the converter's default), so a caller feeds raw pixels as to float32.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(np.asarray(calibration_images, np.float32))
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    else:
        raise ValueError(f"not a TFLite format: {fmt!r}")
    error: Exception | None = None
    with captured_native_stderr() as log:
        try:
            data = converter.convert()
        except Exception as e:  # re-raised below, once the converter's log is readable
            error = e
    if error is not None:
        tail = "".join(log)[-2000:].strip()
        raise RuntimeError(
            f"TFLite conversion to {fmt} failed: {error}" + (f"\nconverter log:\n{tail}" if tail else "")
        ) from error
    # Lossless, and what brings a per-channel int8 MobileNetV2 from 30.7% to 28.1% of the float file.
    return finish(bytes(data), metadata)


def finish(flatbuffer: bytes, metadata: dict, extra_files: list[tuple[str, bytes]] = ()) -> bytes:
    """The converter's flatbuffer as edgetl writes it: standard TFLite Metadata added (MediaPipe Tasks, the
    Task Library and Android Studio read it), then each quantization vector stored once, then the
    associated files (labels.txt, and edgetl.json with the SHA-256 of the flatbuffer before them, which
    `label_image --verify` checks), then `extra_files` (name, bytes) as more associated files (golden inputs).

    Sharing comes after the metadata because adding it unpacks the model with the object API, which gives
    every tensor its own copy of the vectors again.
    """

    extra = {"extra_files": list(extra_files)} if extra_files else {}
    data = with_standard_metadata(flatbuffer, {**standard_info(metadata), **extra})
    model = share_quantization_vectors(data[: appended_zip_start(data)])
    metadata = {**metadata, "model_sha256": hashlib.sha256(model).hexdigest()}
    return model + associated_files({**standard_info(metadata), **extra})


# ---------------------------------------------------------------------------------------------------------
# Sharing quantization vectors. Per-channel int8 gives every weight and bias tensor a QuantizationParameters
# table with a float32 `scale` and an int64 `zero_point` vector, one entry per output channel: ~15% of a
# MobileNetV2 file, mostly zero points that are all 0 (symmetric) and repeat for every tensor of the same
# width. TFLite requires len(zero_point) == len(scale), so they cannot be shortened; FlatBuffers lets any
# number of tables reference one vector, so each distinct vector is written once instead.


class _SharedQuantization:
    """Stands in for a QuantizationParametersT: packs it, writing each distinct vector once.

    `written` maps (dtype, raw bytes) to builder offsets and is shared by every tensor of the model, so
    only byte-identical vectors merge (-0.0 stays apart from 0.0). Equal tables could be shared as well,
    but that saves ~0.5 KB on MobileNetV2: not worth a second cache.
    """

    def __init__(self, schema, q, written: dict[tuple[str, bytes], int]):
        self.schema, self.q, self.written = schema, q, written

    def _vector(self, builder, values, dtype: str) -> int | None:
        if values is None:
            return None
        arr = np.ascontiguousarray(values, dtype=dtype)
        key = (arr.dtype.str, arr.tobytes())
        if key not in self.written:
            self.written[key] = builder.CreateNumpyVector(arr)
        return self.written[key]

    def Pack(self, builder) -> int:  # the object API's name: TensorT.Pack calls it
        s, q = self.schema, self.q
        # Children first, as the generated Pack does: a table cannot be started while a vector is open.
        # A vector written earlier sits later in the file, so every reference still points forward.
        vectors = (
            (s.QuantizationParametersAddMin, self._vector(builder, q.min, "<f4")),
            (s.QuantizationParametersAddMax, self._vector(builder, q.max, "<f4")),
            (s.QuantizationParametersAddScale, self._vector(builder, q.scale, "<f4")),
            (s.QuantizationParametersAddZeroPoint, self._vector(builder, q.zeroPoint, "<i8")),
        )
        details = q.details.Pack(builder) if q.details is not None else None
        s.QuantizationParametersStart(builder)
        for add, offset in vectors:
            if offset is not None:
                add(builder, offset)
        s.QuantizationParametersAddDetailsType(builder, q.detailsType)
        if details is not None:
            s.QuantizationParametersAddDetails(builder, details)
        s.QuantizationParametersAddQuantizedDimension(builder, q.quantizedDimension)
        return s.QuantizationParametersEnd(builder)


def share_quantization_vectors(flatbuffer: bytes) -> bytes:
    """The same model with every distinct quantization vector (min, max, scale, zero_point) stored once.

    A rewrite through TensorFlow's generated schema (object API): every field is unpacked and packed
    again; only the sharing and the buffer alignment differ. Lossless for the converter's output because
    the converter's own last step (adding CONVERSION_METADATA via flatbuffer_utils) is this same unpack
    and pack: a plain round trip gives its bytes back exactly. A model from a newer schema could carry
    fields this one does not know, and they would be dropped: use the TensorFlow that converted it.

    Takes and returns the bare flatbuffer (as the converter writes it, before the metadata is appended).
    Deterministic. Returns the input unchanged when no vector repeats (float models), when buffers live
    outside the flatbuffer (> 2 GB models: their offsets would move), or when the rewrite is not smaller.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    flatbuffer = check_bare(flatbuffer, "share_quantization_vectors")

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    buffers = model.buffers or []
    if any(b.offset or b.size for b in buffers):
        return flatbuffer
    tensors = [t for sg in model.subgraphs or [] for t in sg.tensors or [] if t.quantization is not None]
    seen: set[tuple[str, bytes]] = set()
    repeats = False
    for q in (t.quantization for t in tensors):
        for values, dtype in ((q.min, "<f4"), (q.max, "<f4"), (q.scale, "<f4"), (q.zeroPoint, "<i8")):
            if values is not None and len(values):
                key = (dtype, np.ascontiguousarray(values, dtype=dtype).tobytes())
                repeats = repeats or key in seen
                seen.add(key)
    if not repeats:
        return flatbuffer

    written: dict[tuple[str, bytes], int] = {}
    for t in tensors:
        t.quantization = _SharedQuantization(schema, t.quantization, written)
    out = repack(schema, model, len(flatbuffer))
    return out if len(out) < len(flatbuffer) else flatbuffer
