"""Deployment constraints: the `Budget` an artifact must fit to be picked.

Import-light (stdlib only), like edgetl.pick.pareto.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from edgetl.measure.results import ArtifactResult
from edgetl.params import Interval, validate

#: Bytes per megabyte for every size budget and report. Decimal (SI) megabytes, 1 MB = 10**6 bytes,
#: because that is what storage vendors, app stores and `ls --si` quote; a "4 MB" budget given by a
#: product person almost always means 4,000,000 bytes, not 4 MiB.
BYTES_PER_MB = 1_000_000


def _fmt_num(x: float) -> str:
    """Short human number for messages: 15 -> "15", 23.14 -> "23.1", 0.5234 -> "0.523"."""
    if not math.isfinite(x) or abs(x) < 100:
        return f"{x:.3g}"
    return f"{x:.0f}"


@dataclass(frozen=True)
class Budget:
    """Deployment constraints; ``None`` means "no constraint on this axis".

    * ``max_latency_ms``: upper bound on p50 latency (ms), the figure the front is built on.
    * ``max_size_mb``: upper bound on the artifact file size in decimal megabytes
      (1 MB = 1,000,000 bytes, see :data:`BYTES_PER_MB`).
    * ``min_accuracy``: lower bound on top-1 accuracy as a fraction in [0, 1] (0.9, not 90).
    """

    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    min_accuracy: float | None = None
    max_init_ms: float | None = None  # start-up: load and allocate plus the first inference

    # Caught here rather than at pick time so a typo in a config or CLI flag fails immediately; 0 admits nothing.
    CONSTRAINTS: ClassVar[dict] = {
        "max_latency_ms": Interval(float, 0, None, "neither", none_ok=True),
        "max_size_mb": Interval(float, 0, None, "neither", none_ok=True),
        "min_accuracy": Interval(float, 0, 1, none_ok=True),  # a fraction
        "max_init_ms": Interval(float, 0, None, "neither", none_ok=True),
    }

    def __post_init__(self) -> None:
        v = self.min_accuracy
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 1 < v <= 100:
            raise ValueError(f"budget min_accuracy is a fraction in [0, 1], got {v!r} (did you mean {v / 100:g}?)")
        validate(self, prefix="budget ")

    @property
    def is_set(self) -> bool:
        """True when at least one constraint is given (otherwise :func:`pick` picks the knee)."""
        return any(v is not None for v in (self.max_latency_ms, self.max_size_mb, self.min_accuracy, self.max_init_ms))

    def describe(self) -> str:
        """One line for reports, e.g. "p50 latency <= 15 ms, size <= 4 MB, top-1 >= 75%"."""
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"p50 latency <= {_fmt_num(self.max_latency_ms)} ms")
        if self.max_size_mb is not None:
            parts.append(f"size <= {_fmt_num(self.max_size_mb)} MB")
        if self.min_accuracy is not None:
            parts.append(f"top-1 >= {_fmt_num(self.min_accuracy * 100)}%")
        if self.max_init_ms is not None:
            parts.append(f"start-up <= {_fmt_num(self.max_init_ms)} ms")
        return ", ".join(parts) if parts else "none"

    def _violations(self, r: ArtifactResult) -> list[tuple[str, float]]:
        """(message, relative violation) for every constraint `r` breaks; empty when it fits."""
        out: list[tuple[str, float]] = []
        if self.max_latency_ms is not None and r.latency_ms_p50 > self.max_latency_ms:
            out.append(
                (
                    f"latency {_fmt_num(r.latency_ms_p50)} ms > {_fmt_num(self.max_latency_ms)} ms",
                    (r.latency_ms_p50 - self.max_latency_ms) / self.max_latency_ms,
                )
            )
        if self.max_size_mb is not None:
            size_mb = r.size_bytes / BYTES_PER_MB
            if size_mb > self.max_size_mb:
                out.append(
                    (
                        f"size {size_mb:.2f} MB > {_fmt_num(self.max_size_mb)} MB",
                        (size_mb - self.max_size_mb) / self.max_size_mb,
                    )
                )
        if self.min_accuracy is not None and r.accuracy < self.min_accuracy:
            out.append(
                (
                    f"accuracy {r.accuracy * 100:.1f}% < {_fmt_num(self.min_accuracy * 100)}%",
                    # min_accuracy > accuracy >= 0 here, so the division is safe.
                    (self.min_accuracy - r.accuracy) / self.min_accuracy,
                )
            )
        if self.max_init_ms is not None:
            init = r.init_ms
            if init is None:
                out.append(("start-up not measured", 1.0))
            elif init > self.max_init_ms:
                out.append(
                    (
                        f"start-up {_fmt_num(init)} ms > {_fmt_num(self.max_init_ms)} ms",
                        (init - self.max_init_ms) / self.max_init_ms,
                    )
                )
        return out

    def fits(self, r: ArtifactResult) -> bool:
        """True when `r` benchmarked fine and meets every constraint that is set (limits inclusive)."""
        return r.ok and not self._violations(r)

    def violation(self, r: ArtifactResult) -> float:
        """Total relative violation: the sum over broken constraints of |value - limit| / limit.

        Relative, so "2 ms over a 10 ms budget" and "0.4 MB over a 2 MB budget" weigh the same (20%).
        0.0 when `r` fits; infinity for failed rows (they can never be deployed).
        """
        if not r.ok:
            return math.inf
        return sum(v for _, v in self._violations(r))

    def describe_violation(self, r: ArtifactResult) -> str:
        """Why `r` does not fit, e.g. "latency 23.1 ms > 15 ms; size 5.20 MB > 4 MB".

        Empty string when it fits, so callers can test the result for truthiness.
        """
        if not r.ok:
            return f"failed: {r.status}"
        return "; ".join(msg for msg, _ in self._violations(r))
