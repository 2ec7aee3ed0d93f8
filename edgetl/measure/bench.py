"""Benchmark one artifact on the held-out test split: size, accuracy, latency, memory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgetl.data.dataset import SplitConfig, decode_images, scan_dataset
from edgetl.features.backbones import point_id
from edgetl.io.files import atomic_write_with
from edgetl.io.text import visible
from edgetl.measure.results import ArtifactResult
from edgetl.params import Interval, validate
from edgetl.runtime import DEFAULT_NUM_THREADS, ModelFileError, load_model, read_metadata, verify_model
from edgetl.runtime.backends import import_runtime
from edgetl.runtime.cpu import int8_dot_features
from edgetl.stats import accuracy_interval

# ---------------------------------------------------------------------------------------------------------
# Measuring. Every artifact is measured in a fresh child process that imports only numpy and the runtime:
# the sweep's own process holds TensorFlow, its thread pools and its memory, which would distort both the
# latency and the peak resident memory of what a device would actually run.


@dataclass(frozen=True)
class BenchConfig:
    """How latency is measured: batch-1 invokes at `num_threads`, after `warmup_runs` untimed ones.

    Timing goes on until at least `min_timed_runs` and `min_timed_seconds` are both reached, then until
    the percentiles are stable: p50 and p90 moved by less than `stable_within` (relative), p99 by less
    than 2.5x that, over the last STABILITY_STEP invokes. It stops anyway at `max_timed_seconds` or
    `max_timed_runs`. A fast model is done in a fraction of a second instead of a fixed two; a slow or
    noisy one gets the full time. `stable_within=0` turns the early stop off.
    """

    num_threads: int = DEFAULT_NUM_THREADS
    warmup_runs: int = 10
    min_timed_runs: int = 100  # a p99 needs at least a hundred samples to be more than the maximum
    min_timed_seconds: float = 0.0
    max_timed_seconds: float = 2.0
    max_timed_runs: int = 2000
    stable_within: float = 0.02

    CONSTRAINTS: ClassVar[dict] = {
        "num_threads": Interval(int, 1),
        "warmup_runs": Interval(int, 0),
        "min_timed_runs": Interval(int, 1),
        "min_timed_seconds": Interval(float, 0),
        "max_timed_seconds": Interval(float, 0),
        "max_timed_runs": Interval(int, 1),
        "stable_within": Interval(float, 0),
    }

    def __post_init__(self) -> None:
        validate(self)
        if self.max_timed_runs < self.min_timed_runs:
            raise ValueError(
                f"max_timed_runs ({self.max_timed_runs}) must be >= min_timed_runs ({self.min_timed_runs})"
            )


#: How many invokes apart the percentiles are compared when deciding that they are stable.
STABILITY_STEP = 50


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


#: Other processes' mean CPU use (in cores) above which a latency measurement is flagged as disturbed.
#: An idle machine here shows 0.01-0.05; one other busy thread shows about 1.
BUSY_OTHER_CORES = 0.25


class CpuMonitor:
    """CPU time used by every other process between start and `other_cores()` (Linux /proc; None elsewhere)."""

    def __init__(self):
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        import os
        import time

        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # all but idle and iowait
        own_ticks = int(own[11]) + int(own[12])  # utime + stime of this process (all its threads)
        return busy / os.sysconf("SC_CLK_TCK"), own_ticks / os.sysconf("SC_CLK_TCK"), time.monotonic()

    def other_cores(self) -> float | None:
        end = self._read()
        if self._start is None or end is None or end[2] <= self._start[2]:
            return None
        others = (end[0] - self._start[0]) - (end[1] - self._start[1])
        return max(0.0, others / (end[2] - self._start[2]))


def latency_percentiles(latencies_ms: list[float]) -> dict[str, float]:

    a = np.asarray(latencies_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
    }


def _stable(before: dict[str, float], now: dict[str, float], within: float) -> bool:
    """Whether p50, p90 (within `within`) and p99 (within 2.5x that) moved little between two looks."""
    limits = {"p50": within, "p90": within, "p99": 2.5 * within}
    return all(abs(now[k] - before[k]) <= limit * max(before[k], 1e-9) for k, limit in limits.items())


def time_invocations(model, image, config: BenchConfig = BenchConfig()) -> list[float]:
    """Batch-1 latencies in ms: warm-up, then timed invoke() calls until the minimums are met and the
    percentiles are stable, or a maximum is reached (BenchConfig)."""
    import time

    model.set_input(image)
    for _ in range(config.warmup_runs):
        model.invoke()
    latencies: list[float] = []
    started = time.perf_counter()
    last_look: dict[str, float] | None = None
    while len(latencies) < config.max_timed_runs:
        elapsed = time.perf_counter() - started
        if len(latencies) >= config.min_timed_runs and elapsed >= config.min_timed_seconds:
            if elapsed >= config.max_timed_seconds:
                break
            if len(latencies) % STABILITY_STEP == 0:
                look = latency_percentiles(latencies)
                if (
                    config.stable_within > 0
                    and last_look is not None
                    and _stable(last_look, look, config.stable_within)
                ):
                    break
                last_look = look
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
