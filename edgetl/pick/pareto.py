"""Pick the artifact to deploy: the Pareto front over (accuracy, latency, size) and a budgeted pick.

Every exported artifact trades top-1 accuracy against p50 latency and file size. Nothing off the
Pareto front is worth shipping (some other artifact is at least as good on all three axes), so the
front is computed first and the pick is made from it:

* with a budget (any of max latency / max size / min accuracy set): the most accurate artifact that
  fits. Budgets are monotone (a dominating artifact fits whenever the dominated one does), so that
  artifact is always on the front.
* without a budget: the "knee" of the front, where giving up a little accuracy stops buying much
  latency (see `edgetl.pick.front.knee`).

The front, its knee and the rows' validation are in `edgetl.pick.front`; this module picks from them.
Import-light on purpose (stdlib only): reports are rebuilt on machines without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from edgetl.export.formats import FORMATS, RUNTIMES
from edgetl.measure.results import ArtifactResult
from edgetl.params import Interval, OneOf, validate
from edgetl.pick.budget import BYTES_PER_MB, Budget
from edgetl.pick.front import best_key, dominates, is_ok, knee, most_accurate, pareto_front, validate_results
from edgetl.stats import mcnemar_exact

#: How many near-misses :func:`pick` reports when nothing fits.
NUM_CLOSEST = 3


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
    return sorted(ok, key=lambda r: (round(budget.violation(r), 9), *best_key(r)))[:n]


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
    rows = validate_results(results)
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
        if of_runtime(validate_results(results), rt)
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
