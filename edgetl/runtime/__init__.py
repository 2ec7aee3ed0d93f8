"""One small interface over LiteRT (TFLite) and onnxruntime: everything that executes an artifact uses it.

Runs on a device with only numpy, Pillow and a TFLite runtime, so TensorFlow is never imported at module
level. The parts: `appended_zip` (the archive a .tflite carries), `standard_metadata` (the standard TFLite
Metadata), `metadata` (what travels inside an artifact, and how a file is recognised),
`flatbuffer` (a bounds check of .tflite files before an interpreter sees them), `backends` (one class per
runtime) and `model` (`LoadedModel`, which turns images into the backend's tensors and back).
"""

from edgetl.runtime.appended_zip import (
    LABELS_FILE,
    METADATA_FILE,
    TFLITE_IDENTIFIER,
    ModelFileError,
    appended_zip_start,
    is_tflite,
)
from edgetl.runtime.metadata import (
    ONNX_LABELS_KEY,
    ONNX_METADATA_KEY,
    model_sha256,
    read_labels,
    read_metadata,
    verify_model,
)
from edgetl.runtime.model import DEFAULT_NUM_THREADS, LoadedModel, check_num_threads, load_model

__all__ = [
    "DEFAULT_NUM_THREADS",
    "LABELS_FILE",
    "METADATA_FILE",
    "ONNX_LABELS_KEY",
    "ONNX_METADATA_KEY",
    "TFLITE_IDENTIFIER",
    "LoadedModel",
    "ModelFileError",
    "appended_zip_start",
    "check_num_threads",
    "is_tflite",
    "load_model",
    "model_sha256",
    "read_labels",
    "read_metadata",
    "verify_model",
]
