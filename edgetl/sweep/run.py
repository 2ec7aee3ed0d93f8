"""`edgetl sweep`: train every grid point, export every format, measure every artifact, pick one.

The work comes in three kinds of unit, each a plain function of explicit inputs:

- `train_point`: bottlenecks and the head of one grid point, written as its run directory;
- `edgetl.export.export_format`: one format of one point, converted and checked;
- `bench_artifact`: one artifact measured on the test split.

Each unit's output carries a key of the settings that produced it (train -> export -> bench, each key
folding in the one before; `train_key`, `export_key`, `bench_key`), written atomically when the unit
finishes. `edgetl.sweep.local.run_grid` is the in-process runner: for each point it redoes only the units whose key
changed (`train_todo`, `export_point`, `bench_point`), so an interrupted sweep loses at most the units in
flight. A point's export runs in a worker process while the next point trains (`edgetl.sweep.local`); its
benchmarks wait for both, so nothing else runs while a latency is timed. The dataset is scanned and each
point's weights are resolved once, and passed down. `edgetl.sweep.ray_driver` runs the same units as Ray
tasks; both runners decide what is finished with the same checks (`finished_train`, `export_todo`,
`settled_row`) and record it with the same writes (`record_train`, `record_export`, `record_bench`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgetl import __version__
from edgetl.data.dataset import Dataset, SplitConfig, scan_dataset
from edgetl.data.pixels import PIXELS_DIR, LazyPixels
from edgetl.export import ExportConfig
from edgetl.features.backbones import BackboneSpec, ResolvedWeights, WeightsNotFoundError, resolve_weights
from edgetl.features.bottlenecks import FeatureConfig
from edgetl.io.faults import fault_point
from edgetl.io.files import atomic_write_json, one_line, sha256_file, writing
from edgetl.measure.bench import BenchConfig, measure, prepare_test_images
from edgetl.measure.results import ArtifactResult, failed_result, write_results
from edgetl.pick.pareto import Budget, PickConfig, pareto_front, pick
from edgetl.pick.report import write_model_card, write_report
from edgetl.sweep.space import check_space
from edgetl.sweep.state import (
    TEST_IMAGES,
    export_todo,
    finished_train,
    point_dir,
    point_name,
    read_json,
    read_state,
    record_bench,
    record_export,
    record_train,
    settled_row,
)
from edgetl.train.finetune import FineTuneConfig
from edgetl.train.head import HeadConfig
from edgetl.train.run import TrainConfig, train
from edgetl.train.tuning import TuneConfig

#: What a sweep exports unless told otherwise: the float and int8 file of each runtime.
SWEEP_FORMATS = ("tflite-float32", "tflite-int8", "onnx-float32", "onnx-int8")


@dataclass(frozen=True)
class SweepConfig:
    """A whole sweep: the grid, and the config of every stage it runs (each owns its defaults)."""

    image_dir: Path
    output_dir: Path
    points: tuple[BackboneSpec, ...]
    split: SplitConfig = SplitConfig()
    features: FeatureConfig = FeatureConfig()
    head: HeadConfig = HeadConfig()
    tune: TuneConfig = TuneConfig()
    export: ExportConfig = ExportConfig(formats=SWEEP_FORMATS)
    bench: BenchConfig = BenchConfig()
    budget: Budget = Budget()
    pick: PickConfig = PickConfig()
    force: bool = False  # redo every unit, finished or not
    fine_tune_front: int = 0  # after the head-only grid, fine-tune this many of the front's most accurate points
    fine_tune_settings: FineTuneConfig = FineTuneConfig()
    fine_tune: FineTuneConfig | None = None  # set on the config of the fine-tuning pass: its points are fine-tuned

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(dict.fromkeys(self.points)))
        if not self.points:
            raise ValueError("the grid has no points; give --backbones, --alphas and --resolutions (or --grid)")
        if (
            isinstance(self.fine_tune_front, bool)
            or not isinstance(self.fine_tune_front, int)
            or self.fine_tune_front < 0
        ):
            raise ValueError(f"fine_tune_front must be a whole number >= 0, got {self.fine_tune_front!r}")
        if self.export.calibration_manifest is not None:
            raise ValueError(
                "a sweep draws calibration images per point; a calibration manifest is for `edgetl export`"
            )


@dataclass
class SweepResult:
    results: list[ArtifactResult]
    pick: ArtifactResult | None
    report: Path
    notes: list[str]


def settings_key(*parts) -> str:
    """A short hash of the settings that produced a unit's output: equal key, reusable output."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_key(config: SweepConfig, spec: BackboneSpec, weights: ResolvedWeights) -> str:
    return settings_key(
        __version__,
        str(Path(config.image_dir).resolve()),
        config.split.validation_percentage,
        config.split.testing_percentage,
        asdict(spec),
        config.features.weights,
        weights.sha256,
        asdict(config.head),
        asdict(config.tune),
        config.features.augment_views,
        config.features.engine,
        asdict(config.fine_tune) if config.fine_tune else None,
    )


