"""The in-process sweep's runner (`run_grid`): one grid point exported in a worker process while the next trains.

On 2 cores, a point's export keeps about 1.3 of them busy (the TFLite calibrator and tf2onnx run on one
thread), and training the next point needs the pixels and the backbone, not that export. So the in-process
sweep hands each point's export to one worker process (spawned on first use, TensorFlow imported there
once) and trains the next point meanwhile. A point's benchmarks wait until both are done, so nothing else
runs while a latency is timed; the last point has nothing to overlap with and exports in the sweep itself.
Threads would not do: the calibrator holds Python's GIL, and a busy second thread slowed it many times over.

- The worker is a child of the sweep and dies with it (Linux's parent-death signal); a simulated power
  cut in the worker (`edgetl.io.files.checkpoint`) takes the sweep down with it, as a real one would.
- A worker that dies on its own (the OOM killer) ends the sweep with `WorkerLost`: the finished units
  are on disk, and the same command resumes.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from tqdm import tqdm

from edgetl.data.dataset import Dataset
from edgetl.data.pixels import LazyPixels
from edgetl.export import check_predictions
from edgetl.features.backbones import BackboneSpec
from edgetl.io.faults import fault_point
from edgetl.io.log import heartbeat, worker_log
from edgetl.io.memory import trim_malloc
from edgetl.io.quiet import bars_off
from edgetl.measure.bench import prepare_test_images
from edgetl.measure.results import ArtifactResult, write_results
from edgetl.sweep.config import TEST_IMAGES, SweepConfig, point_dir, point_name
from edgetl.sweep.plan import PointPlan, SweepStopped, attempt, plan_point
from edgetl.sweep.state import record_bench
from edgetl.sweep.units import (
    bench_artifact,
    export_point,
    kept_paths,
    measured_line,
    release_models,
    train_point,
    trained_line,
)

#: Set in the worker: the sweep's process id, for `edgetl.io.files.checkpoint`'s simulated power cut.
SWEEP_PID_ENV = "EDGETL_SWEEP_PID"
PR_SET_PDEATHSIG = 1  # prctl(2)


class WorkerLost(SweepStopped):
    """The export worker died (killed by the system) while it exported a grid point."""


def _init_worker(sweep_pid: int) -> None:
    os.environ[SWEEP_PID_ENV] = str(sweep_pid)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: an orphaned worker ends when it next reads its queue
        pass
    if os.getppid() != sweep_pid:  # the sweep died before the signal was armed
        os._exit(1)


class ExportWorker:
    """One worker process for `submit(fn, *args)`, started on first use; a context manager that stops it."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, fn, *args) -> Future:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),)
            )
        return self._pool.submit(fn, *args)

    def __enter__(self) -> ExportWorker:
        return self

    def __exit__(self, kind, *_) -> None:
        if self._pool is not None:  # after an error, do not wait for the export in flight
            self._pool.shutdown(wait=kind is None, cancel_futures=True)


def worker_result(future: Future, what: str):
    """The result of `future`, re-raising the worker's exception; WorkerLost when the worker died."""
    try:
        return future.result()
    except BrokenProcessPool as e:
        raise WorkerLost(
            f"the export worker died while exporting {what} (killed by the system; out of memory?). "
            "Finished units are saved: re-run the same command to resume"
        ) from e


class _Grid:
    """What `run_grid` shares across its points: the inputs, the progress bars and the rows so far."""

    def __init__(self, config: SweepConfig, dataset: Dataset, notes: list[str], say, load, results, walls, bars):
        self.config, self.dataset, self.notes, self.say, self.load = config, dataset, notes, say, load
        self.results, self.walls, (self.overall, self.stage) = results, walls, bars

    def attempt(self, what: str, work):
        return attempt(what, work, self.notes, self.say)

    def train(self, spec: BackboneSpec, train_config: SweepConfig) -> PointPlan:
        """The point's plan, its train unit run first unless an earlier run finished it. `train_config` is the
        sweep's config, or `beside_export`'s while the previous point exports (the same keys)."""
        plan = plan_point(self.config, spec)
        if plan.run is None:
            self.stage.set_description_str(f"{plan.name}: training")
            with heartbeat(self.say, f"training {plan.name}"):
                plan.run = train_point(train_config, spec, self.dataset, plan.weights, self.say, self.load)
            # the training's features and batches are garbage now; handed back before the export and the next
            # point allocate theirs, or the process's resident size keeps the largest point's peak
            gc.collect()
            trim_malloc()
            plan.trained()
            self.say(trained_line(plan.name, plan.run))
        return plan

    def bench(self, plan: PointPlan) -> list[ArtifactResult]:
        """Unit 3 for each format whose bench unit must run; every format's row."""
        out, rows, test_set = point_dir(self.config, plan.spec), [], None
        for fmt in plan.bench_formats():
            row, entry, key = plan.bench(fmt)
            if row is None:
                self.stage.set_description_str(f"{plan.name}: benchmarking {fmt}")
                fault_point(f"bench:{fmt}")
                test_set = test_set or prepare_test_images(
                    self.dataset, plan.spec.resolution, out / TEST_IMAGES, self.load
                )
                predictions = check_predictions(out, entry, kept_paths(test_set))
                row, ran_on = bench_artifact(
                    self.config, plan.spec, fmt, out / entry["path"], test_set, plan.run, entry.get("status", "ok"),
                    predictions, entry,
                )  # fmt: skip
                record_bench(self.config, plan.spec, fmt, key, row, ran_on, plan.state)
                self.say(measured_line(row))
            rows.append(row)
        return rows

    def settle(self, spec: BackboneSpec, plan: PointPlan | None, exported, spent: float) -> None:
        """Benchmark a point once its export is done (`exported`: its state, the worker's future of it, or None
        when the point failed), write the rows so far, and record the time this process spent on the point."""
        clock, name = time.perf_counter(), point_name(self.config, spec)

        def bench():
            if isinstance(exported, dict):
                plan.state = exported
            else:
                with heartbeat(self.say, f"exporting {name}"):
                    plan.state = worker_result(exported, name)
            return self.bench(plan)

        rows = (self.attempt(f"{name} bench", bench) if exported is not None else None) or []
        self.results.extend(rows)
        release_models()
        if self.results:
            write_results(self.results, self.config.output_dir, self.notes)  # after every point: a kill keeps those
        if self.walls is not None:
            self.walls[name] = round(spent + time.perf_counter() - clock, 2)
        self.overall.update(1)


