"""`edgetl sweep`: train every grid point, export every format, measure every artifact, pick one.

What every executor does first (`start_sweep`: the output directory, the scan, the space check) and last
(`finish_sweep`: results, the pick, report.md, best/), and `sweep`, the in-process run. The work itself is
planned in `edgetl.sweep.plan` and done by the units of `edgetl.sweep.units`; `edgetl.sweep.local` and
`edgetl.sweep.ray_driver` are the two executors.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from edgetl import __version__
from edgetl.data.dataset import Dataset, scan_dataset
from edgetl.data.pixels import PIXELS_DIR, LazyPixels
from edgetl.io.faults import fault_point
from edgetl.io.files import atomic_write_json, writing
from edgetl.io.log import RunLog, print_line
from edgetl.measure.results import ArtifactResult, write_results
from edgetl.pick.pareto import RUNTIME_NAMES, pick_all, runtime_of
from edgetl.pick.report import write_model_card, write_report
from edgetl.sweep.config import SweepConfig, SweepResult
from edgetl.sweep.local import run_grid
from edgetl.sweep.plan import fine_tune_pass
from edgetl.sweep.space import check_space
from edgetl.sweep.state import read_json


def _scan(config: SweepConfig, say) -> Dataset:
    dataset = scan_dataset(config.image_dir, config.split)  # once for the whole sweep; fails fast
    for line in dataset.messages():
        say(line)
    return dataset


SWEEP_LOG = "sweep.log"  # in the output dir: every line the sweep said, with the time


def start_sweep(config: SweepConfig, log=None):
    """What every runner does first: the output directory, sweep.json, the scan (once), the space check.
    Returns the dataset and the function that says a message: printed (`log`, default stdout) and appended to
    OUT/sweep.log."""
    out = Path(config.output_dir)
    with writing(out, "the sweep's output directory"):
        out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", {"edgetl_version": __version__, "settings": asdict(config)})
    say = RunLog(out / SWEEP_LOG, log or print_line)
    RunLog(out / SWEEP_LOG, None)(f"edgetl {__version__} sweep of {config.image_dir} into {out}")
    dataset = _scan(config, say)
    check_space(config, dataset, say)
    return dataset, say


def finish_sweep(config: SweepConfig, results: list[ArtifactResult], notes: list[str]) -> SweepResult:
    """What every runner does last: results.json/csv, the pick, report.md and best/."""
    out = Path(config.output_dir)
    if not results:
        raise ValueError("no grid point produced an artifact:\n  " + "\n  ".join(notes))
    write_results(results, out, notes)
    fault_point("report")
    chosen, by_runtime = pick_all(results, config.budget, config.pick)
    runtime_picks = {rt: p.chosen for rt, p in by_runtime.items() if p.chosen is not None}
    report = write_report(
        results,
        chosen,
        config.budget,
        out,
        notes=notes,
        by_runtime=by_runtime,
        best_dir="best" if runtime_picks else None,
    )
    if chosen.chosen is not None or runtime_picks:
        copy_best(chosen.chosen, config, out, runtime_picks)
    return SweepResult(results, chosen.chosen, report, notes)


def sweep(config: SweepConfig, notes: list[str] | None = None, log=None) -> SweepResult:
    """The in-process executor: the grid points one after the other (`edgetl.sweep.ray_driver.sweep_on_ray`
    for Ray), then the fine-tuning pass over the front when asked for."""
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
    picked = f"{finished.pick.point} {finished.pick.format}" if finished.pick else "none"
    RunLog(say.path, None)(f"report: {finished.report}; pick: {picked}")
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


def copy_best(
    best: ArtifactResult | None, config: SweepConfig, out: Path, by_runtime: dict[str, ArtifactResult] | None = None
) -> Path:
    """OUTPUT_DIR/best/: the chosen artifact, its labels and a model card; best/<runtime>/ the same for each
    runtime's pick in `by_runtime` (edgetl.pick.pareto.pick_all). Built aside and swapped in whole."""
    best_dir = out / "best"
    tmp = out / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if best is not None:
        _copy_pick(best, config, out, tmp)
    for runtime, chosen in (by_runtime or {}).items():
        (tmp / runtime).mkdir()
        _copy_pick(chosen, config, out, tmp / runtime)
    shutil.rmtree(best_dir, ignore_errors=True)
    tmp.rename(best_dir)
    return best_dir


def _copy_pick(best: ArtifactResult, config: SweepConfig, out: Path, tmp: Path) -> None:
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
            "runtime": RUNTIME_NAMES.get(runtime_of(best), runtime_of(best)),
        },
        tmp / "model_card.md",
    )
