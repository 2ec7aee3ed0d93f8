"""Benchmark one artifact on the held-out test split: size, accuracy, latency, memory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgetl.data.dataset import SplitConfig, decode_images, scan_dataset
from edgetl.features.backbones import point_id
from edgetl.io.files import atomic_write_with
from edgetl.io.text import visible
from edgetl.measure.results import ArtifactResult
from edgetl.measure.timing import (
    BUSY_OTHER_CORES,
    BenchConfig,
    CpuMonitor,
    latency_percentiles,
    peak_rss_mib,
    time_invocations,
)
from edgetl.runtime import ModelFileError, load_model, read_metadata, verify_model
from edgetl.runtime.backends import import_runtime
from edgetl.runtime.cpu import int8_dot_features
from edgetl.stats import accuracy_interval

# ---------------------------------------------------------------------------------------------------------
# Measuring. Every artifact is measured in a fresh child process that imports only numpy and the runtime:
# the sweep's own process holds TensorFlow, its thread pools and its memory, which would distort both the
# latency and the peak resident memory of what a device would actually run.


@dataclass
class Measurement:
    """What the child process measures for one artifact."""

    size_bytes: int
    backend: str
    input_dtype: str
    latencies_ms: list[float]
    peak_rss_mib: float
    predictions: list[list[float]]  # probabilities per test image
    load_ms: float | None = None  # load_model: read, verify and allocate (the runtime already imported)
    first_inference_ms: float | None = None  # the first invoke after loading (lazy kernel set-up lands here)
    other_cpu_cores: float | None = None  # mean CPU use of all other processes while latency was timed
    cpu_int8_dot: str | None = None  # edgetl.runtime.cpu.int8_dot_features of the machine that timed it

    def result_fields(self, labels, classes: list[str]) -> dict:
        """The ArtifactResult fields this measurement supplies: size, accuracy figures, latency, memory."""

        lat = latency_percentiles(self.latencies_ms)
        predicted = np.asarray(self.predictions).argmax(axis=1) if len(self.predictions) else np.zeros(0, int)
        _, low, high = accuracy_interval(predicted == np.asarray(labels))
        busy = self.other_cpu_cores is not None and self.other_cpu_cores > BUSY_OTHER_CORES
        return {
            "size_bytes": self.size_bytes,
            **score(self.predictions, labels, classes),
            "accuracy_low": low,
            "accuracy_high": high,
            "latency_ms_p50": lat["p50"],
            "latency_ms_p90": lat["p90"],
            "latency_ms_p99": lat["p99"],
            "latency_ms_mean": lat["mean"],
            "load_ms": self.load_ms,
            "first_inference_ms": self.first_inference_ms,
            "other_cpu_cores": self.other_cpu_cores,
            "cpu_int8_dot": self.cpu_int8_dot,
            "warning": (
                f"busy machine: other processes used {self.other_cpu_cores:.2f} cores while latency was "
                "timed; the latency figures are inflated"
                if busy
                else ""
            ),
            "peak_rss_mib": self.peak_rss_mib,
            "num_test_images": len(labels),
            "predictions": [int(p) for p in predicted],
            "labels": [int(label) for label in labels],
        }


def first_image(images_path) -> np.ndarray:
    """The first image of a `prepare_test_images` .npz, read alone: latency is timed on it, and reading the
    whole array first would count the test split (which grows with the photos) in the model's peak memory."""
    import zipfile

    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with zipfile.ZipFile(images_path) as z, z.open("images.npy") as f:
        reader = readers.get(np.lib.format.read_magic(f))
        shape, fortran, dtype = reader(f) if reader else ((), True, None)
        if not fortran and len(shape) > 1 and shape[0] > 0:
            row = np.frombuffer(f.read(int(np.prod(shape[1:])) * dtype.itemsize), dtype)
            return row.reshape(shape[1:]).copy()
    with np.load(images_path) as data:  # a layout numpy writes only in odd cases: read it all
        return np.array(data["images"][0])


def measure_in_process(
    model_path: str, images_path: str, config: BenchConfig = BenchConfig(), predict: bool = True
) -> Measurement:
    """Load the artifact, time batch-1 invokes, record peak RSS, then predict the test images (unless
    `predict` is False: the caller has this artifact's predictions already, from its export check).

    Peak RSS is read after loading and timing but before the test images are read, so it is the footprint
    of the runtime with the model (plus the Python interpreter), not of the benchmark's own data.
    """
    import os
    import time

    import_runtime(model_path)  # the Python import is not the model's start-up cost
    started = time.perf_counter()
    model = load_model(model_path, num_threads=config.num_threads)
    load_ms = (time.perf_counter() - started) * 1000.0
    first = first_image(images_path)
    model.set_input(first)
    started = time.perf_counter()
    model.invoke()
    first_inference_ms = (time.perf_counter() - started) * 1000.0
    monitor = CpuMonitor()
    latencies = time_invocations(model, first, config)
    other_cpu_cores = monitor.other_cores()
    peak_mib = peak_rss_mib()
    cores = os.cpu_count() or 1
    probabilities = np.zeros((0, 0))
    if predict:
        if cores > config.num_threads:  # accuracy is not latency: the test images run on every core
            model = load_model(model_path, num_threads=cores)
        with np.load(images_path) as data:
            probabilities = model.predict(data["images"])
    return Measurement(
        size_bytes=os.path.getsize(model_path),
        backend=model.backend,
        input_dtype=str(model.input_dtype),
        latencies_ms=latencies,
        peak_rss_mib=peak_mib,
        predictions=probabilities.astype(float).tolist(),
        load_ms=load_ms,
        first_inference_ms=first_inference_ms,
        other_cpu_cores=other_cpu_cores,
        cpu_int8_dot=int8_dot_features(),
    )