def export_key(config: SweepConfig, train_key: str, fmt: str) -> str:
    from edgetl.export import RECIPE_VERSION

    e = config.export
    return settings_key(
        train_key,
        fmt,
        e.io_type,
        e.num_calibration_images,
        RECIPE_VERSION,
        e.bias_correction,
        e.max_accuracy_drop,
        e.max_class_drop,
        e.fidelity_images_per_class,
        e.quantization_ladder,
    )


def export_keys(config: SweepConfig, trained: str) -> dict[str, str]:
    """Each format's export key for the point whose train key is `trained`; the quantization ladder's rungs that
    were not requested get a key folding in every requested format's (the export that may convert them)."""
    from edgetl.export import LADDER

    keys = {f: export_key(config, trained, f) for f in config.export.formats}
    return {**{f: settings_key(f, sorted(keys.items())) for f in LADDER if f not in keys}, **keys}


# Bump when a benchmark row gains figures: 2 added per-image predictions, start-up cost and busy warnings;
# 3 stops timing once the percentiles are stable.
BENCH_VERSION = 3


def bench_key(config: SweepConfig, export_key: str) -> str:
    b = config.bench
    return settings_key(
        export_key,
        b.num_threads,
        b.min_timed_runs,
        b.min_timed_seconds,
        b.max_timed_seconds,
        b.stable_within,
        BENCH_VERSION,
    )


# ---------------------------------------------------------------------------------------------------------
# the units


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
        ),
        log=lambda msg: None if msg.startswith("step ") else log(msg),  # per-step lines: train's own job
        dataset=dataset,
        weights=weights,
        load=load,
    )
    return json.loads((out / "run.json").read_text())


def bench_artifact(
    config: SweepConfig,
    spec: BackboneSpec,
    fmt: str,
    artifact: Path,
    test_set: tuple,
    run: dict,
    status: str,
    predictions=None,
    class_fidelity: dict | None = None,
) -> tuple[ArtifactResult, dict]:
    """Unit 3: one artifact measured on the test split. Returns its row and what the benchmark ran on.

    `test_set` is (the .npz of decoded test images, their labels); `status` is the export check's verdict,
    carried into the row. `predictions`: this artifact's probabilities on those images from its export
    check (`edgetl.export.check_predictions`), which the same runtime would only compute again; without
    them the benchmark predicts. `class_fidelity`: the export check's per-class measurement, carried into the
    row. A benchmark that fails is a failed row, not an exception.
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
        class_fidelity=class_fidelity or {},
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


# ---------------------------------------------------------------------------------------------------------
# the in-process runner


def export_point(
    config: SweepConfig, spec: BackboneSpec, keys: dict[str, str], state: dict, dataset, log=None, load=None
) -> dict:
    """Unit 2 for each format whose export key changed (or whose artifact is gone); returns the point's state.
    Picklable arguments only: the sweep runs it in its export worker (`edgetl.sweep.local`) too."""
    from edgetl.export import climb, export_format, load_run_inputs

    log = log or (lambda msg: tqdm.write(msg))
    todo = export_todo(config, spec, keys, state)
    if todo:
        inputs = load_run_inputs(point_dir(config, spec), dataset, load)
        for fmt in todo:
            export_format(inputs, fmt, config.export, log)
            record_export(config, spec, fmt, keys[fmt], state)
        for rung in climb(inputs, config.export, log):  # int8 files that failed: the ladder's artifacts
            record_export(config, spec, rung.format, keys[rung.format], state)
    return state


def train_todo(
    config: SweepConfig, spec: BackboneSpec, dataset: Dataset, stage: tqdm, log, load=None
) -> tuple[dict, dict[str, str], dict]:
    """Unit 1 unless an earlier run finished it: (run.json, each format's export key, the point's state)."""
    state = read_state(config, spec)
    weights = resolve_weights(spec, config.features.weights, config.features.weights_dir)
    trained = train_key(config, spec, weights)
    run = finished_train(config, spec, state, trained)
    if run is None:
        stage.set_description_str(f"{point_name(config, spec)}: training")
        run = train_point(config, spec, dataset, weights, log, load)
        state = record_train(config, spec, trained)
    return run, export_keys(config, trained), state


def bench_point(
    config: SweepConfig,
    spec: BackboneSpec,
    dataset: Dataset,
    run: dict,
    keys: dict[str, str],
    state: dict,
    stage: tqdm,
    load=None,
) -> list[ArtifactResult]:
    """Unit 3 for each exported format not measured with its current key; every format's row."""
    from edgetl.export import check_predictions, ladder, read_export_summary

    out = point_dir(config, spec)
    exported = read_export_summary(out)
    rows, test_set = [], None
    # the ladder's rungs converted by this export (their key recorded), after the formats asked for
    climbed = [
        f for f in ladder.rungs(exported) if f not in config.export.formats and state["export"].get(f) == keys[f]
    ]
    for fmt in [*config.export.formats, *climbed]:
        entry, key = exported.get(fmt, {}), bench_key(config, keys[fmt])
        row = settled_row(config, spec, fmt, entry, key, state)
        if row is None:
            stage.set_description_str(f"{point_name(config, spec)}: benchmarking {fmt}")
            fault_point(f"bench:{fmt}")
            test_set = test_set or prepare_test_images(dataset, spec.resolution, out / TEST_IMAGES, load)
            row, ran_on = bench_artifact(
                config,
                spec,
                fmt,
                out / entry["path"],
                test_set,
                run,
                entry.get("status", "ok"),
                check_predictions(out, entry, _kept(test_set)),
                entry.get("class_fidelity"),
            )
            record_bench(config, spec, fmt, key, row, ran_on, state)
        rows.append(row)
    return rows


