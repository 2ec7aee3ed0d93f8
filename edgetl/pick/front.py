"""The Pareto front over (accuracy, p50 latency, size) of a sweep's rows, its knee, and the rows' one validation.

Import-light on purpose (stdlib only), as `edgetl.pick.pareto` that picks from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edgetl.measure.results import ArtifactResult

# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def is_ok(r: ArtifactResult) -> bool:
    """True for rows that benchmarked successfully; only those can be on the front or picked."""
    return r.status == "ok"


def validate_results(results: Sequence[ArtifactResult]) -> list[ArtifactResult]:
    """Check the rows once, up front, so a bad row fails loudly instead of silently winning.

    A NaN accuracy or negative latency in an "ok" row would otherwise compare in surprising ways
    (NaN is never dominated) and could end up as the deployment pick.
    """
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
        raise ValueError(f"results must be a sequence of ArtifactResult, got {type(results).__name__}")
    rows = list(results)
    if not rows:
        raise ValueError("results is empty: there is no artifact to compare (did the benchmark run?)")
    for i, r in enumerate(rows):
        if not isinstance(r, ArtifactResult):
            raise ValueError(f"results[{i}] is a {type(r).__name__}, not an ArtifactResult")
        if not is_ok(r):
            continue  # failed rows may carry NaN/placeholder numbers; they are never compared
        name = f"results[{i}] ({r.point} {r.format})"
        if not (isinstance(r.accuracy, (int, float)) and 0.0 <= r.accuracy <= 1.0):
            raise ValueError(f"{name}: accuracy must be a fraction in [0, 1], got {r.accuracy!r}")
        if not (
            isinstance(r.latency_ms_p50, (int, float)) and math.isfinite(r.latency_ms_p50) and r.latency_ms_p50 >= 0
        ):
            raise ValueError(f"{name}: latency_ms_p50 must be a finite number >= 0, got {r.latency_ms_p50!r}")
        if not (isinstance(r.size_bytes, (int, float)) and math.isfinite(r.size_bytes) and r.size_bytes >= 0):
            raise ValueError(f"{name}: size_bytes must be a finite number >= 0, got {r.size_bytes!r}")
    return rows


# --------------------------------------------------------------------------------------------
# Pareto front
# --------------------------------------------------------------------------------------------


def _objectives(r: ArtifactResult) -> tuple[float, float, float]:
    """The three objectives, all turned into "higher is better" so domination is one comparison."""
    return (r.accuracy, -r.latency_ms_p50, -float(r.size_bytes))


def dominates(a: ArtifactResult, b: ArtifactResult) -> bool:
    """True when `a` is at least as good as `b` on accuracy, p50 latency and size, and strictly better
    on at least one. Identical triples do not dominate each other (both stay on the front)."""
    oa, ob = _objectives(a), _objectives(b)
    return all(x >= y for x, y in zip(oa, ob)) and any(x > y for x, y in zip(oa, ob))


def pareto_front(results: Sequence[ArtifactResult]) -> list[ArtifactResult]:
    """The successful rows no other successful row dominates, in input order.

    Objectives: accuracy (higher is better), latency_ms_p50 (lower), size_bytes (lower). Rows with
    ``status != "ok"`` are ignored. Exact ties all stay, so two formats that measure identically are
    both offered rather than one being dropped arbitrarily.

    Sorting by accuracy descending first means a row can only be dominated by rows before it (or by
    exact-accuracy peers), which keeps the check cheap for the usual sweep sizes; O(n * front) worst
    case is fine for the tens-to-hundreds of artifacts a sweep produces.
    """
    rows = validate_results(results)
    ok = [(i, r) for i, r in enumerate(rows) if is_ok(r)]
    # Best-first order: a dominator always sorts no later than the row it dominates.
    order = sorted(ok, key=lambda ir: (-ir[1].accuracy, ir[1].latency_ms_p50, ir[1].size_bytes))
    front: list[tuple[int, ArtifactResult]] = []
    for i, r in order:
        if not any(dominates(f, r) for _, f in front):
            front.append((i, r))
    front.sort(key=lambda ir: ir[0])  # back to input order
    return [r for _, r in front]


def best_key(r: ArtifactResult) -> tuple[float, float, float]:
    """Sort key for "most accurate; ties: lower latency, then smaller file"."""
    return (-r.accuracy, r.latency_ms_p50, float(r.size_bytes))


def most_accurate(rows: Sequence[ArtifactResult]) -> ArtifactResult:
    """The most accurate row (ties: lower p50 latency, then smaller size; then input order)."""
    if not rows:
        raise ValueError("most_accurate() of no rows")
    return min(rows, key=best_key)  # min() keeps the first of equal keys: stable


def knee(front: Sequence[ArtifactResult]) -> ArtifactResult:
    """The knee of a Pareto front in the (p50 latency, accuracy) plane.

    Method ("maximum distance to the chord", as in the Kneedle / L-method family):

    1. Normalise latency and accuracy over the front points to [0, 1] (min-max), so neither axis
       wins just because of its units.
    2. Take the two extremes: the lowest-latency point (ties: most accurate) and the most accurate
       point (ties: lowest latency), and draw the line (chord) joining them.
    3. The knee is the point furthest from that chord on the good side (higher accuracy / lower
       latency than the chord promises). Only that side counts: the front is 3-D, so some of its
       points are there only for their small size and sit below the chord; they are not knees.

    Falls back to the most accurate point when the front has 1-2 points, when the two extremes
    coincide in this plane, or when no point lies strictly above the chord (a straight or concave
    front has no knee, and then accuracy is the safer default).
    """
    pts = list(front)
    if not pts:
        raise ValueError("knee() of an empty front")
    if len(pts) <= 2:
        return most_accurate(pts)

    lats = [r.latency_ms_p50 for r in pts]
    accs = [r.accuracy for r in pts]
    lat_lo, lat_span = min(lats), max(lats) - min(lats)
    acc_lo, acc_span = min(accs), max(accs) - min(accs)

    def norm(r: ArtifactResult) -> tuple[float, float]:
        x = (r.latency_ms_p50 - lat_lo) / lat_span if lat_span > 0 else 0.0
        y = (r.accuracy - acc_lo) / acc_span if acc_span > 0 else 0.0
        return x, y

    fastest = min(pts, key=lambda r: (r.latency_ms_p50, -r.accuracy, r.size_bytes))
    best = most_accurate(pts)
    (xa, ya), (xb, yb) = norm(fastest), norm(best)
    dx, dy = xb - xa, yb - ya
    length = math.hypot(dx, dy)
    if length == 0:
        return best

    def signed_distance(r: ArtifactResult) -> float:
        # Cross product of chord x (point - fastest): > 0 above/left of the chord, i.e. better.
        x, y = norm(r)
        return (dx * (y - ya) - dy * (x - xa)) / length

    # Ties on distance: the more accurate, then faster, then smaller; then input order.
    scored = [(signed_distance(r), r) for r in pts]
    d_max = max(d for d, _ in scored)
    if d_max <= 1e-12:
        return best
    return most_accurate([r for d, r in scored if d >= d_max - 1e-12])
