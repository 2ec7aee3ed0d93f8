"""The sweep's second lane: one grid point exported in a worker process while the next point trains.

On 2 cores, a point's export keeps about 1.3 of them busy (the TFLite calibrator and tf2onnx run on one
thread), and training the next point needs the pixels and the backbone, not that export. So the in-process
sweep hands each point's export to one worker process (spawned on first use, TensorFlow imported there
once) and trains the next point meanwhile. A point's benchmarks wait until both are done, so nothing else
runs while a latency is timed; the last point has nothing to overlap with and exports in the sweep itself.
Threads would not do: the calibrator holds Python's GIL, and a busy second thread made it 30x slower.

- The worker is a child of the sweep and dies with it (Linux's parent-death signal); a simulated power
  cut in the worker (`edgetl.files.checkpoint`) takes the sweep down with it, as a real one would.
- A worker that dies on its own (the OOM killer) ends the sweep with `WorkerLost`: the finished units
  are on disk, and the same command resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

#: Set in the worker: the sweep's process id, for `edgetl.files.checkpoint`'s simulated power cut.
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
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(os.getpid(),))
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
        raise WorkerLost(f"the export worker died while exporting {what} (killed by the system; out of memory?). "
                         "Finished units are saved: re-run the same command to resume") from e
