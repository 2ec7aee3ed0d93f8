"""One class per runtime, behind the same small interface that `LoadedModel` drives.

A backend loads one file and runs the model's own input tensor (already normalized and quantized by
`LoadedModel`), returning the raw output tensor. It reports what `LoadedModel` needs to convert in and
out: the input shape, the input/output dtypes and their (scale, zero point).

TFLite interpreters are tried in this order: ``ai_edge_litert``, ``tflite_runtime``, and only as a last
resort ``tensorflow.lite``. onnxruntime is imported only when an ``.onnx`` file is loaded.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from edgetl.io.files import one_line
from edgetl.runtime.flatbuffer import FlatbufferError, check_tflite_structure
from edgetl.runtime.metadata import ModelFileError, check_tflite_identifier, sniff

_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def tflite_interpreter_class():
    """(Interpreter class, backend name): ai_edge_litert, then tflite_runtime, then tf.lite."""
    errors = []
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except Exception as e:  # ImportError, or a broken install (e.g. a numpy ABI mismatch)
        errors.append(f"ai_edge_litert: {e}")
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except Exception as e:
        errors.append(f"tflite_runtime: {e}")
    try:
        import tensorflow as tf  # last resort: heavy, and absent on devices

        return tf.lite.Interpreter, "tf.lite"
    except Exception as e:
        errors.append(f"tensorflow: {e}")
    raise ImportError(
        "no TFLite interpreter available; install ai-edge-litert (or tflite-runtime). Tried: " + "; ".join(errors)
    )


def import_runtime(path) -> None:
    """Import the runtime that will load `path`, so timing its load measures the model, not the import."""
    if str(path).lower().endswith(".onnx"):
        import onnxruntime  # noqa: F401
    else:
        tflite_interpreter_class()


def _quant_params(details: dict) -> tuple[float, int]:
    scale, zero_point = details.get("quantization", (0.0, 0))
    qp = details.get("quantization_parameters") or {}
    scales = qp.get("scales")
    if scales is not None and len(scales) > 1:
        raise ValueError(f"per-channel quantized tensor {details.get('name')!r} is not supported as input/output")
    return float(scale), int(zero_point)


def _check_tflite_file(path: Path) -> None:
    check_tflite_identifier(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            check_tflite_structure(buf, len(buf))
        except FlatbufferError as e:
            raise ModelFileError(f"{path}: not a valid TFLite model, the file is truncated or corrupt ({e})") from e


def _one_input_and_output(path: Path, n_inputs: int, n_outputs: int) -> None:
    if n_inputs != 1 or n_outputs < 1:
        raise ModelFileError(
            f"{path}: expected one image input and an output, found {n_inputs} input(s), {n_outputs} output(s)"
        )


class TFLiteBackend:
    """A LiteRT / tflite_runtime interpreter; resizes its batch for `run`, batch 1 for timing."""

    kind = "tflite"

    def __init__(self, path: Path, num_threads: int):
        _check_tflite_file(path)
        interpreter_class, self.name = tflite_interpreter_class()
        try:
            self._interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            why = one_line(e)
            if "not a valid flatbuffer" in why.lower():
                raise ModelFileError(
                    f"{path}: not a valid TFLite model, the file is truncated or corrupt ({why})"
                ) from e
            raise ModelFileError(f"{path}: {self.name} cannot load this model: {why}") from e
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        _one_input_and_output(path, len(inputs), len(outputs))
        self._in, self._out = inputs[0], outputs[0]
        try:
            self.input_quant = _quant_params(self._in)
            self.output_quant = _quant_params(self._out)
        except ValueError as e:
            raise ModelFileError(f"{path}: {e}") from e
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self.input_shape = [int(d) for d in self._in["shape"]]
        self.output_shape = [int(d) for d in self._out["shape"]]
        signature = self._in.get("shape_signature")
        first = int(signature[0]) if signature is not None and len(signature) else self.input_shape[0]
        self.input_batch = first if first > 0 else None  # the file's fixed batch; None: dynamic
        self._batch = self.input_shape[0]
        self._resizable = True

    def _resize(self, n: int) -> bool:
        """Make the input batch n; False when the model cannot be resized (it is left at batch 1)."""
        if self._batch == n:
            return True
        if n != 1 and not self._resizable:
            return False
        shape = [n, *self.input_shape[1:]]
        try:
            self._interpreter.resize_tensor_input(self._in["index"], shape, strict=False)
            self._interpreter.allocate_tensors()
            self._batch = n
            return True
        except (ValueError, RuntimeError):
            if n == 1:
                raise
            self._resizable = False
            self._interpreter.resize_tensor_input(self._in["index"], [1, *shape[1:]], strict=False)
            self._interpreter.allocate_tensors()
            self._batch = 1
            return False

    def _invoke_on(self, x: np.ndarray) -> np.ndarray:
        self.set_input(x)
        self.invoke()
        return self.output()

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._resize(len(x)):
            return self._invoke_on(x)
        return np.concatenate([self._invoke_on(x[i : i + 1]) for i in range(len(x))])

    def set_input(self, x: np.ndarray) -> None:
        self._resize(len(x))
        self._interpreter.set_tensor(self._in["index"], x)

    def invoke(self) -> None:
        self._interpreter.invoke()

    def output(self) -> np.ndarray:
        return self._interpreter.get_tensor(self._out["index"])


class OnnxBackend:
    """An onnxruntime CPU session: a whole batch in one call, or image by image for a fixed batch-1 input."""

    kind = "onnx"
    name = "onnxruntime"

    def __init__(self, path: Path, num_threads: int):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(f"running {path} needs onnxruntime: pip install onnxruntime ({e})") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # On x86 CPUs without VNNI, onnxruntime's default u8s8 int8 kernels saturate in int16 and flip
        # answers of full-range int8 models; this makes them exact at a small speed cost.
        options.add_session_config_entry("session.x64quantprecision", "1")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's pybind errors (InvalidProtobuf, Fail, ...) share no useful base
            raise ModelFileError(f"{path}: not a valid ONNX model ({sniff(path)}onnxruntime: {one_line(e)})") from e
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        _one_input_and_output(path, len(inputs), len(outputs))
        self._in_name, self._out_name = inputs[0].name, outputs[0].name
        if inputs[0].type not in _ONNX_TYPES:
            raise ModelFileError(f"{path}: unsupported input type {inputs[0].type}")
        self.input_dtype = np.dtype(_ONNX_TYPES[inputs[0].type])
        self.output_dtype = np.dtype(_ONNX_TYPES.get(outputs[0].type, np.float32))
        self.input_quant = self.output_quant = (0.0, 0)  # QDQ models quantize inside the graph
        self.input_shape = list(inputs[0].shape)  # symbolic dims are strings
        first = self.input_shape[0] if self.input_shape else None
        self.input_batch = first if isinstance(first, int) and first > 0 else None  # None: dynamic
        self.output_shape = list(outputs[0].shape)
        self._prepared: np.ndarray | None = None
        self._last: np.ndarray | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        fixed = self.input_batch
        if fixed is not None and len(x) != fixed:
            parts = [
                self._session.run([self._out_name], {self._in_name: x[i : i + fixed]})[0]
                for i in range(0, len(x), fixed)
            ]
            return np.concatenate(parts)
        return self._session.run([self._out_name], {self._in_name: x})[0]

    def set_input(self, x: np.ndarray) -> None:
        self._prepared = x

    def invoke(self) -> None:
        self._last = self.run(self._prepared)

    def output(self) -> np.ndarray:
        return self._last


BACKENDS = {"tflite": TFLiteBackend, "onnx": OnnxBackend}
