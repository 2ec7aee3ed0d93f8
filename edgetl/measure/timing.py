"""How latency is measured: the settings (`BenchConfig`), the timed loop that stops once the percentiles are
stable, the percentiles, other processes' CPU use meanwhile, and the peak resident memory. numpy and the
standard library only: the device-side benchmark (`edgetl.measure.device_bench`) times with these too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from edgetl.params import Interval, validate
from edgetl.runtime import DEFAULT_NUM_THREADS


@dataclass(frozen=True)
class BenchConfig:
    """How latency is measured: batch-1 invokes at `num_threads`, after `warmup_runs` untimed ones.

    Timing goes on until at least `min_timed_runs` and `min_timed_seconds` are both reached, then until
    the percentiles are stable: p50 and p90 moved by less than `stable_within` (relative), p99 by less
    than 2.5x that, over the last STABILITY_STEP invokes. It stops anyway at `max_timed_seconds` or
    `max_timed_runs`. A fast model is done in a fraction of a second instead of a fixed two; a slow or
    noisy one gets the full time. `stable_within=0` turns the early stop off.
    """

    num_threads: int = DEFAULT_NUM_THREADS
    warmup_runs: int = 10
    min_timed_runs: int = 100  # a p99 needs at least a hundred samples to be more than the maximum
    min_timed_seconds: float = 0.0
    max_timed_seconds: float = 2.0
    max_timed_runs: int = 2000
    stable_within: float = 0.02

    CONSTRAINTS: ClassVar[dict] = {
        "num_threads": Interval(int, 1),
        "warmup_runs": Interval(int, 0),
        "min_timed_runs": Interval(int, 1),
        "min_timed_seconds": Interval(float, 0),
        "max_timed_seconds": Interval(float, 0),
        "max_timed_runs": Interval(int, 1),
        "stable_within": Interval(float, 0),
    }

    def __post_init__(self) -> None:
        validate(self)
        if self.max_timed_runs < self.min_timed_runs:
            raise ValueError(
                f"max_timed_runs ({self.max_timed_runs}) must be >= min_timed_runs ({self.min_timed_runs})"
            )


#: How many invokes apart the percentiles are compared when deciding that they are stable.
STABILITY_STEP = 50


#: Other processes' mean CPU use (in cores) above which a latency measurement is flagged as disturbed.
#: An idle machine here shows 0.01-0.05; one other busy thread shows about 1.
BUSY_OTHER_CORES = 0.25


class CpuMonitor:
    """CPU time used by every other process between start and `other_cores()` (Linux /proc; None elsewhere)."""

    def __init__(self):
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        import os
        import time

        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # all but idle and iowait
        own_ticks = int(own[11]) + int(own[12])  # utime + stime of this process (all its threads)
        return busy / os.sysconf("SC_CLK_TCK"), own_ticks / os.sysconf("SC_CLK_TCK"), time.monotonic()

    def other_cores(self) -> float | None:
        end = self._read()
        if self._start is None or end is None or end[2] <= self._start[2]:
            return None
        others = (end[0] - self._start[0]) - (end[1] - self._start[1])
        return max(0.0, others / (end[2] - self._start[2]))


def latency_percentiles(latencies_ms: list[float]) -> dict[str, float]:

    a = np.asarray(latencies_ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
    }


def _stable(before: dict[str, float], now: dict[str, float], within: float) -> bool:
    """Whether p50, p90 (within `within`) and p99 (within 2.5x that) moved little between two looks."""
    limits = {"p50": within, "p90": within, "p99": 2.5 * within}
    return all(abs(now[k] - before[k]) <= limit * max(before[k], 1e-9) for k, limit in limits.items())


def time_invocations(model, image, config: BenchConfig = BenchConfig()) -> list[float]:
    """Batch-1 latencies in ms: warm-up, then timed invoke() calls until the minimums are met and the
    percentiles are stable, or a maximum is reached (BenchConfig)."""
    import time

    model.set_input(image)
    for _ in range(config.warmup_runs):
        model.invoke()
    latencies: list[float] = []
    started = time.perf_counter()
    last_look: dict[str, float] | None = None
    while len(latencies) < config.max_timed_runs:
        elapsed = time.perf_counter() - started
        if len(latencies) >= config.min_timed_runs and elapsed >= config.min_timed_seconds:
            if elapsed >= config.max_timed_seconds:
                break
            if len(latencies) % STABILITY_STEP == 0:
                look = latency_percentiles(latencies)
                if (
                    config.stable_within > 0
                    and last_look is not None
                    and _stable(last_look, look, config.stable_within)
                ):
                    break
                last_look = look
        t0 = time.perf_counter()
        model.invoke()
        latencies.append((time.perf_counter() - t0) * 1000.0)
    return latencies


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB.

    Linux's VmHWM belongs to the address space, so it starts afresh at exec; ru_maxrss does not (a child
    inherits its parent's peak at fork), which would charge TensorFlow's memory to every benchmark child.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
