"""Pick the artifact to deploy: the Pareto front over (accuracy, latency, size) and a budgeted pick.

Every exported artifact trades top-1 accuracy against p50 latency and file size. Nothing off the
Pareto front is worth shipping (some other artifact is at least as good on all three axes), so the
front is computed first and the pick is made from it:

* with a budget (any of max latency / max size / min accuracy set): the most accurate artifact that
  fits. Budgets are monotone (a dominating artifact fits whenever the dominated one does), so that
  artifact is always on the front.
* without a budget: the "knee" of the front, where giving up a little accuracy stops buying much
  latency (see :func:`knee`).

Import-light on purpose (stdlib only): reports are rebuilt on machines without TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from edgetl.export.formats import FORMATS, RUNTIMES
from edgetl.measure.results import ArtifactResult
from edgetl.params import Interval, OneOf, validate
from edgetl.pick.budget import BYTES_PER_MB, Budget
from edgetl.stats import mcnemar_exact

#: How many near-misses :func:`pick` reports when nothing fits.
NUM_CLOSEST = 3


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def is_ok(r: ArtifactResult) -> bool:
    """True for rows that benchmarked successfully; only those can be on the front or picked."""
    return r.status == "ok"


def _validate_results(results: Sequence[ArtifactResult]) -> list[ArtifactResult]:
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
    rows = _validate_results(results)
    ok = [(i, r) for i, r in enumerate(rows) if is_ok(r)]
    # Best-first order: a dominator always sorts no later than the row it dominates.
    order = sorted(ok, key=lambda ir: (-ir[1].accuracy, ir[1].latency_ms_p50, ir[1].size_bytes))
    front: list[tuple[int, ArtifactResult]] = []
    for i, r in order:
        if not any(dominates(f, r) for _, f in front):
            front.append((i, r))
    front.sort(key=lambda ir: ir[0])  # back to input order
    return [r for _, r in front]


# --------------------------------------------------------------------------------------------
# pick
# --------------------------------------------------------------------------------------------


@dataclass
class Pick:
    """The outcome of :func:`pick`.

    ``chosen`` is None when nothing can be deployed; ``reason`` says why in one sentence either way.
    ``front`` is the Pareto front (input order); ``closest`` holds the near-misses when nothing fits
    the budget (empty otherwise).
    """

    chosen: ArtifactResult | None
    reason: str
    front: list[ArtifactResult] = field(default_factory=list)
    closest: list[ArtifactResult] = field(default_factory=list)
    tied: list[ArtifactResult] = field(default_factory=list)  # the set the pick was the cheapest of
    reference: ArtifactResult | None = None  # the most accurate artifact within budget
    runtime: str = "any"  # whose artifacts were candidates (PickConfig.runtime); `front` is theirs


def _best_key(r: ArtifactResult) -> tuple[float, float, float]:
    """Sort key for "most accurate; ties: lower latency, then smaller file"."""
    return (-r.accuracy, r.latency_ms_p50, float(r.size_bytes))


def most_accurate(rows: Sequence[ArtifactResult]) -> ArtifactResult:
    """The most accurate row (ties: lower p50 latency, then smaller size; then input order)."""
    if not rows:
        raise ValueError("most_accurate() of no rows")
    return min(rows, key=_best_key)  # min() keeps the first of equal keys: stable


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


def _summary(r: ArtifactResult) -> str:
    """'v2-a1.0-r224 tflite-int8 (91.2% top-1, p50 4.10 ms, 3.40 MB)' for reasons and reports."""
    return (
        f"{r.point} {r.format} ({r.accuracy * 100:.1f}% top-1, p50 {r.latency_ms_p50:.2f} ms, "
        f"{r.size_bytes / BYTES_PER_MB:.2f} MB)"
    )


def closest_misses(results: Sequence[ArtifactResult], budget: Budget, n: int = NUM_CLOSEST) -> list[ArtifactResult]:
    """The `n` successful rows with the smallest total relative violation of `budget`.

    Ties: more accurate first, then faster, then smaller. These are what to show someone whose
    budget is too tight: each comes with :meth:`Budget.describe_violation`.
    """
    ok = [r for r in results if is_ok(r)]
    # Rounded so float noise (2.1 - 2.0 != 0.1) does not override the accuracy/latency tie-break.
    return sorted(ok, key=lambda r: (round(budget.violation(r), 9), *_best_key(r)))[:n]


PICK_RULES = ("cheapest_tied", "most_accurate")
#: Which artifacts the headline pick considers: one runtime's (the one the app embeds) or every runtime's.
PICK_RUNTIMES = (*RUNTIMES, "any")
RUNTIME_NAMES = {"tflite": "LiteRT/TFLite", "onnx": "onnxruntime"}
ACCURACY_TOLERANCE = 1.0  # points: a smaller loss than this is a tie when it is not significant either
ALPHA = 0.05  # significance level of the paired tests


@dataclass(frozen=True)
class PickConfig:
    """How the pick is made among the artifacts within budget.

    ``cheapest_tied`` (default): every artifact that is within `accuracy_tolerance` points of the most
    accurate one and not significantly worse on the same test images (McNemar's exact test at `alpha`)
    is tied with it; the pick is the cheapest of the tied set (lowest p50 latency, then size). Accuracy
    on a few hundred images is a measurement, so a difference of a few images decides nothing.
    ``most_accurate``: the most accurate artifact within budget (the knee of the front with no budget).
    ``runtime``: only that runtime's artifacts are candidates (``tflite``, the default: LiteRT and
    tflite-runtime, what the device side of edgetl is built around; ``onnx``: onnxruntime); ``any``: all.
    """

    rule: str = PICK_RULES[0]
    accuracy_tolerance: float = ACCURACY_TOLERANCE
    alpha: float = ALPHA
    runtime: str = PICK_RUNTIMES[0]

    CONSTRAINTS: ClassVar[dict] = {
        "rule": OneOf(PICK_RULES),
        "runtime": OneOf(PICK_RUNTIMES),
        "accuracy_tolerance": Interval(float, 0, 100),  # points
        "alpha": Interval(float, 0, 1, "neither"),
    }

    def __post_init__(self) -> None:
        validate(self)


def paired(candidate: ArtifactResult, reference: ArtifactResult):
    """McNemar's exact test of `candidate` against `reference` on the same test images, or None when the
    two rows do not carry predictions for the same images (edgetl.stats.McNemarResult; a = candidate)."""

    a, b = candidate.correct(), reference.correct()
    if a is None or b is None or candidate.labels != reference.labels:
        return None
    return mcnemar_exact(a, b)


def tied_set(rows: Sequence[ArtifactResult], config: PickConfig) -> tuple[ArtifactResult, list[ArtifactResult]] | None:
    """(the most accurate row, the rows tied with it), or None when some row cannot be compared paired."""
    best = most_accurate(rows)
    tied = []
    for r in rows:
        test = paired(r, best)
        if test is None:
            return None
        loss = (best.accuracy - r.accuracy) * 100
        if loss <= config.accuracy_tolerance + 1e-9 and not (test.p_value < config.alpha and loss > 0):
            tied.append(r)
    return best, tied


def _cheapest_tied(candidates: list[ArtifactResult], config: PickConfig) -> tuple[ArtifactResult, list, str] | None:
    found = tied_set(candidates, config)
    if found is None:
        return None
    best, tied = found
    chosen = min(tied, key=lambda r: (r.latency_ms_p50, r.size_bytes, -r.accuracy))
    why = (
        f"cheapest (p50 latency, then size) of the {len(tied)} artifact(s) tied with the most accurate, "
        f"{best.point} {best.format} at {best.accuracy * 100:.1f}% (within {config.accuracy_tolerance:g} "
        f"point(s) and not significantly worse, McNemar's exact test at alpha {config.alpha:g})"
    )
    if chosen is not best:
        test = paired(chosen, best)
        why += (
            f"; it gives up {test.diff_points * -1:.2f} points (95% CI {-test.diff_high_points:.2f} to "
            f"{-test.diff_low_points:.2f}, p = {test.p_value:.2g}) for "
            f"{best.latency_ms_p50 / max(chosen.latency_ms_p50, 1e-9):.1f}x the speed and "
            f"{best.size_bytes / max(chosen.size_bytes, 1):.1f}x less size"
        )
    return chosen, tied, why


def pick(results: Sequence[ArtifactResult], budget: Budget | None = None, config: PickConfig = PickConfig()) -> Pick:
    """Choose the artifact to deploy among those within `budget` (all successful ones when none is set).

    * ``config.rule == "cheapest_tied"`` (default) and every candidate carries per-image predictions:
      the cheapest of the set tied with the most accurate candidate (:class:`PickConfig`).
    * Otherwise, with a budget: the most accurate artifact that fits (ties: lower p50 latency, then
      smaller file); without one: the knee of the front, see :func:`knee`.
    * Nothing fits: ``chosen`` is None, ``reason`` starts with "no artifact fits:", and ``closest``
      holds the 3 artifacts with the smallest total relative violation.
    * No row succeeded: ``chosen`` is None and ``reason`` says every benchmark failed.

    Raises ValueError for an empty `results` or invalid rows (negative budgets fail in Budget).
    """
    rows = _validate_results(results)
    budget = budget if budget is not None else Budget()
    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a Budget or None, got {type(budget).__name__}")
    if config.runtime != "any":
        mine = of_runtime(rows, config.runtime)
        if not mine:
            have = ", ".join(sorted({runtime_of(r) for r in rows}))
            return Pick(
                None,
                f"no {RUNTIME_NAMES[config.runtime]} artifact among the {len(rows)} (runtimes here: {have}); "
                f"export a {config.runtime} format, or pick with --runtime any",
                runtime=config.runtime,
            )
        chosen = _pick_among(mine, budget, config)
        chosen.reason += f" ({RUNTIME_NAMES[config.runtime]} artifacts only: --runtime {config.runtime})"
        chosen.runtime = config.runtime
        return chosen
    return _pick_among(rows, budget, config)


def _pick_among(rows: list[ArtifactResult], budget: Budget, config: PickConfig) -> Pick:
    front = pareto_front(rows)
    ok = [r for r in rows if is_ok(r)]
    n_failed = len(rows) - len(ok)
    if not ok:
        return Pick(None, f"no artifact to pick: all {len(rows)} benchmarks failed", front, [])
    fitting = [r for r in ok if budget.fits(r)]
    if not fitting:
        closest = closest_misses(ok, budget)
        near = "; ".join(f"{r.point} {r.format}: {budget.describe_violation(r)}" for r in closest)
        return Pick(
            None,
            f"no artifact fits: none of {len(ok)} meets budget ({budget.describe()}); closest: {near}",
            front,
            closest,
        )
    within = (
        f"within budget ({budget.describe()}), {len(fitting)} of {len(ok)} fit" if budget.is_set else "no budget set"
    )
    tie = _cheapest_tied(fitting, config) if config.rule == "cheapest_tied" else None
    if tie is not None:
        chosen, tied, why = tie
        reason = f"{within}: {why}: {_summary(chosen)}"
    else:
        tied = []
        note = (
            " (rows without per-image predictions cannot be compared paired)" if config.rule == "cheapest_tied" else ""
        )
        if budget.is_set:
            chosen = most_accurate(fitting)
            reason = f"most accurate artifact {within}{note}: {_summary(chosen)}"
        else:
            chosen = knee(front)
            how = (
                "knee of the Pareto front (max distance to the fastest-to-most-accurate chord)"
                if len(front) > 2
                else f"most accurate of the {len(front)}-point Pareto front"
            )
            reason = f"no budget set: {how}{note}: {_summary(chosen)}"
    if n_failed:
        reason += f" ({n_failed} failed artifact{'s' if n_failed != 1 else ''} excluded)"
    return Pick(chosen, reason, front, [], tied, most_accurate(fitting))


def runtime_of(r: ArtifactResult) -> str:
    """The runtime that loads `r`'s file ("tflite" | "onnx"), from the format table (a format name
    this edgetl does not know, from an old or newer results.json: its first word)."""
    spec = FORMATS.get(r.format)
    return spec.runtime if spec is not None else r.format.split("-")[0]


def of_runtime(rows: Sequence[ArtifactResult], runtime: str) -> list[ArtifactResult]:
    """The rows whose artifact `runtime` loads ("any": all of them)."""
    return list(rows) if runtime == "any" else [r for r in rows if runtime_of(r) == runtime]


def pick_all(
    results: Sequence[ArtifactResult], budget: Budget | None = None, config: PickConfig = PickConfig()
) -> tuple[Pick, dict[str, Pick]]:
    """The headline pick (among `config.runtime`'s artifacts) and the pick of each runtime that has artifacts
    (in RUNTIMES order): the file to ship depends on the runtime the app embeds."""
    by_runtime = {
        rt: pick(results, budget, replace(config, runtime=rt))
        for rt in RUNTIMES
        if of_runtime(_validate_results(results), rt)
    }
    return by_runtime.get(config.runtime) or pick(results, budget, config), by_runtime


__all__ = [
    "BYTES_PER_MB",
    "Budget",
    "Pick",
    "PickConfig",
    "PICK_RUNTIMES",
    "RUNTIME_NAMES",
    "of_runtime",
    "pick_all",
    "runtime_of",
    "closest_misses",
    "paired",
    "tied_set",
    "dominates",
    "is_ok",
    "knee",
    "most_accurate",
    "pareto_front",
    "pick",
]
