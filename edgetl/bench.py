"""Benchmark one artifact on the held-out test split: size, accuracy, latency, memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
