"""What a sweep measured, one `ArtifactResult` per artifact, and its files results.json and results.csv.

results.json is the source of truth (exact round trip through :func:`read_results`), and keeps the
sweep's notes (skipped or failed grid points); results.csv is the same rows flat, for spreadsheets.
The benchmark fills the rows, `pareto` picks from them, `report` and `plot` draw them: all of them
depend on this module, which depends on nothing but the standard library.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgetl.io.files import atomic_write_text
from edgetl.io.text import visible, visible_lines

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"


@dataclass
class ArtifactResult:
    """One row of results.csv / results.json: every figure measured for one exported artifact."""

    point: str  # grid point id, e.g. "v2-a1-r224" (edgetl.features.backbones.point_id)
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
    peak_rss_mib: float  # peak resident memory of the process running the artifact
    macs: int  # multiply-accumulates of the backbone (+ head) for one image
    params: int
    num_test_images: int
    per_class_accuracy: dict[str, float] = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    status: str = "ok"  # "ok", or what went wrong / which check failed
    accuracy_low: float | None = None  # 95% Wilson interval of `accuracy` (edgetl.stats)
    accuracy_high: float | None = None
    load_ms: float | None = None  # start-up: load and allocate, then the first inference
    first_inference_ms: float | None = None
    other_cpu_cores: float | None = None  # other processes' CPU use while latency was timed
    cpu_int8_dot: str | None = None  # int8 dot-product features of the CPU that timed it ("none"; None: unknown)
    warning: str = ""  # e.g. a busy machine during the latency measurement
    predictions: list[int] = field(default_factory=list)  # top-1 class per test image, in test-split order
    labels: list[int] = field(default_factory=list)  # the true class of each of those images
    latency_source: str = "host"  # "host" (the sweep's machine), "device" (measured there), "estimate"
    sha256: str = ""  # of the artifact file as measured
    measured_on: str = ""  # the machine that timed it: its hostname (with --ray, also the Ray node id)
    # The export check's per-class fidelity to the float model (edgetl.export.fidelity.summary; {} for float32
    # formats and older results): per class the float and artifact accuracy, flips, exact McNemar p, Holm p.
    class_fidelity: dict = field(default_factory=dict)
    # The accelerators that could take this file, by each runtime's static check (edgetl.export.accelerators;
    # {} for older results): TFLite's GPU delegate, onnxruntime's NNAPI and Core ML partitions.
    accelerators: dict = field(default_factory=dict)
    # The spread over --calibration_repeats disjoint calibration sets (edgetl.export.repeats.summary; {} when
    # not repeated and in older results).
    calibration_repeats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def init_ms(self) -> float | None:
        """Start-up cost: load and allocate plus the first inference (what a cold app start waits for)."""
        if self.load_ms is None or self.first_inference_ms is None:
            return None
        return self.load_ms + self.first_inference_ms

    def correct(self):
        """Per-image correctness (numpy bool array) on the test split; None for rows without predictions."""
        import numpy as np

        if not self.predictions or len(self.predictions) != len(self.labels):
            return None
        return np.asarray(self.predictions) == np.asarray(self.labels)

    @property
    def identity(self) -> tuple[str, str, str]:
        """Which artifact this row is, across lists (a pick may come from a re-read results.json)."""
        return (self.point, self.format, self.path)


def failed_result(
    point: str, backbone: str, alpha: float, resolution: int, fmt: str, status: str, num_threads: int
) -> ArtifactResult:
    """The row of an artifact that could not be made or measured: NaN figures, and why in `status`."""
    nan = float("nan")
    return ArtifactResult(
        point=point,
        backbone=backbone,
        alpha=alpha,
        resolution=resolution,
        format=fmt,
        path="",
        size_bytes=0,
        accuracy=nan,
        top5_accuracy=None,
        latency_ms_p50=nan,
        latency_ms_p90=nan,
        latency_ms_p99=nan,
        latency_ms_mean=nan,
        num_threads=num_threads,
        peak_rss_mib=nan,
        macs=0,
        params=0,
        num_test_images=0,
        status=status,
    )


_FIELDS = [f.name for f in dataclasses.fields(ArtifactResult)]
_JSON_COLUMNS = (
    "per_class_accuracy",
    "confusion_matrix",
    "predictions",
    "labels",
    "class_fidelity",
    "accelerators",
    "calibration_repeats",
)


def _csv_row(r: ArtifactResult) -> dict[str, Any]:
    row = r.to_dict()
    for col in _JSON_COLUMNS:
        row[col] = json.dumps(row[col], sort_keys=False)
    if row["top5_accuracy"] is None:
        row["top5_accuracy"] = ""
    # Statuses quote error messages, paths come from folder names: no control characters into a spreadsheet.
    # Line breaks stay: the csv module quotes them.
    return {k: visible_lines(v) if isinstance(v, str) else v for k, v in row.items()}


def write_results(
    results: Sequence[ArtifactResult], out_dir: str | os.PathLike, notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` into `out_dir`; returns (csv_path, json_path).

    The CSV has one flat row per artifact with the ArtifactResult fields as columns; the nested
    per_class_accuracy / confusion_matrix are JSON strings there and top5_accuracy ``None`` is an empty
    cell. The JSON holds ``{"results": [to_dict(), ...], "notes": [...]}`` and is the one to read back.
    """
    out = Path(out_dir)
    rows = list(results)
    for i, r in enumerate(rows):
        if not isinstance(r, ArtifactResult):
            raise ValueError(f"results[{i}] is a {type(r).__name__}, not an ArtifactResult")
    table = io.StringIO()
    w = csv.DictWriter(table, fieldnames=_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(_csv_row(r))
    csv_path = atomic_write_text(out / RESULTS_CSV, table.getvalue())
    # json's default repr of floats round-trips exactly; NaN (failed rows) is written as NaN,
    # which Python's json reads back, at the cost of strict-JSON tools.
    text = json.dumps({"results": [r.to_dict() for r in rows], "notes": list(notes)}, indent=2) + "\n"
    json_path = atomic_write_text(out / RESULTS_JSON, text)
    return csv_path, json_path


def _read_results_json(out_dir: str | os.PathLike) -> tuple[Path, list, list[str]]:
    path = Path(out_dir) / RESULTS_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {out_dir} a sweep output directory?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if isinstance(data, list):  # written before notes were kept
        return path, data, []
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError(f'{path} must hold {{"results": [...], "notes": [...]}}, got {type(data).__name__}')
    notes = data.get("notes") or []
    if not isinstance(notes, list):
        raise ValueError(f"{path}: notes must be a list, got {type(notes).__name__}")
    return path, data["results"], [str(n) for n in notes]


#: Fields renamed since results.json was first written: old name -> new name (older files still read).
RENAMED = {"peak_rss_mb": "peak_rss_mib"}  # it always held MiB (ru_maxrss / 1024), beside sizes in SI MB


def read_results(out_dir: str | os.PathLike) -> list[ArtifactResult]:
    """The ArtifactResults stored in ``out_dir/results.json`` (exactly what write_results wrote).

    Fields missing from an older file take their dataclass defaults; unknown keys are an error
    rather than silently dropped, since that would mean this edgetl is older than the file.
    """
    path, data, _notes = _read_results_json(out_dir)
    known = set(_FIELDS)
    out: list[ArtifactResult] = []
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            raise ValueError(f"{path}: entry {i} is a {type(d).__name__}, not an object")
        d = {RENAMED.get(k, k): v for k, v in d.items()}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{path}: entry {i} has unknown fields {unknown} (written by a newer edgetl?)")
        wrong = _wrong_type(d)
        if wrong:
            raise ValueError(f"{path}: entry {i}: {visible(wrong)}")
        try:
            out.append(ArtifactResult(**d))
        except TypeError as e:
            raise ValueError(f"{path}: entry {i} is not a complete result: {e}") from e
    return out


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "dict": (dict,)}
_TYPES["list"] = (list,)


