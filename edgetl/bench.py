"""Benchmark one artifact on the held-out test split: size, accuracy, latency, memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ArtifactResult:
    """One row of results.csv / results.json: every figure measured for one exported artifact."""

    point: str  # grid point id, e.g. "v2-a1.0-r224"
    backbone: str  # "v1" | "v2" | "hub"
    alpha: float
    resolution: int
    format: str  # e.g. "tflite-int8", see edgetl.export.FORMATS
    path: str  # artifact path, relative to the sweep output dir
    size_bytes: int
    accuracy: float  # top-1 on the test split, 0..1
    top5_accuracy: float | None  # only when there are more than five classes
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    latency_ms_mean: float
    num_threads: int
    peak_rss_mb: float  # peak resident memory of the process running the artifact
    macs: int  # multiply-accumulates of the backbone (+ head) for one image
    params: int
    num_test_images: int
    per_class_accuracy: dict[str, float] = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    status: str = "ok"  # "ok", or what went wrong / which check failed

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Measuring. Every artifact is measured in a fresh child process that imports only numpy and the runtime:
# the sweep's own process holds TensorFlow, its thread pools and its memory, which would distort both the
# latency and the peak resident memory of what a device would actually run.

WARMUP_RUNS = 10
MIN_TIMED_RUNS = 50
MIN_TIMED_SECONDS = 2.0
MAX_TIMED_RUNS = 2000


@dataclass
class Measurement:
    """What the child process measures for one artifact."""

    size_bytes: int
    backend: str
    input_dtype: str
    latencies_ms: list[float]
    peak_rss_mb: float
    predictions: list[list[float]]  # probabilities per test image

    def result_fields(self, labels, classes: list[str]) -> dict:
        """The ArtifactResult fields this measurement supplies: size, accuracy figures, latency, memory."""
        lat = latency_percentiles(self.latencies_ms)
        return {
            "size_bytes": self.size_bytes,
            **score(self.predictions, labels, classes),
            "latency_ms_p50": lat["p50"],
            "latency_ms_p90": lat["p90"],
            "latency_ms_p99": lat["p99"],
            "latency_ms_mean": lat["mean"],
            "peak_rss_mb": self.peak_rss_mb,
            "num_test_images": len(labels),
        }


def latency_percentiles(latencies_ms: list[float]) -> dict[str, float]:

    a = np.asarray(latencies_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
    }


def time_invocations(model, image, warmup: int = WARMUP_RUNS, min_runs: int = MIN_TIMED_RUNS,
                     min_seconds: float = MIN_TIMED_SECONDS, max_runs: int = MAX_TIMED_RUNS) -> list[float]:
    """Batch-1 latencies in ms: warm-up, then timed invoke() calls until both minimums are met."""
    import time

    model.set_input(image)
    for _ in range(warmup):
        model.invoke()
    latencies: list[float] = []
    started = time.perf_counter()
    while len(latencies) < max_runs and (len(latencies) < min_runs or time.perf_counter() - started < min_seconds):
        t0 = time.perf_counter()
        model.invoke()
        latencies.append((time.perf_counter() - t0) * 1000.0)
    return latencies


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    Linux's VmHWM belongs to the address space, so it starts afresh at exec; ru_maxrss does not (a child
    inherits its parent's peak at fork), which would charge TensorFlow's memory to every benchmark child.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def measure_in_process(model_path: str, images_path: str, num_threads: int, min_runs: int = MIN_TIMED_RUNS,
                       min_seconds: float = MIN_TIMED_SECONDS) -> Measurement:
    """Load the artifact, time batch-1 invokes, record peak RSS, then predict the test images.

    Peak RSS is read after loading and timing but before the test images are read, so it is the footprint
    of the runtime with the model (plus the Python interpreter), not of the benchmark's own data.
    """
    import os


    from .runtime import load_model

    model = load_model(model_path, num_threads=num_threads)
    with np.load(images_path) as data:
        first = np.array(data["images"][:1])
    latencies = time_invocations(model, first[0], min_runs=min_runs, min_seconds=min_seconds)
    peak_rss_mb = peak_rss_mib()
    with np.load(images_path) as data:
        probabilities = model.predict(data["images"])
    return Measurement(
        size_bytes=os.path.getsize(model_path),
        backend=model.backend,
        input_dtype=str(model.input_dtype),
        latencies_ms=latencies,
        peak_rss_mb=peak_rss_mb,
        predictions=probabilities.astype(float).tolist(),
    )


def measure(model_path, images_path, num_threads: int = 1, min_runs: int = MIN_TIMED_RUNS,
            min_seconds: float = MIN_TIMED_SECONDS, timeout: float = 1800) -> Measurement:
    """Run :func:`measure_in_process` in a fresh Python process and return its measurement."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edgetl.bench", str(model_path), str(images_path),
           "--num_threads", str(num_threads), "--min_runs", str(min_runs), "--min_seconds", str(min_seconds)]
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
    import json

    p = argparse.ArgumentParser(prog="python -m edgetl.bench", description="measure one artifact (internal)")
    p.add_argument("model")
    p.add_argument("images", help=".npz with a uint8 'images' array (N, R, R, 3)")
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--min_runs", type=int, default=MIN_TIMED_RUNS)
    p.add_argument("--min_seconds", type=float, default=MIN_TIMED_SECONDS)
    args = p.parse_args(argv)
    m = measure_in_process(args.model, args.images, args.num_threads, args.min_runs, args.min_seconds)
    print(json.dumps(asdict(m)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_child_main())


def prepare_test_images(dataset, resolution: int, path: Path) -> tuple[Path, np.ndarray]:
    """Decode the test split once per resolution into an .npz the benchmark children read.

    Returns the file and the labels; images that fail to decode are left out (with a warning).
    """
    import io

    from .data import decode_images
    from .files import atomic_write_bytes

    path = Path(path)
    records = dataset.split("testing")
    if path.is_file():
        with np.load(path) as data:
            if data["requested"].tolist() == [str(r.path) for r in records]:
                return path, data["labels"]
    images, kept, failed = decode_images(records, resolution)
    for line in failed:
        print(f"warning: skipping test image {line}")
    labels = np.array([r.label_index for r in kept], np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels, paths=np.array([str(r.path) for r in kept]),
             requested=np.array([str(r.path) for r in records]))
    atomic_write_bytes(path, buffer.getvalue())
    return path, labels


def bench_model(model_path, image_dir, num_threads: int = 1, validation_percentage: float = 10.0,
                testing_percentage: float = 10.0) -> ArtifactResult:
    """`edgetl bench`: any .tflite/.onnx with edgetl metadata, measured on a dataset's test split."""
    import tempfile

    from .data import scan_dataset
    from .runtime import read_metadata

    model_path = Path(model_path)
    meta = read_metadata(model_path) or {}
    labels = meta.get("labels")
    size = (meta.get("input") or {}).get("size")
    if not labels or not size:
        raise ValueError(f"{model_path}: no edgetl metadata (labels, input size); export it with edgetl")
    dataset = scan_dataset(image_dir, validation_percentage, testing_percentage)
    unknown = [c for c in dataset.classes if c not in labels]
    if unknown:
        raise ValueError(f"{image_dir} has classes the model does not know: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as tmp:
        images_path, ds_labels = prepare_test_images(dataset, int(size), Path(tmp) / "test.npz")
        m = measure(model_path, images_path, num_threads)
    # Dataset class indices -> the model's label order.
    model_labels = np.array([labels.index(dataset.classes[i]) for i in ds_labels])
    bb = meta.get("backbone") or {}
    return ArtifactResult(
        point=f"{bb.get('version', '?')}-a{bb.get('alpha', 0):g}-r{size}", backbone=bb.get("version", "?"),
        alpha=float(bb.get("alpha", 0)), resolution=int(size), format=meta.get("format", model_path.suffix[1:]),
        path=str(model_path), num_threads=num_threads, macs=0, params=0,
        **m.result_fields(model_labels, labels),
    )
