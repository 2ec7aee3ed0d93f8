"""Third-party start-up noise silenced at the source, in every process edgetl starts.

TensorFlow's shared libraries write their start-up lines ("All log messages before absl::InitializeLog()
is called ...", oneDNN and CUDA notes) to file descriptor 2 from static initializers, before
TF_CPP_MIN_LOG_LEVEL is read, so no setting reaches them; the TFLite converter logs a deprecation
("Please consider providing the trackable_obj argument") on every conversion through absl's Python
logger. None of it is anything a user can act on, and in a log file it buries the notes that are.

:func:`quiet_third_party` (run by ``edgetl/__init__.py``, so by every process that imports edgetl: the
CLI, export workers, Ray workers, benchmark children) sets the environment before TensorFlow loads,
filters the known lines, and wraps the first ``import tensorflow`` so its native stderr is read and every
line that is NOT known noise is written back to stderr: an unexpected warning still reaches the user.
``EDGETL_VERBOSE=1`` (``--verbose``) turns all of it off, in this process and the ones it starts.
Standard library only: the TensorFlow-free device side imports it too.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
from collections.abc import Iterator

VERBOSE_ENV = "EDGETL_VERBOSE"

#: Lines of native start-up output that carry nothing a user can act on (matched anywhere in the line).
NATIVE_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|cpu_feature_guard\.cc|^To enable the following instructions:"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|Created TensorFlow Lite XNNPACK delegate for CPU"
)

#: Python log records and warnings from dependencies that are deprecations of paths edgetl takes on purpose.
PYTHON_NOISE = re.compile(
    r"Please consider providing the trackable_obj argument"  # TFLiteConverter.from_concrete_functions
    r"|__array__ implementation doesn't accept a copy keyword"  # Keras 3 on numpy 2, every conversion
    # TFLite's QuantizationDebugger (tflite-int8-mixed): its own interpreter; its calibrate-only model, whose
    # input and output are quantized afterwards
    r"|\s*Warning: tf\.lite\.Interpreter is deprecated"
    r"|Statistics for quantized inputs were expected"
)

# Environment set before TensorFlow or LiteRT load; an explicit setting in the environment wins.
_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # 3, as before: also the cuInit error every CPU-only machine logs
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "2",
}
_THIRD_PARTY_LOGGERS = ("absl", "tensorflow", "tf2onnx", "h5py", "matplotlib", "PIL")


def bars_off() -> bool:
    """--quiet sets TQDM_DISABLE=1, which tqdm applies only to bars that leave `disable` unset; the bars
    that decide it themselves ask here too."""
    return os.environ.get("TQDM_DISABLE", "") not in ("", "0", "false", "False")


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def _drop_noise(record) -> bool:
    """A logging filter (a plain callable, so `logging` is not imported before TensorFlow needs it)."""
    return not PYTHON_NOISE.search(record.getMessage())


def _filter_python_noise(on: bool = True) -> None:
    import logging
    import warnings

    for name in _THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeFilter(_drop_noise)
        if on:
            logger.addFilter(_drop_noise)
    warnings.filters[:] = [
        f for f in warnings.filters if not (f[1] is not None and f[1].pattern == PYTHON_NOISE.pattern)
    ]
    if on:
        warnings.filterwarnings("ignore", message=PYTHON_NOISE.pattern)


def replay_native(text: str) -> None:
    """Write back to stderr every line of captured native output that is not known noise."""
    kept = [line for line in text.splitlines() if line.strip() and not NATIVE_NOISE.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Run the block with file descriptor 2 read into a file; then replay what is not noise (:data:`NATIVE_NOISE`)."""
    if is_verbose():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (an embedded interpreter): nothing to filter
        yield
        return
    import tempfile

    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            replay_native(tmp.read().decode("utf-8", "replace"))


class _FilteredLoader(importlib.abc.Loader):
    """The real loader of a module, its execution run inside :func:`native_noise_filtered`."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            with native_noise_filtered():
                self.loader.exec_module(module)
            _filter_python_noise()  # TensorFlow has loaded logging and absl by now
        finally:
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands the first `import tensorflow` to the real finder, filtered."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later imports find the loaded module
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


def quiet_third_party() -> None:
    """Silence third-party start-up noise in this process (idempotent; :func:`be_verbose` undoes it)."""
    if is_verbose():
        return
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if "tensorflow" in sys.modules or "logging" in sys.modules:
        _filter_python_noise()
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def be_verbose() -> None:
    """Let every third-party line through, here and in the processes started from here (``--verbose``)."""
    os.environ[VERBOSE_ENV] = "1"
    for name, value in _QUIET_ENV.items():
        if os.environ.get(name) == value:
            os.environ.pop(name)
    _filter_python_noise(on=False)
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)]