def _kept(test_set: tuple) -> list[str]:
    """The paths of the test images a benchmark runs on, in order (`prepare_test_images`' .npz)."""
    with np.load(test_set[0]) as data:
        return data["paths"].tolist()


def _scan(config: SweepConfig, say) -> Dataset:
    dataset = scan_dataset(config.image_dir, config.split)  # once for the whole sweep; fails fast
    for note in dataset.warnings:
        say(f"warning: {note}")
    for path, why in dataset.skipped:
        say(f"warning: skipping {path}: {why}")
    return dataset


def start_sweep(config: SweepConfig, log=None):
    """What every runner does first: the output directory, sweep.json, the scan (once), the space check.
    Returns the dataset and the function that prints a message."""
    out = Path(config.output_dir)
    with writing(out, "the sweep's output directory"):
        out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", {"edgetl_version": __version__, "settings": asdict(config)})
    say = log or (lambda msg: tqdm.write(msg))
    dataset = _scan(config, say)
    check_space(config, dataset, say)
    return dataset, say


def point_failed(name: str, e: Exception, notes: list[str], say) -> None:
    """Note why grid point `name` produced nothing: missing weights skip it, any other error fails it alone."""
    if isinstance(e, WeightsNotFoundError):
        first_line = str(e).splitlines()[0]
        notes.append(f"{name} skipped: {first_line}")
        say(f"skipping {name}: {first_line}")
    else:
        first_line = (str(e).splitlines() or [""])[0]
        notes.append(f"{name} failed: {type(e).__name__}: {first_line}")
        say(f"grid point {name} failed: {type(e).__name__}: {first_line}")


def finish_sweep(config: SweepConfig, results: list[ArtifactResult], notes: list[str]) -> SweepResult:
    """What every runner does last: results.json/csv, the pick, report.md and best/."""
    out = Path(config.output_dir)
    if not results:
        raise ValueError("no grid point produced an artifact:\n  " + "\n  ".join(notes))
    write_results(results, out, notes)
    fault_point("report")
    chosen = pick(results, config.budget, config.pick)
    report = write_report(results, chosen, config.budget, out, notes=notes)
    if chosen.chosen is not None:
        copy_best(chosen.chosen, config, out)
    return SweepResult(results, chosen.chosen, report, notes)


def _release_models() -> None:
    """Drop what the last point left in Keras' global state, so a sweep's memory does not grow with its grid."""
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


