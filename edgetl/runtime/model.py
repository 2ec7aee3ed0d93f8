"""`LoadedModel`: raw uint8 RGB images in, float32 probabilities out, whatever the file and its types.

Models take raw RGB pixels 0..255 (docs/interfaces.md); `LoadedModel.predict` takes the uint8 images from
`edgetl.data.dataset.load_image`, normalizes and quantizes them for the model's input tensor, runs the backend
(`edgetl.runtime.backends`) and dequantizes its output, for float32, uint8 and int8 models alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.runtime.backends import BACKENDS
from edgetl.runtime.metadata import ModelFileError, check_exists, model_kind, read_embedded

#: Interpreter threads wherever an artifact runs: the checks, the benchmarks, label_image.
DEFAULT_NUM_THREADS = 1

_INT_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def check_num_threads(num_threads: int) -> int:
    """`num_threads` as an int, or ValueError when it is not a whole number >= 1."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads must be a whole number >= 1, got {num_threads!r}")
    return int(num_threads)


def _input_size(path: Path, shape: list, metadata: dict | None) -> int:
    if len(shape) != 4 or (isinstance(shape[3], int) and shape[3] != 3):
        raise ModelFileError(f"{path}: expected an NHWC RGB image input [N, R, R, 3], got shape {shape}")
    h, w = shape[1], shape[2]
    if isinstance(h, (int, np.integer)) and h > 0:
        if h != w:
            raise ModelFileError(f"{path}: non-square input {h}x{w} is not supported")
        return int(h)
    meta_size = ((metadata or {}).get("input") or {}).get("size")
    if meta_size:
        return int(meta_size)
    raise ModelFileError(f"{path}: the input resolution is dynamic and no metadata gives it")


class LoadedModel:
    """A loaded .tflite or .onnx image classifier: raw uint8 RGB images in, float32 probabilities out.

    Use :func:`load_model` to create one. ``predict`` is for accuracy; ``set_input``/``invoke``/``output``
    split one batch-1 inference so latency timing measures ``invoke`` only.
    """

    def __init__(self, path: Path, num_threads: int, mean: float | None, std: float | None):
        self.path = path
        self.num_threads = num_threads
        self.metadata, self.labels = read_embedded(path)
        self._backend = BACKENDS[model_kind(path)](path, num_threads)
        self.kind: str = self._backend.kind  # "tflite" | "onnx"
        self.backend: str = self._backend.name  # "ai_edge_litert" | "tflite_runtime" | "tf.lite" | "onnxruntime"
        self.input_dtype: np.dtype = self._backend.input_dtype
        self.output_dtype: np.dtype = self._backend.output_dtype
        self.input_size = _input_size(path, self._backend.input_shape, self.metadata)
        self.input_batch: int | None = self._backend.input_batch  # the file's fixed batch (1); None: dynamic
        last = self._backend.output_shape[-1] if self._backend.output_shape else None
        self.num_classes = int(last) if isinstance(last, (int, np.integer)) and last > 0 else None
        inp = (self.metadata or {}).get("input") or {}
        self.mean = float(mean if mean is not None else inp.get("mean", 0.0))
        self.std = float(std if std is not None else inp.get("std", 1.0))
        if self.std == 0:
            raise ValueError("std must not be 0")
        if self.input_dtype != np.float32 and self.input_dtype not in _INT_RANGES:
            raise ModelFileError(f"{path}: unsupported input type {self.input_dtype}")
        self._ready = self._invoked = False

    def __repr__(self) -> str:
        return (
            f"LoadedModel({str(self.path)!r}, kind={self.kind!r}, backend={self.backend!r}, "
            f"input={self.input_dtype.name}[{self.input_size}x{self.input_size}x3], classes={self.num_classes})"
        )

    def _check_images(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        expected = (self.input_size, self.input_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, expected))}), got {images.shape}")
        return images

    def _to_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels (N, R, R, 3) -> the model's input tensor (normalized, quantized as needed)."""
        x = images.astype(np.float32)
        if self.mean != 0.0 or self.std != 1.0:
            x = (x - np.float32(self.mean)) / np.float32(self.std)
        if self.input_dtype == np.float32:
            return x
        lo, hi = _INT_RANGES[self.input_dtype]
        scale, zero_point = self._backend.input_quant
        if scale > 0:
            x = x / np.float32(scale) + np.float32(zero_point)
        return np.clip(np.round(x), lo, hi).astype(self.input_dtype)

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        scale, zero_point = self._backend.output_quant
        if raw.dtype in (np.uint8, np.int8) and scale > 0:
            out = (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        else:
            out = raw.astype(np.float32)
        return out.reshape(out.shape[0], -1)

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 images (N, R, R, 3) raw RGB 0..255 -> float32 probabilities (N, C)."""
        images = self._check_images(images)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        results = [
            self._dequantize(self._backend.run(self._to_input(images[start : start + batch_size])))
            for start in range(0, len(images), batch_size)
        ]
        if not results:
            return np.zeros((0, self.num_classes or 0), np.float32)
        return np.concatenate(results)

    def set_input(self, image: np.ndarray) -> None:
        """Prepare a batch-1 input from one uint8 image (R, R, 3) or (1, R, R, 3); nothing runs yet."""
        images = self._check_images(image)
        if len(images) != 1:
            raise ValueError(f"set_input takes one image, got {len(images)}")
        self._backend.set_input(self._to_input(images))
        self._ready, self._invoked = True, False

    def invoke(self) -> None:
        """Run once on the prepared input. This, and only this, is what latency timing measures."""
        if not self._ready:
            raise RuntimeError("invoke() before set_input()")
        self._backend.invoke()
        self._invoked = True

    def output(self) -> np.ndarray:
        """Dequantized float32 output of the last invoke, shape (1, C)."""
        if not self._invoked:
            raise RuntimeError("output() before set_input() and invoke()")
        return self._dequantize(self._backend.output())


def load_model(
    path, num_threads: int = DEFAULT_NUM_THREADS, mean: float | None = None, std: float | None = None
) -> LoadedModel:
    """Load a .tflite or .onnx model for inference.

    ``mean``/``std`` override the metadata's (the float input is ``(pixel - mean) / std``; without metadata
    mean 0 and std 1, i.e. raw 0..255 pixels as edgetl models expect). Raises :class:`ModelFileError` for a
    missing, truncated, corrupt or unsupported file, and ImportError when no runtime for it is installed.
    """
    path = Path(path)
    check_exists(path)
    model_kind(path)
    num_threads = check_num_threads(num_threads)
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the file is empty")
    return LoadedModel(path, num_threads, mean, std)
