"""`edgetl sweep`: train every grid point, export every format, measure every artifact, pick one.

Resumable by construction: each stage's output carries a key of the settings that produced it
(train -> export -> bench, each key folding in the one before), written atomically when the stage
finishes. A re-run redoes only the stages whose key changed; an interrupted run loses at most the
artifact that was in flight.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .backbones import ALPHAS, BackboneSpec, WeightsNotFoundError, resolve_weights
from .bench import MIN_TIMED_RUNS, MIN_TIMED_SECONDS, ArtifactResult, measure, prepare_test_images
from .data import scan_dataset
from .head import HeadConfig
from .pareto import Budget, pick
from .report import write_model_card, write_report, write_results
from .files import atomic_write_json
from .train import TrainConfig, train

DEFAULT_FORMATS = ("tflite-float32", "tflite-int8", "onnx-float32", "onnx-int8")


@dataclass
class SweepConfig:
    image_dir: Path
    output_dir: Path
    points: list[BackboneSpec]
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    weights: str = "imagenet"
    weights_dir: Path | None = None
    bottleneck_dir: Path | None = None
    validation_percentage: float = 10.0
    testing_percentage: float = 10.0
    head: HeadConfig = field(default_factory=HeadConfig)
    budget: Budget = field(default_factory=Budget)
    num_threads: int = 1
    io_type: str = "uint8"
    calibration_images: int = 200
    min_timed_runs: int = MIN_TIMED_RUNS
    min_timed_seconds: float = MIN_TIMED_SECONDS
    force: bool = False


@dataclass
class SweepResult:
    results: list[ArtifactResult]
    chosen: ArtifactResult | None
    report: Path
    notes: list[str]


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def grid(backbones: list[str], alphas: list[float], resolutions: list[int]) -> tuple[list[BackboneSpec], list[str]]:
    """Every valid (backbone, alpha, resolution); combinations a family lacks are returned as notes."""
    points, notes = [], []
    for version, alpha, resolution in product(backbones, alphas, resolutions):
        if version not in ALPHAS:
            raise ValueError(f"unknown backbone {version!r}; expected one of {sorted(ALPHAS)}")
        if float(alpha) not in ALPHAS[version]:
            note = f"MobileNet {version} has no alpha {alpha:g} (it has {', '.join(f'{a:g}' for a in ALPHAS[version])})"
            if note not in notes:
                notes.append(note)
            continue
        points.append(BackboneSpec(version, float(alpha), int(resolution)))
    return points, notes


def read_grid_file(path: Path) -> tuple[list[BackboneSpec], list[str]]:
    """A YAML or TOML grid: `points: [{backbone, alpha, resolution}, ...]` and/or the three lists."""
    text = Path(path).read_text()
    if Path(path).suffix.lower() == ".toml":
        import tomllib

        spec = tomllib.loads(text)
    else:
        import yaml

        spec = yaml.safe_load(text) or {}
    points, notes = [], []
    if any(k in spec for k in ("backbones", "alphas", "resolutions")):
        missing = [k for k in ("backbones", "alphas", "resolutions") if k not in spec]
        if missing:
            raise ValueError(f"{path}: a grid needs backbones, alphas and resolutions; missing {', '.join(missing)}")
        points, notes = grid(spec["backbones"], spec["alphas"], spec["resolutions"])
    for p in spec.get("points", []):
        try:
            points.append(BackboneSpec(p["backbone"], float(p["alpha"]), int(p["resolution"])))
        except (KeyError, ValueError) as e:
            notes.append(f"{path}: skipping point {p}: {e}")
    if not points:
        raise ValueError(f"{path}: the grid has no valid points")
    return list(dict.fromkeys(points)), notes


def _train_key(config: SweepConfig, spec: BackboneSpec, weights_sha: str) -> str:
    return _key(
        __version__, str(Path(config.image_dir).resolve()), config.validation_percentage,
        config.testing_percentage, asdict(spec), config.weights, weights_sha, asdict(config.head),
    )


def _point_row(spec: BackboneSpec, fmt: str, path: str, run: dict) -> dict:
    return {"point": spec.id, "backbone": spec.version, "alpha": spec.alpha, "resolution": spec.resolution,
            "format": fmt, "path": path, "macs": run["backbone"]["macs"] + run["head"]["macs"],
            "params": run["backbone"]["params"] + run["head"]["params"]}


def failed_result(spec: BackboneSpec, fmt: str, status: str, config: SweepConfig) -> ArtifactResult:
    nan = float("nan")
    return ArtifactResult(
        point=spec.id, backbone=spec.version, alpha=spec.alpha, resolution=spec.resolution, format=fmt, path="",
        size_bytes=0, accuracy=nan, top5_accuracy=None, latency_ms_p50=nan, latency_ms_p90=nan,
        latency_ms_p99=nan, latency_ms_mean=nan, num_threads=config.num_threads, peak_rss_mb=nan, macs=0,
        params=0, num_test_images=0, status=status,
    )


def run_point(config: SweepConfig, spec: BackboneSpec, stage: tqdm, log) -> list[ArtifactResult]:
    """Train, export and benchmark one grid point, reusing whatever an earlier run finished."""
    from .export import RECIPE_VERSION, export_run

    point_dir = Path(config.output_dir) / "points" / spec.id
    state_path = point_dir / "sweep_state.json"
    state = {} if config.force else _read_json(state_path)
    weights = resolve_weights(spec, config.weights, config.weights_dir)
    train_key = _train_key(config, spec, weights.sha256)

    if state.get("train") != train_key or not (point_dir / "run.json").is_file():
        stage.set_description_str(f"{spec.id}: training")
        train(TrainConfig(
            image_dir=config.image_dir, output_dir=point_dir, backbone=spec, weights=config.weights,
            weights_dir=config.weights_dir, bottleneck_dir=config.bottleneck_dir,
            validation_percentage=config.validation_percentage, testing_percentage=config.testing_percentage,
            head=config.head,
        ), log=lambda msg: None if msg.startswith("step ") else log(msg))  # per-step lines: train's job
        state = {"train": train_key, "export": {}, "bench": {}}
        atomic_write_json(state_path, state)
    run = json.loads((point_dir / "run.json").read_text())

    export_keys = {f: _key(train_key, f, config.io_type, config.calibration_images, RECIPE_VERSION)
                   for f in config.formats}
    exported = _read_json(point_dir / "artifacts" / "export.json").get("formats", {})
    todo = [f for f in config.formats
            if state["export"].get(f) != export_keys[f] or f not in exported
            or not (point_dir / exported[f].get("path", "-")).is_file()]
    if todo:
        stage.set_description_str(f"{spec.id}: exporting {', '.join(todo)}")
        for r in export_run(point_dir, todo, io_type=config.io_type, calibration_images=config.calibration_images,
                            num_threads=config.num_threads, log=log, progress=False):
            state["export"][r.format] = export_keys[r.format]
            state["bench"].pop(r.format, None)
        atomic_write_json(state_path, state)
        exported = _read_json(point_dir / "artifacts" / "export.json").get("formats", {})

    results = []
    dataset = None
    for fmt in config.formats:
        entry = exported.get(fmt, {})
        bench_key = _key(export_keys[fmt], config.num_threads, config.min_timed_runs, config.min_timed_seconds)
        bench_path = point_dir / "bench" / f"{fmt}.json"
        saved = _read_json(bench_path)
        if saved.get("key") == bench_key and state["bench"].get(fmt) == bench_key:
            results.append(ArtifactResult(**saved["result"]))
            continue
        artifact = point_dir / entry.get("path", "-")
        if not artifact.is_file():
            results.append(failed_result(spec, fmt, entry.get("status", "export failed: no artifact"), config))
            continue
        stage.set_description_str(f"{spec.id}: benchmarking {fmt}")
        if dataset is None:
            dataset = scan_dataset(config.image_dir, config.validation_percentage, config.testing_percentage)
            images_path, labels = prepare_test_images(dataset, spec.resolution, point_dir / "test_images.npz")
        try:
            m = measure(artifact, images_path, config.num_threads, config.min_timed_runs, config.min_timed_seconds)
        except Exception as e:  # one artifact that won't run is a row, not a dead sweep
            results.append(failed_result(spec, fmt, f"benchmark failed: {e}", config))
            continue
        row = ArtifactResult(
            **_point_row(spec, fmt, str(artifact.relative_to(config.output_dir)), run),
            num_threads=config.num_threads, status=entry.get("status", "ok"),
            **m.result_fields(labels, run["classes"]),
        )
        atomic_write_json(bench_path, {"key": bench_key, "backend": m.backend, "input_dtype": m.input_dtype,
                                       "result": row.to_dict()})
        state["bench"][fmt] = bench_key
        atomic_write_json(state_path, state)
        results.append(row)
    return results


def sweep(config: SweepConfig, notes: list[str] | None = None, log=None) -> SweepResult:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = list(notes or [])
    atomic_write_json(out / "sweep.json", {"edgetl_version": __version__, "settings": asdict(config)})
    scan_dataset(config.image_dir, config.validation_percentage, config.testing_percentage)  # fail fast
    results: list[ArtifactResult] = []
    with tqdm(total=len(config.points), desc="grid", unit="point", position=0) as overall, \
            tqdm(bar_format="{desc}", position=1, leave=False) as stage:
        say = log or (lambda msg: tqdm.write(msg))
        for spec in config.points:
            overall.set_postfix_str(spec.id)
            try:
                rows = run_point(config, spec, stage, say)
            except WeightsNotFoundError as e:
                first_line = str(e).splitlines()[0]
                notes.append(f"{spec.id} skipped: {first_line}")
                say(f"skipping {spec.id}: {first_line}")
                rows = []
            except Exception as e:  # one broken grid point must not cost the others (finished work is saved)
                first_line = (str(e).splitlines() or [""])[0]
                notes.append(f"{spec.id} failed: {type(e).__name__}: {first_line}")
                say(f"grid point {spec.id} failed: {type(e).__name__}: {first_line}")
                rows = []
            results.extend(rows)
            if results:
                write_results(results, out)  # after every point, so a kill keeps what is finished
            overall.update(1)
    if not results:
        raise ValueError("no grid point produced an artifact:\n  " + "\n  ".join(notes))
    chosen = pick(results, config.budget)
    report = write_report(results, chosen, config.budget, out, notes=notes)
    if chosen.chosen is not None:
        copy_best(chosen.chosen, config, out)
    return SweepResult(results, chosen.chosen, report, notes)


def copy_best(best: ArtifactResult, config: SweepConfig, out: Path) -> Path:
    """OUTPUT_DIR/best/: the chosen artifact, its labels and a model card."""
    best_dir = out / "best"
    tmp = out / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    artifact = out / best.path
    shutil.copy2(artifact, tmp / artifact.name)
    point_dir = out / "points" / best.point
    shutil.copy2(point_dir / "labels.txt", tmp / "labels.txt")
    run = json.loads((point_dir / "run.json").read_text())
    dtype = _read_json(point_dir / "bench" / f"{best.format}.json").get("input_dtype", "float32")
    write_model_card(best, {
        "input_type": f"raw RGB pixels 0..255 as {dtype}, shape [1, {best.resolution}, {best.resolution}, 3] "
                      "(the [-1, 1] scaling is inside the model)",
        "dataset": str(Path(config.image_dir).resolve()),
        "classes": ", ".join(run["classes"]),
        "split (train/validation/test images)":
            f"{run['metrics']['num_train']}/{run['metrics']['num_validation']}/{run['metrics']['num_test']}",
        "backbone weights": run["backbone"]["weights"],
        "training": "softmax head on frozen bottleneck features; " + json.dumps(run["training"]),
        "measured with": f"{config.num_threads} thread(s), batch 1, on the test split",
        "budget": config.budget.describe() if config.budget.is_set else "none (knee of the Pareto front)",
    }, tmp / "model_card.md")
    shutil.rmtree(best_dir, ignore_errors=True)
    tmp.rename(best_dir)
    return best_dir
