"""The in-process sweep's runner (`run_grid`): the points trained back to back, their exports in worker processes.

On 2 cores, one point's export keeps about one of them busy (the TFLite calibrator, bias correction and
tf2onnx run on one thread), and training a point needs the pixels and the backbone, not any export. So the
in-process sweep trains the points one after the other and hands each finished point's export to a pool of
worker processes (`export_workers`: one per core, at most MAX_EXPORT_WORKERS, spawned on first use, TensorFlow
imported there once). Two exports run at once where one export and a short training used to leave a core
idle (tools/bench_sweep.py: about 90 s of one idle core in the README sweep). The benchmarks wait until every
export is done, so nothing else runs while a latency is timed; the largest point goes first, so the exports
that run alone at the end are the cheapest. Threads would not do: the calibrator holds Python's GIL, and a
busy second thread slowed it many times over.

- A worker is a child of the sweep and dies with it (Linux's parent-death signal); a simulated power
  cut in a worker (`edgetl.io.files.checkpoint`) takes the sweep down with it, as a real one would.
- A worker that dies on its own (the OOM killer) ends the sweep with `WorkerLost`: the finished units
  are on disk, and the same command resumes.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor, wait
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
#: Each export worker holds TensorFlow and a point's models (about a GB): more than this costs memory for
#: exports that would mostly wait for the trainings feeding them.
MAX_EXPORT_WORKERS = 2


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
    """A pool of `workers` processes for `submit(fn, *args)`, each started on first need; a context manager
    that stops them."""

    def __init__(self, workers: int) -> None:
        self.workers, self._pool = workers, None

    def submit(self, fn, *args) -> Future:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
        return self._pool.submit(fn, *args)

    def __enter__(self) -> ExportWorker:
        return self

    def __exit__(self, kind, *_) -> None:
        if self._pool is not None:  # after an error, do not wait for the exports in flight
            self._pool.shutdown(wait=kind is None, cancel_futures=True)


def export_workers() -> int:
    """How many points export at once: one per core, at most MAX_EXPORT_WORKERS."""
    return max(1, min(MAX_EXPORT_WORKERS, os.cpu_count() or 1))


def in_worker(config: SweepConfig, workers: int) -> SweepConfig:
    """The config a point exports with in one of `workers` workers: its checks on its share of the cores (a
    check is not a latency measurement, and a thread that shares its core stalls XNNPACK's others). The
    threads are in no key: the artifacts are the same."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    if config.export.num_threads <= threads:
        return config
    return replace(config, export=replace(config.export, num_threads=threads))


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
        """Benchmark a point once every export is done (`exported`: its state, the worker's future of it, or None
        when the point failed), write the rows so far, and record the time this process spent on the point (its
        training and its benchmarks; the wait for the exports is the sweep's)."""
        clock, name = time.perf_counter(), point_name(self.config, spec)

        def bench():
            plan.state = exported if isinstance(exported, dict) else worker_result(exported, name)
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
    exports, which have no training beside them, are the cheapest (tools/bench_sweep.py prints each point's
    export time). Ties keep the grid's order."""
    return sorted(points, key=lambda p: -(p.resolution**2) * p.alpha)


def beside_export(config: SweepConfig) -> SweepConfig:
    """The config a point trains with while earlier points export: LiteRT's features on every core but one.

    XNNPACK splits each layer evenly over its threads, so while a worker keeps a core busy, one of two
    feature threads keeps stalling the other (tools/bench_sweep.py: one thread ran faster than two beside
    a busy one), and one thread also leaves the workers a core. The exports, not this training, are what
    the sweep waits for. Thread counts the user set are kept."""
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
    """Every point of `config` trained in turn, each finished point's export handed to the export workers; once
    every export is done, the points benchmarked in the same order, rows added to `results` and written after
    each point. `walls` gets the time this process spent on each point (its training and its benchmarks; the
    wait for the exports is in no point's figure)."""
    with (
        tqdm(
            total=len(config.points),
            desc="fine-tuning" if config.fine_tune else "grid",
            unit="point",
            position=0,
            disable=bars_off(),
        ) as overall,
        tqdm(bar_format="{desc}", position=1, leave=False, disable=bars_off()) as stage,
        ExportWorker(export_workers()) as worker,
    ):
        grid = _Grid(config, dataset, notes, say, load, list(results or []), walls, (overall, stage))
        trained = []  # (spec, plan, its export: the worker's future, a finished state, or None; seconds)
        for spec in largest_first(config.points):
            clock, name = time.perf_counter(), point_name(config, spec)
            overall.set_postfix_str(name)
            busy = any(isinstance(t[2], Future) and not t[2].done() for t in trained)  # an export still running
            train_config = beside_export(config) if busy else config
            plan = grid.attempt(name, lambda: grid.train(spec, train_config))
            trained.append((spec, plan, _start_export(grid, worker, plan), time.perf_counter() - clock))
        exporting = [t[2] for t in trained if isinstance(t[2], Future)]
        stage.set_description_str(f"exporting {len(exporting)} point(s)")
        with heartbeat(say, "exporting"):
            wait(exporting)  # every export done before the first latency is timed
        for point in trained:
            grid.settle(*point)
    return grid.results


def _start_export(grid: _Grid, worker: ExportWorker, plan: PointPlan | None):
    """The point's export: the worker's future of it, its state when nothing is left to export, None when the
    point failed."""
    if plan is None:
        return None
    if not plan.exports() and plan.next_rung() is None:
        return grid.attempt(f"{plan.name} export", lambda: export_point(plan, grid.dataset, grid.say, grid.load))
    if isinstance(grid.load, LazyPixels):
        grid.load.build()  # here, once: never in a worker while this process builds it too
    exporting = replace(plan, config=in_worker(plan.config, worker.workers))
    return worker.submit(_export_in_worker, exporting, grid.dataset, grid.load, worker_log(grid.say))
