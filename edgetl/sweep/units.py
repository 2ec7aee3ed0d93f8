"""The sweep's three kinds of unit, each a plain function of explicit (picklable) inputs, run by both
executors: in-process (`edgetl.sweep.local`) and as Ray tasks (`edgetl.sweep.ray_tasks`).

- `train_point`: bottlenecks and the head of one grid point, written as its run directory;
- `export_point` / `edgetl.export.export_format`: one format of one point, converted and checked;
- `bench_artifact`: one artifact measured on the test split.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgetl.data.dataset import Dataset
from edgetl.export import export_format, load_run_inputs
from edgetl.features.backbones import BackboneSpec, ResolvedWeights
from edgetl.io.files import one_line, sha256_file
from edgetl.io.memory import trim_malloc
from edgetl.measure.bench import measure
from edgetl.measure.results import ArtifactResult, failed_result
from edgetl.sweep.config import SweepConfig, point_dir, point_name
from edgetl.sweep.plan import PointPlan
from edgetl.sweep.state import record_export
from edgetl.train.run import TrainConfig, train


def train_point(
    config: SweepConfig, spec: BackboneSpec, dataset: Dataset, weights: ResolvedWeights, log, load=None
) -> dict:
    """Unit 1: bottlenecks and head of one point, written to its run directory; returns its run.json.
    `load` (`load_image`'s signature) is where the pixels come from: the in-process sweep's decoded-once store."""
    out = point_dir(config, spec)
    train(
        TrainConfig(
            image_dir=config.image_dir,
            output_dir=out,
            backbone=spec,
            split=config.split,
            features=config.features,
            head=config.head,
            tune=config.tune,
            fine_tune=config.fine_tune,
            summaries_dir=Path(config.summaries_dir) / out.name if config.summaries_dir else None,
        ),
        log=lambda msg: None if msg.startswith("step ") else log(msg),  # per-step lines: train's own job
        dataset=dataset,
        weights=weights,
        load=load,
    )
    return json.loads((out / "run.json").read_text())


def from_check(entry: dict | None) -> dict:
    """What a results row carries over from the artifact's export.json entry (the export check's findings)."""
    entry = entry or {}
    return {key: entry.get(key) or {} for key in ("class_fidelity", "accelerators", "calibration_repeats")}


def bench_artifact(
    config: SweepConfig,
    spec: BackboneSpec,
    fmt: str,
    artifact: Path,
    test_set: tuple,
    run: dict,
    status: str,
    predictions=None,
    check: dict | None = None,
) -> tuple[ArtifactResult, dict]:
    """Unit 3: one artifact measured on the test split. Returns its row and what the benchmark ran on.

    `test_set` is (the .npz of decoded test images, their labels); `status` is the export check's verdict,
    carried into the row. `predictions`: this artifact's probabilities on those images from its export
    check (`edgetl.export.check_predictions`), which the same runtime would only compute again; without
    them the benchmark predicts. `check`: the artifact's export.json entry, whose per-class fidelity and
    accelerator coverage are carried into the row (`from_check`). A benchmark that fails is a failed row, not an
    exception.
    """
    images_path, labels = test_set
    started = time.perf_counter()
    try:
        m = measure(artifact, images_path, config.bench, predict=predictions is None)
        if predictions is not None:
            m.predictions = np.asarray(predictions, np.float32).astype(float).tolist()
    except Exception as e:  # one artifact that won't run is a row, not a dead sweep
        failed = failed_result(
            point_name(config, spec),
            spec.version,
            spec.alpha,
            spec.resolution,
            fmt,
            f"benchmark failed: {one_line(e)}",
            config.bench.num_threads,
        )
        return failed, {}
    row = ArtifactResult(
        point=point_name(config, spec),
        backbone=spec.version,
        alpha=spec.alpha,
        resolution=spec.resolution,
        format=fmt,
        path=str(artifact.relative_to(config.output_dir)),
        macs=run["backbone"]["macs"] + run["head"]["macs"],
        params=run["backbone"]["params"] + run["head"]["params"],
        num_threads=config.bench.num_threads,
        status=status,
        **from_check(check),
        sha256=sha256_file(artifact),
        measured_on=socket.gethostname(),
        **m.result_fields(labels, run["classes"]),
    )
    return row, {
        "backend": m.backend,
        "input_dtype": m.input_dtype,
        "seconds": round(time.perf_counter() - started, 2),
        "predictions_from": "benchmark" if predictions is None else "export check",
    }


def export_point(plan: PointPlan, dataset, log=None, load=None) -> dict:
    """Unit 2 for each format the plan still exports; returns the point's state. Picklable arguments only:
    the in-process executor runs it in its export worker (`edgetl.sweep.local`)."""
    log = log or (lambda msg: tqdm.write(msg))
    config, spec = plan.config, plan.spec
    inputs = None
    for fmt in plan.exports():
        inputs = inputs or load_run_inputs(point_dir(config, spec), dataset, load)
        result = export_format(inputs, fmt, config.export, log)
        log(exported_line(plan.name, fmt, result.status, result.size_bytes))
        record_export(config, spec, fmt, plan.keys[fmt], plan.state)
    while (rung := plan.next_rung()) is not None:  # int8 files that failed: the ladder's artifacts, as on Ray
        log(f"{plan.name}: quantization ladder: trying {rung}")
        inputs = inputs or load_run_inputs(point_dir(config, spec), dataset, load)
        result = export_format(inputs, rung, config.export, log)
        log(exported_line(plan.name, rung, result.status, result.size_bytes))
        plan.rung_exported(rung)
    plan.ladder_finished(log)
    return plan.state


def kept_paths(test_set: tuple) -> list[str]:
    """The paths of the test images a benchmark runs on, in order (`prepare_test_images`' .npz)."""
    with np.load(test_set[0]) as data:
        return data["paths"].tolist()


def release_models() -> None:
    """Drop what the last point left in Keras' global state, so a sweep's memory does not grow with its grid."""
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    trim_malloc()  # what was just freed stays in glibc's arenas, counted as this process's, until trimmed


# ---------------------------------------------------------------------------------------------------------
# the line each finished unit says (both executors): off a terminal, these are the sweep's progress


def trained_line(name: str, run: dict) -> str:
    accuracy, seconds = run.get("metrics", {}).get("test_accuracy", float("nan")), run.get("seconds", 0)
    return f"{name}: trained, test accuracy {accuracy:.1%} ({seconds:.0f} s)"


def exported_line(name: str, fmt: str, status: str, size_bytes: int) -> str:
    return f"{name} {fmt}: exported, {size_bytes / 1e6:.2f} MB, check {status}"


def measured_line(row: ArtifactResult) -> str:
    if not row.ok:
        return f"{row.point} {row.format}: {row.status}"
    interval = f" [{row.accuracy_low:.1%}, {row.accuracy_high:.1%}]" if row.accuracy_low is not None else ""
    return f"{row.point} {row.format}: measured, p50 {row.latency_ms_p50:.2f} ms, accuracy {row.accuracy:.1%}{interval}"