def measure(
    model_path, images_path, config: BenchConfig = BenchConfig(), timeout: float = 1800, predict: bool = True
) -> Measurement:
    """Run :func:`measure_in_process` in a fresh Python process and return its measurement."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "edgetl.measure.bench",
        str(model_path),
        str(images_path),
        json.dumps(asdict(config)),
        *([] if predict else ["--no_predict"]),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"benchmark of {model_path} failed: {lines[-1] if lines else 'no output'}")
    return Measurement(**json.loads(proc.stdout.strip().splitlines()[-1]))


def score(probabilities, labels, classes: list[str]) -> dict:
    """Top-1 (and top-5 with more than five classes), per-class accuracy and the confusion matrix."""

    probs = np.asarray(probabilities)
    labels = np.asarray(labels)
    predicted = probs.argmax(axis=1)
    n = len(classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {
        c: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else float("nan")
        for i, c in enumerate(classes)
    }
    top5 = None
    if n > 5:
        top = np.argsort(-probs, axis=1)[:, :5]
        top5 = float(np.mean([label in row for label, row in zip(labels, top)]))
    return {
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "top5_accuracy": top5,
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def _child_main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m edgetl.measure.bench", description="measure one artifact (internal)")
    p.add_argument("model")
    p.add_argument("images", help=".npz with a uint8 'images' array (N, R, R, 3)")
    p.add_argument("config", help="BenchConfig as JSON")
    p.add_argument("--no_predict", dest="predict", action="store_false", help="time only; no test predictions")
    args = p.parse_args(argv)
    try:
        m = measure_in_process(args.model, args.images, BenchConfig(**json.loads(args.config)), args.predict)
    except (ModelFileError, RuntimeError) as e:  # a damaged model: one line for the parent, not a traceback
        print(f"error: {visible(' '.join(str(e).split()) or type(e).__name__)}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(m)))
    return 0


def prepare_test_images(dataset, resolution: int, path: Path, load=None) -> tuple[Path, np.ndarray]:
    """Decode the test split once per resolution into an .npz the benchmark children read (`load`, with
    `load_image`'s signature, is where a sweep's pixels come from, decoded once for the grid).

    Returns the file and the labels; images that fail to decode are left out (with a warning).
    """
    path = Path(path)
    records = dataset.split("testing")
    if path.is_file():
        with np.load(path) as data:
            if data["requested"].tolist() == [str(r.path) for r in records]:
                return path, data["labels"]
    images, kept, failed = decode_images(records, resolution, load)
    for line in failed:
        print(f"warning: skipping test image {line}")
    labels = np.array([r.label_index for r in kept], np.int64)
    arrays = {
        "images": images,
        "labels": labels,
        "paths": np.array([str(r.path) for r in kept]),
        "requested": np.array([str(r.path) for r in records]),
    }
    # streamed to disk: built in memory first, the file would be a second copy of the test split's pixels
    atomic_write_with(path, lambda f: np.savez(f, **arrays), "the benchmark's test images")
    return path, labels


def bench_model(model_path, image_dir, config: BenchConfig = BenchConfig(), split=None) -> ArtifactResult:
    """`edgetl bench`: any .tflite/.onnx with edgetl metadata, measured on a dataset's test split."""
    import tempfile

    model_path = Path(model_path)
    meta = read_metadata(model_path) or {}
    if meta.get("model_sha256"):
        verify_model(model_path)  # a damaged file is refused, not measured
    labels = meta.get("labels")
    size = (meta.get("input") or {}).get("size")
    if not labels or not size:
        raise ValueError(f"{model_path}: no edgetl metadata (labels, input size); export it with edgetl")
    dataset = scan_dataset(image_dir, split or SplitConfig())
    unknown = [c for c in dataset.classes if c not in labels]
    if unknown:
        raise ValueError(f"{image_dir} has classes the model does not know: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as tmp:
        images_path, ds_labels = prepare_test_images(dataset, int(size), Path(tmp) / "test.npz")
        try:
            m = measure(model_path, images_path, config)
        except RuntimeError as e:  # the benchmark child's one line: the model loads or runs no further
            raise ModelFileError(str(e)) from e
    # Dataset class indices -> the model's label order.
    model_labels = np.array([labels.index(dataset.classes[i]) for i in ds_labels])
    bb = meta.get("backbone") or {}
    return ArtifactResult(
        point=point_id(bb.get("version", "?"), bb.get("alpha", 0), size),
        backbone=bb.get("version", "?"),
        alpha=float(bb.get("alpha", 0)),
        resolution=int(size),
        format=meta.get("format", model_path.suffix[1:]),
        path=str(model_path),
        num_threads=config.num_threads,
        macs=0,
        params=0,
        **m.result_fields(model_labels, labels),
    )


if __name__ == "__main__":
    import sys

    sys.exit(_child_main())