def _is(value, kind: str) -> bool:
    return not isinstance(value, bool) and isinstance(value, _TYPES[kind])


def _wrong_type(d: dict) -> str | None:
    """What is wrong with the types of a results.json entry (a file anyone can edit), None when nothing:
    caught here, a wrong type is one message instead of a traceback deep inside the report."""
    for f in dataclasses.fields(ArtifactResult):
        if f.name not in d:
            continue
        value, options = d[f.name], [t.strip() for t in str(f.type).split("|")]
        if value is None and "None" in options:
            continue
        if not any(_is(value, o.split("[")[0]) for o in options if o != "None"):
            return f"{f.name} must be {str(f.type)!r}, got {type(value).__name__} {str(value)[:40]!r}"
    matrix = d.get("confusion_matrix") or []
    nested = {
        "per_class_accuracy": all(_is(v, "float") for v in (d.get("per_class_accuracy") or {}).values()),
        "confusion_matrix": all(_is(row, "list") and all(_is(x, "int") for x in row) for row in matrix),
        "predictions": all(_is(x, "int") for x in d.get("predictions") or []),
        "labels": all(_is(x, "int") for x in d.get("labels") or []),
    }
    bad = [name for name, ok in nested.items() if not ok]
    return f"{bad[0]} holds a value of the wrong type" if bad else None


def read_notes(out_dir: str | os.PathLike) -> list[str]:
    """The sweep's notes kept in ``out_dir/results.json`` (skipped and failed grid points)."""
    return _read_results_json(out_dir)[2]


#: Per-image and per-class lists, left out of the frame: one row per artifact reads better without them.
_FRAME_OMITS = ("predictions", "labels", "confusion_matrix", "per_class_accuracy")


def results_frame(results: Sequence[ArtifactResult]):
    """The rows as a pandas DataFrame, one per artifact (without the per-image lists; `init_ms` added).

    pandas is not a dependency of edgetl: this needs it installed (``pip install pandas``).
    """
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("results_frame() and SweepResult.to_pandas() need pandas: pip install pandas") from e
    rows = [{k: v for k, v in r.to_dict().items() if k not in _FRAME_OMITS} | {"init_ms": r.init_ms} for r in results]
    return pd.DataFrame(rows)
