"""The in-process sweep's runner (`run_grid`): one grid point exported in a worker process while the next trains.

On 2 cores, a point's export keeps about 1.3 of them busy (the TFLite calibrator and tf2onnx run on one
thread), and training the next point needs the pixels and the backbone, not that export. So the in-process
sweep hands each point's export to one worker process (spawned on first use, TensorFlow imported there
once) and trains the next point meanwhile. A point's benchmarks wait until both are done, so nothing else
runs while a latency is timed; the last point has nothing to overlap with and exports in the sweep itself.
Threads would not do: the calibrator holds Python's GIL, and a busy second thread made it 30x slower.

- The worker is a child of the sweep and dies with it (Linux's parent-death signal); a simulated power
  cut in the worker (`edgetl.io.files.checkpoint`) takes the sweep down with it, as a real one would.
- A worker that dies on its own (the OOM killer) ends the sweep with `WorkerLost`: the finished units
  are on disk, and the same command resumes.
"""

from __future__ import annotations

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
from edgetl.features.backbones import BackboneSpec
from edgetl.io.files import DiskError
from edgetl.measure.results import ArtifactResult, write_results
from edgetl.sweep.run import SweepConfig, _release_models, bench_point, export_point, point_failed, train_todo
from edgetl.sweep.state import export_todo, point_dir, point_name

#: Set in the worker: the sweep's process id, for `edgetl.io.files.checkpoint`'s simulated power cut.
SWEEP_PID_ENV = "EDGETL_SWEEP_PID"
PR_SET_PDEATHSIG = 1  # prctl(2)


class WorkerLost(RuntimeError):
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

    def __init__(
        self,
        config: SweepConfig,
        dataset: Dataset,
        notes: list[str],
        say,
        load,
        results,
        walls,
        stage: tqdm,
        overall: tqdm,
    ):
        self.config, self.dataset, self.notes, self.say, self.load = config, dataset, notes, say, load
        self.results, self.walls, self.stage, self.overall = results, walls, stage, overall

    def attempt(self, spec: BackboneSpec, work):
        """work(), or None when it failed: one broken grid point must not cost the others (its finished units
        are saved). A disk fault (the next point would hit the same disk) or a lost worker ends the sweep."""
        try:
            return work()
        except (DiskError, WorkerLost):
            raise
        except Exception as e:
            point_failed(point_name(self.config, spec), e, self.notes, self.say)
            return None

    def settle(self, spec: BackboneSpec, run: dict, keys: dict, exported, spent: float) -> None:
        """Benchmark a point once its export is done (`exported`: its state, the worker's future of it, or None
        when the point failed), write the rows so far, and record the time this process spent on the point."""
        clock = time.perf_counter()

        def bench():
            state = exported if isinstance(exported, dict) else worker_result(exported, point_name(self.config, spec))
            return bench_point(self.config, spec, self.dataset, run, keys, state, self.stage, self.load)

        rows = (self.attempt(spec, bench) if exported is not None else None) or []
        self.results.extend(rows)
        _release_models()
        if self.results:
            write_results(self.results, self.config.output_dir, self.notes)  # after every point: a kill keeps those
        if self.walls is not None:
            self.walls[point_dir(self.config, spec).name] = round(spent + time.perf_counter() - clock, 2)
        self.overall.update(1)


def largest_first(points: tuple[BackboneSpec, ...]) -> list[BackboneSpec]:
    """The order the in-process runner takes the points in: the largest input and width first, so the last
    point, whose export has no training beside it, is the cheapest to export (about 12 s against 64 s for
    the README grid's largest, measured by tools/bench_sweep.py). Ties keep the grid's order."""
    return sorted(points, key=lambda p: -(p.resolution**2) * p.alpha)


def beside_export(config: SweepConfig) -> SweepConfig:
    """The config a point trains with while the previous point exports: LiteRT's features on every core but one.

    XNNPACK splits each layer evenly over its threads, so while the worker keeps a core busy, one of two
    feature threads keeps stalling the other: V2 1.0 @224 ran at 117 images/s on 2 threads beside one busy
    thread and at 125 on 1 thread, which also leaves the worker its core. The worker's export, not this
    training, is what the next point waits for. Thread counts the user set are kept."""
    if config.features.num_threads is not None:
        return config
    return replace(config, features=replace(config.features, num_threads=max(1, (os.cpu_count() or 1) - 1)))


def _export_in_worker(*args) -> dict:
    try:
        return export_point(*args)
    finally:
        _release_models()  # the worker outlives the point


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
    point trains (`edgetl.sweep.local`); rows added to `results`, written after each point. `walls` gets the
    time this process spent on each point (its training, then waiting for its export and benchmarking it)."""
    with (
        tqdm(
            total=len(config.points), desc="fine-tuning" if config.fine_tune else "grid", unit="point", position=0
        ) as overall,
        tqdm(bar_format="{desc}", position=1, leave=False) as stage,
        ExportWorker() as worker,
    ):
        grid = _Grid(config, dataset, notes, say, load, list(results or []), walls, stage, overall)
        exporting = None  # (spec, run, keys, the worker's future, seconds): the point exported beside this one
        points = largest_first(config.points)
        for i, spec in enumerate(points):
            clock = time.perf_counter()
            overall.set_postfix_str(point_name(config, spec))
            point_config = beside_export(config) if exporting is not None else config
            trained = grid.attempt(spec, lambda: train_todo(point_config, spec, dataset, stage, say, load))
            spent = time.perf_counter() - clock
            if exporting is not None:
                grid.settle(*exporting)
                exporting = None
            if trained is None:
                grid.settle(spec, {}, {}, None, spent)
                continue
            run, keys, state = trained
            if i + 1 < len(points) and export_todo(config, spec, keys, state):
                if isinstance(load, LazyPixels):
                    load.build()  # here, once: never in the worker while this process builds it too
                future = worker.submit(_export_in_worker, config, spec, keys, state, dataset, None, load)
                exporting = (spec, run, keys, future, spent)
                continue
            clock = time.perf_counter()
            stage.set_description_str(f"{point_name(config, spec)}: exporting")
            exported = grid.attempt(spec, lambda: export_point(config, spec, keys, state, dataset, say, load))
            grid.settle(spec, run, keys, exported, spent + time.perf_counter() - clock)
        if exporting is not None:
            grid.settle(*exporting)
    return grid.results
