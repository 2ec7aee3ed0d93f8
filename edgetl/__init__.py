"""edgetl: retrain MobileNet heads on a folder of photos, export to edge formats, benchmark, pick.

The Python API, the same configs the CLI builds (README, "Python API")::

    from edgetl import Budget, SweepConfig, grid, sweep

    points, notes = grid(["v1", "v2"], [0.25, 1.0], [128, 224])
    result = sweep(SweepConfig(image_dir="photos", output_dir="runs/photos", points=tuple(points),
                               budget=Budget(max_latency_ms=15)))
    result.pick, result.to_pandas()

`sweep`, `train` and `export` are the stage packages `edgetl.sweep`, `edgetl.train` and `edgetl.export`,
callable as their stage's function (`edgetl.sweep.run.sweep`, `edgetl.train.run.train`,
`edgetl.export.pipeline.export_run`), so ``from edgetl import sweep`` means the same whatever was imported
before. Every name is resolved on first use: ``import edgetl`` stays light and TensorFlow-free, because
`edgetl.runtime` and `edgetl.runtime.label_image` must run on a device with only numpy, Pillow and a
TFLite runtime.
"""

from __future__ import annotations

import importlib
import sys
import types

from edgetl.io.quiet import quiet_third_party

__version__ = "0.1.0"

# TensorFlow's start-up chatter (CUDA on CPU-only machines, oneDNN notes) and the converter's deprecation
# warnings bury the messages users need. Silenced here, before any module of the package can import
# TensorFlow, so in every process edgetl starts (export workers, Ray workers, benchmark children too).
quiet_third_party()

#: Public name -> the module that defines it (imported on first use).
_LAZY = {
    # the stages, callable
    "sweep": "edgetl.sweep",
    "train": "edgetl.train",
    "export": "edgetl.export",
    # configs, each a frozen dataclass owning its defaults
    "SweepConfig": "edgetl.sweep.config",
    "TrainConfig": "edgetl.train.run",
    "ExportConfig": "edgetl.export.config",
    "BackboneSpec": "edgetl.features.backbones",
    "SplitConfig": "edgetl.data.dataset",
    "FeatureConfig": "edgetl.features.bottlenecks",
    "HeadConfig": "edgetl.train.head",
    "TuneConfig": "edgetl.train.tuning",
    "FineTuneConfig": "edgetl.train.finetune",
    "BenchConfig": "edgetl.measure.bench",
    "Budget": "edgetl.pick.pareto",
    "PickConfig": "edgetl.pick.pareto",
    # building a grid, and what comes back
    "grid": "edgetl.sweep.grid",
    "read_grid_file": "edgetl.sweep.grid",
    "SweepResult": "edgetl.sweep.config",
    "TrainResult": "edgetl.train.run",
    "ExportResult": "edgetl.export.run",
    "ArtifactResult": "edgetl.measure.results",
    "read_results": "edgetl.measure.results",
    "results_frame": "edgetl.measure.results",
    "pick": "edgetl.pick.pareto",
    "rebuild_report": "edgetl.pick.rebuild",
    "bench_model": "edgetl.measure.bench",
    "make_bundle": "edgetl.pick.bundle",
    # the device side (TensorFlow-free)
    "load_model": "edgetl.runtime.model",
}

__all__ = ["__version__", *_LAZY]

_STAGE_FUNCTIONS = {
    "edgetl.sweep": ("edgetl.sweep.run", "sweep"),
    "edgetl.train": ("edgetl.train.run", "train"),
    "edgetl.export": ("edgetl.export.pipeline", "export_run"),
}


class _CallableStage(types.ModuleType):
    """A stage package that can be called as its stage's function (the function is imported on the call)."""

    def __call__(self, *args, **kwargs):
        module, function = _STAGE_FUNCTIONS[self.__name__]
        return getattr(importlib.import_module(module), function)(*args, **kwargs)


def callable_stage(package: str) -> None:
    """Make stage package `package` (from its own ``__init__``) callable as its function: ``edgetl.sweep(config)``."""
    sys.modules[package].__class__ = _CallableStage


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'edgetl' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if _LAZY[name] == f"edgetl.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