def largest_first(points: tuple[BackboneSpec, ...]) -> list[BackboneSpec]:
    """The order the in-process runner takes the points in: the largest input and width first, so the last
    point, whose export has no training beside it, is the cheapest to export (tools/bench_sweep.py prints each
    point's export time). Ties keep the grid's order."""
    return sorted(points, key=lambda p: -(p.resolution**2) * p.alpha)


def beside_export(config: SweepConfig) -> SweepConfig:
    """The config a point trains with while the previous point exports: LiteRT's features on every core but one.

    XNNPACK splits each layer evenly over its threads, so while the worker keeps a core busy, one of two
    feature threads keeps stalling the other (tools/bench_sweep.py: one thread ran faster than two beside
    a busy one), and one thread also leaves the worker its core. The worker's export, not this
    training, is what the next point waits for. Thread counts the user set are kept."""
    if config.features.num_threads is not None:
        return config
    return replace(config, features=replace(config.features, num_threads=max(1, (os.cpu_count() or 1) - 1)))


def _export_in_worker(plan: PointPlan, dataset, load, log) -> dict:
    try:
        return export_point(plan, dataset, log, load)
    finally:
        release_models()  # the worker outlives the point


def run_grid(
    config: SweepConfig,
    dataset: Dataset,
    notes: list[str],
    say,
    results: list[ArtifactResult] | None = None,
    load=None,
    walls: dict[str, float] | None = None,
) -> list[ArtifactResult]:
    """Every point of `config` in turn, each point's export running in the export worker while the next
    point trains; rows added to `results`, written after each point. `walls` gets the time this process
    spent on each point (its training, then waiting for its export and benchmarking it)."""
    with (
        tqdm(
            total=len(config.points),
            desc="fine-tuning" if config.fine_tune else "grid",
            unit="point",
            position=0,
            disable=bars_off(),
        ) as overall,
        tqdm(bar_format="{desc}", position=1, leave=False, disable=bars_off()) as stage,
        ExportWorker() as worker,
    ):
        grid = _Grid(config, dataset, notes, say, load, list(results or []), walls, (overall, stage))
        exporting = None  # (spec, plan, the worker's future, seconds): the point exported beside this one
        points = largest_first(config.points)
        for i, spec in enumerate(points):
            clock, name = time.perf_counter(), point_name(config, spec)
            overall.set_postfix_str(name)
            train_config = beside_export(config) if exporting is not None else config
            plan = grid.attempt(name, lambda: grid.train(spec, train_config))
            spent = time.perf_counter() - clock
            if exporting is not None:
                grid.settle(*exporting)
                exporting = None
            if plan is None:
                grid.settle(spec, None, None, spent)
                continue
            if i + 1 < len(points) and plan.exports():
                if isinstance(load, LazyPixels):
                    load.build()  # here, once: never in the worker while this process builds it too
                exporting = (spec, plan, worker.submit(_export_in_worker, plan, dataset, load, worker_log(say)), spent)
                continue
            clock = time.perf_counter()
            stage.set_description_str(f"{name}: exporting")
            with heartbeat(say, f"exporting {name}"):
                exported = grid.attempt(f"{name} export", lambda: export_point(plan, dataset, say, load))
            grid.settle(spec, plan, exported, spent + time.perf_counter() - clock)
        if exporting is not None:
            grid.settle(*exporting)
    return grid.results