def fine_tune_pass(config: SweepConfig, results: list[ArtifactResult]) -> SweepConfig | None:
    """The config that fine-tunes the `fine_tune_front` most accurate points of the head-only front
    (None when there is nothing to fine-tune)."""
    if not config.fine_tune_front or not results:
        return None
    front = sorted(pareto_front(results), key=lambda r: (-r.accuracy, r.latency_ms_p50))
    chosen = list(dict.fromkeys((r.backbone, r.alpha, r.resolution) for r in front))[: config.fine_tune_front]
    if not chosen:
        return None
    points = tuple(BackboneSpec(version, alpha, resolution) for version, alpha, resolution in chosen)
    return replace(config, points=points, fine_tune=config.fine_tune_settings, fine_tune_front=0)


def sweep(config: SweepConfig, notes: list[str] | None = None, log=None) -> SweepResult:
    """The in-process runner: the grid points one after the other (`edgetl.sweep.ray_driver` for Ray), then
    the fine-tuning pass over the front when asked for."""
    from edgetl.sweep.local import run_grid

    notes = list(notes or [])
    started = time.perf_counter()
    dataset, say = start_sweep(config, log)
    # Where this run's time went besides each unit's own record (run.json, export.json, bench/*.json).
    timings = {"start_s": round(time.perf_counter() - started, 2), "point_wall_s": {}}
    # Each photo decoded once for the whole grid, on the first unit that needs pixels (a warm re-run never does).
    pixels = LazyPixels(Path(config.output_dir) / PIXELS_DIR, dataset.records, {p.resolution for p in config.points})
    results = run_grid(config, dataset, notes, say, load=pixels, walls=timings["point_wall_s"])
    fine = fine_tune_pass(config, results)
    if fine is not None:
        say(f"fine-tuning {len(fine.points)} point(s) of the front: " + ", ".join(p.id for p in fine.points))
        results = run_grid(fine, dataset, notes, say, results, load=pixels, walls=timings["point_wall_s"])
    finishing = time.perf_counter()
    finished = finish_sweep(config, results, notes)
    pixels.remove()  # kept until here, so a killed sweep resumes without decoding again
    atomic_write_json(
        Path(config.output_dir) / "timings.json",
        {
            "wall_s": round(time.perf_counter() - started, 2),
            **timings,
            "finish_s": round(time.perf_counter() - finishing, 2),
            "decode_once_s": round(pixels.store.seconds, 2) if pixels.store else 0.0,
            "decoded_resolutions": list(pixels.store.resolutions) if pixels.store else [],
        },
    )
    return finished


def copy_best(best: ArtifactResult, config: SweepConfig, out: Path) -> Path:
    """OUTPUT_DIR/best/: the chosen artifact, its labels and a model card."""
    best_dir = out / "best"
    tmp = out / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    artifact = out / best.path
    shutil.copy2(artifact, tmp / artifact.name)
    point = out / "points" / best.point
    shutil.copy2(point / "labels.txt", tmp / "labels.txt")
    run = json.loads((point / "run.json").read_text())
    dtype = read_json(point / "bench" / f"{best.format}.json").get("input_dtype", "float32")
    write_model_card(
        best,
        {
            "input_type": f"raw RGB pixels 0..255 as {dtype}, shape [1, {best.resolution}, {best.resolution}, 3] "
            "(the [-1, 1] scaling is inside the model)",
            "dataset": str(Path(config.image_dir).resolve()),
            "class_names": run["classes"],
            "split (train/validation/test images)": "/".join(
                str(run["metrics"][k]) for k in ("num_train", "num_validation", "num_test")
            ),
            "backbone weights": run["backbone"]["weights"],
            "training": (
                "softmax head on frozen bottleneck features; "
                + json.dumps(run["training"])
                + (
                    f"; then the backbone's last {run['fine_tune']['layers']} layers fine-tuned for "
                    f"{run['fine_tune']['best_epoch']} epoch(s)"
                    if run.get("fine_tune")
                    else ""
                )
            ),
            "measured with": f"{config.bench.num_threads} thread(s), batch 1, on the test split",
            "budget": config.budget.describe() if config.budget.is_set else "none (knee of the Pareto front)",
        },
        tmp / "model_card.md",
    )
    shutil.rmtree(best_dir, ignore_errors=True)
    tmp.rename(best_dir)
    return best_dir
