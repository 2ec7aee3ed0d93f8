"""The engine that computes bottleneck features: the backbone converted to TFLite and run in LiteRT.

LiteRT's XNNPACK kernels run MobileNet at batch 1 about twice as fast as TensorFlow's batched forward
pass on the same CPU (tools/bench_sweep.py prints the features' images/s), so the features are computed
there. The conversion costs a few seconds per backbone, paid only when some feature is not in the
cache. Before the first batch is trusted, LiteRT's features are compared with TensorFlow's on it; the
largest absolute difference is recorded, and above FEATURE_TOLERANCE (a wrong conversion, never rounding)
the engine falls back to TensorFlow with a warning. The cache key names the engine, so features of the
two engines are never mixed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from edgetl.features.tf_functions import frozen_function
from edgetl.io.files import DiskError
from edgetl.io.native_stderr import captured_native_stderr
from edgetl.runtime.backends import tflite_interpreter_class

ENGINES = ("litert", "tensorflow")
#: Largest |LiteRT - TensorFlow| accepted on the check images; float32 round-off is around 1e-5 here.
FEATURE_TOLERANCE = 1e-3
#: Images of the first batch TensorFlow also embeds for the check. A wrong conversion shows on any image; TensorFlow's
#: eager pass over a whole batch of 32 at 224 px took the sweep's peak memory from 1.0 to 3.0 GB (V1 1.0) and 5 s.
CHECK_IMAGES = 4


def convert_backbone(extractor) -> bytes:
    """The Keras feature extractor as a float32 .tflite flatbuffer (raw pixels in, pooled features out)."""
    import tensorflow as tf

    with captured_native_stderr():
        return tf.lite.TFLiteConverter.from_concrete_functions([frozen_function(extractor, None)]).convert()


@dataclass
class Embedder:
    """`embed(uint8 or float batch) -> (n, D) float32`, built on its first call; `info` for run.json."""

    extractor: object  # the Keras backbone: TensorFlow's forward pass, and the source of the conversion
    engine: str = "litert"
    num_threads: int | None = None  # None: every core
    info: dict = field(default_factory=dict)
    _interpreter: object = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"feature engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        self.num_threads = self.num_threads or os.cpu_count() or 1
        self.info = {"engine": self.engine}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        if self.engine == "tensorflow":
            return np.asarray(self.extractor.predict_on_batch(batch), np.float32)
        if self._interpreter is None:
            return self._first(batch)
        return self._litert(batch)

    def _first(self, batch: np.ndarray) -> np.ndarray:
        """Convert, then check LiteRT against TensorFlow on this batch (falling back when they differ)."""
        from tqdm import tqdm

        started = time.perf_counter()
        try:
            interpreter_class, backend = tflite_interpreter_class()
            self._interpreter = interpreter_class(
                model_content=convert_backbone(self.extractor), num_threads=self.num_threads
            )
            self._interpreter.allocate_tensors()
        except DiskError:
            raise  # a full disk is the run's problem, not the engine's: exit 2 like any other write
        except Exception as e:  # a backbone the converter cannot take (a TF Hub module, say) still trains
            tqdm.write(
                f"warning: the backbone does not run in LiteRT ({type(e).__name__}: {str(e)[:200]}); "
                "computing features with TensorFlow"
            )
            self.engine, self.info["engine"] = "tensorflow", "tensorflow (LiteRT conversion failed)"
            return self(batch)
        self.info["convert_s"] = round(time.perf_counter() - started, 2)
        ours = self._litert(batch)  # timed as forward_s, the check below as check_s
        started = time.perf_counter()
        # An eager call, not predict_on_batch: a few images do not repay tracing a graph (seconds per backbone).
        sample = batch[:CHECK_IMAGES]
        reference = np.asarray(self.extractor(sample, training=False), np.float32)
        diff = float(np.abs(ours[: len(sample)] - reference).max())
        self.info.update(
            backend=backend,
            num_threads=self.num_threads,
            max_abs_diff_vs_tensorflow=diff,
            checked_images=len(sample),
            check_s=round(time.perf_counter() - started, 2),
        )
        if not diff <= FEATURE_TOLERANCE:
            tqdm.write(
                f"warning: LiteRT features differ from TensorFlow's by {diff:.3g} (> {FEATURE_TOLERANCE:g}); "
                "computing them with TensorFlow"
            )
            self.engine, self.info["engine"] = "tensorflow", "tensorflow (LiteRT check failed)"
            return self(batch)
        return ours

    def _litert(self, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self._invoke_each(batch)
        finally:
            self.info["forward_s"] = round(self.info.get("forward_s", 0.0) + time.perf_counter() - started, 3)

    def _invoke_each(self, batch: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        rows = []
        for image in batch:  # batch 1: the shape XNNPACK is tuned for, and what the issue measured fastest
            interpreter.set_tensor(inp["index"], image[None])
            interpreter.invoke()
            rows.append(interpreter.get_tensor(out["index"])[0].copy())
        return np.stack(rows).astype(np.float32)
