"""A sweep's settings (`SweepConfig`), the names of its points, and the keys of its units.

Each unit's output carries a key of the settings that produced it (train -> export -> bench, each key
folding in the one before), so a re-run redoes exactly the units whose settings changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from edgetl import __version__
from edgetl.data.dataset import SplitConfig
from edgetl.export import FORMATS, LADDER, RECIPE_VERSION, ExportConfig
from edgetl.features.backbones import BackboneSpec, ResolvedWeights
from edgetl.features.bottlenecks import FeatureConfig
from edgetl.measure.bench import BenchConfig
from edgetl.measure.results import ArtifactResult, results_frame
from edgetl.params import Interval, OneOf, validate
from edgetl.pick.pareto import Budget, PickConfig
from edgetl.train.finetune import FineTuneConfig
from edgetl.train.head import HeadConfig
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
    summaries_dir: Path | None = None  # TensorBoard curves of each point trained, in summaries_dir/<point>/

    CONSTRAINTS: ClassVar[dict] = {"fine_tune_front": Interval(int, 0), "force": OneOf((True, False))}

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(dict.fromkeys(self.points)))
        if not self.points:
            raise ValueError("the grid has no points; give --backbones, --alphas and --resolutions (or --grid)")
        validate(self)
        runtimes = {FORMATS[f].runtime for f in self.export.formats}
        if self.pick.runtime != "any" and self.pick.runtime not in runtimes:
            raise ValueError(
                f"--runtime {self.pick.runtime}: the sweep exports no {self.pick.runtime} format "
                f"({', '.join(self.export.formats)}); add one to --formats, or pass --runtime any"
            )
        if self.export.calibration_manifest is not None:
            raise ValueError(
                "a sweep draws calibration images per point; a calibration manifest is for `edgetl export`"
            )


@dataclass
class SweepResult:
    """What a sweep returns: every artifact's row, the pick (None when nothing fits the budget), report.md
    and the notes (skipped or failed grid points)."""

    results: list[ArtifactResult]
    pick: ArtifactResult | None
    report: Path
    notes: list[str]

    def to_pandas(self):
        """The results as a pandas DataFrame, one row per artifact (needs pandas, not an edgetl dependency)."""
        return results_frame(self.results)


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
        _fine_tune_key(config.fine_tune),
        # Only when set, so the keys of every earlier sweep stay what they were.
        *([asdict(config.features.distortions)] if config.features.distortions else []),
    )


def _fine_tune_key(config: FineTuneConfig | None) -> dict | None:
    """Its fields; `views` only when > 0, so a point fine-tuned the pixel way keeps the key it had before
    views existed."""
    fields = asdict(config) if config else None
    if fields and not fields["views"]:
        del fields["views"]
    return fields


def export_key(config: SweepConfig, train_key: str, fmt: str) -> str:
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
        # Only when set, so the keys of every earlier sweep stay what they were.
        *([e.calibration_repeats] if e.calibration_repeats != 1 else []),
        *(["dynamic_batch"] if e.dynamic_batch else []),
    )


def export_keys(config: SweepConfig, trained: str) -> dict[str, str]:
    """Each format's export key for the point whose train key is `trained`; the quantization ladder's rungs that
    were not requested get a key folding in every requested format's (the export that may convert them)."""
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


TEST_IMAGES = "test_images.npz"  # in each point directory: the decoded test split the benchmarks read


def point_name(config: SweepConfig, spec: BackboneSpec) -> str:
    """The point's name in rows and under points/: the backbone's id, "-ft" when fine-tuned."""
    return spec.id + ("-ft" if config.fine_tune else "")


def point_dir(config: SweepConfig, spec: BackboneSpec) -> Path:
    return Path(config.output_dir) / "points" / point_name(config, spec)
