"""Error bars and paired comparisons for accuracy measured on a few hundred test images.

Top-1 accuracy on a test split of a few hundred images is a measurement, not a constant: at 300
images and 85% accuracy the 95% interval is about +/-4 points wide. And when two artifacts (say the
float32 TFLite and its int8 twin) are scored on the *same* images, comparing their two intervals
throws away the pairing: most images are right (or wrong) for both, and only the images on which
they disagree carry information about which is better. So:

* :func:`wilson_interval` / :func:`accuracy_interval`: the Wilson score interval for one accuracy.
  Chosen over the Wald interval (``p +/- z*sqrt(p(1-p)/n)``), which collapses to zero width at 0% or
  100% and undercovers near the ends, which is exactly where a good classifier sits.
* :func:`mcnemar_exact`: McNemar's exact test on the discordant pairs. With ``b01`` images that
  A gets right and B wrong and ``b10`` the other way round, under "equally accurate"
  ``b01 ~ Bin(b01 + b10, 1/2)``; the two-sided p-value is ``min(1, 2 * P(X <= min(b01, b10)))``
  (the exact conditional test, not mid-p), and 1 when there are no discordant pairs. It equals
  ``scipy.stats.binomtest(min(b01, b10), b01 + b10, 0.5).pvalue`` and statsmodels'
  ``mcnemar(table, exact=True).pvalue``.
* :func:`holm_adjust`: Holm's step-down adjustment of a family of p-values (one test per class),
  which controls the family-wise error rate like Bonferroni, uniformly more powerful, and needs no
  independence between the tests. Equals statsmodels' ``multipletests(p, method="holm")[1]``.
* The confidence interval for the paired difference ``acc(A) - acc(B)`` is Newcombe's
  square-and-add interval for paired proportions (Newcombe 1998, Statistics in Medicine 17:2635,
  method 10; the one worked through in Altman et al., *Statistics with Confidence*, and in Fagerland,
  Lydersen & Laake, *Statistical Analysis of Contingency Tables*, ch. 8): the Wilson intervals of
  the two accuracies combined with the estimated correlation ``phi`` of the paired table, with
  Newcombe's correction of ``phi`` (``ad - bc`` replaced by ``max(ad - bc - n/2, 0)`` when
  positive). It is closed-form, deterministic, stays inside [-1, 1] and behaves at 0 or 100%
  accuracy, where the Wald interval for paired differences does not.

Dependencies: stdlib (exact integers, ``statistics.NormalDist``) and numpy only, no scipy, by
choice. This module is imported where reports are rebuilt (stdlib + numpy machines, like
:mod:`edgetl.pick.pareto`), and the two things scipy would provide are each a few exact lines: the
binomial tail at p = 1/2 is ``sum(comb(m, i) for i <= k) / 2**m`` in exact integer arithmetic (no
rounding until the final division), and the normal quantile is
``statistics.NormalDist().inv_cdf`` (Wichura's AS241, accurate to double precision). The tests
check both against values computed with scipy 1.17 and statsmodels 0.15.

The tail is summed exactly with big integers: about a millisecond for a few hundred discordant
images, 10 ms at ten thousand, about a second at a hundred thousand.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "McNemarResult",
    "accuracy_interval",
    "holm_adjust",
    "mcnemar_exact",
    "mcnemar_p_value",
    "significantly_worse",
    "wilson_interval",
]

#: The method names recorded in every :class:`McNemarResult` (and so in JSON reports).
TEST_METHOD = "exact McNemar (two-sided, doubled binomial tail on discordant pairs)"
CI_METHOD = "Newcombe square-and-add paired interval (Newcombe 1998, method 10)"


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _check_probability(value, name: str) -> float:
    """``value`` as a float strictly inside (0, 1), else a ValueError saying so."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a float in the open interval (0, 1), got {value!r}")
    value = float(value)
    if not (0.0 < value < 1.0):  # also False for nan
        raise ValueError(f"{name} must be a float in the open interval (0, 1), got {value!r}")
    return value


def _check_count(value, name: str) -> int:
    """``value`` as a non-negative int (bools and non-integral floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    value = int(value)
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _as_correct_mask(values, name: str) -> np.ndarray:
    """A 1-D bool array from an array-like of bools or of 0/1 numbers, else a ValueError.

    Accepted: bool arrays and lists, and integer or float arrays whose every value is exactly 0 or
    1 (what ``preds == labels`` or ``(preds == labels).astype(int)`` gives). Refused, with a message
    naming the argument: anything not 1-D, strings, None, NaN, and numbers other than 0 and 1
    (e.g. probabilities or class indices passed by mistake).
    """
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged nested lists, exotic objects
        raise ValueError(f"{name} must be a 1-D array-like of booleans (or 0/1), could not convert: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array-like of booleans (or 0/1), one per image; got an array of shape {arr.shape}"
        )
    if arr.dtype == np.bool_:
        return arr
    if arr.size == 0:
        return arr.astype(bool)  # [] has dtype float64; an empty mask is fine
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be a 1-D array-like of booleans (or 0/1), got dtype {arr.dtype}")
    bad = ~((arr == 0) | (arr == 1))  # NaN compares unequal to both, so it is bad too
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must contain only booleans or 0/1; got {arr[i].item()!r} at index {i} "
            f"({int(bad.sum())} invalid value(s) in total)"
        )
    return arr == 1


def _check_pair(a_correct, b_correct, a_name: str, b_name: str) -> tuple[np.ndarray, np.ndarray]:
    a = _as_correct_mask(a_correct, a_name)
    b = _as_correct_mask(b_correct, b_name)
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same length (one entry per test image, in the "
            f"same order); got {a.shape[0]} and {b.shape[0]}"
        )
    if a.size == 0:
        raise ValueError(f"{a_name} and {b_name} are empty: need at least one test image")
    return a, b


def _z(confidence: float) -> float:
    """The two-sided standard-normal quantile for ``confidence`` (1.959963984540054 at 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


# --------------------------------------------------------------------------------------------
# one accuracy
# --------------------------------------------------------------------------------------------


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` for the proportion ``correct / n``, as fractions.

    ``n == 0`` gives ``(nan, nan)``: no images, no information. The bounds are exactly 0.0 when
    ``correct == 0`` and exactly 1.0 when ``correct == n``.

    >>> [round(x, 4) for x in wilson_interval(81, 263)]
    [0.2553, 0.3662]
    """
    correct = _check_count(correct, "correct")
    n = _check_count(n, "n")
    if correct > n:
        raise ValueError(f"correct must be between 0 and n={n}, got {correct}")
    confidence = _check_probability(confidence, "confidence")
    if n == 0:
        return (math.nan, math.nan)
    z = _z(confidence)
    p = correct / n
    z2n = z * z / n
    center = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    low = 0.0 if correct == 0 else max(0.0, center - half)
    high = 1.0 if correct == n else min(1.0, center + half)
    return (low, high)


def accuracy_interval(correct_mask, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(accuracy, low, high)`` for a per-image correctness mask, with the Wilson interval.

    ``correct_mask`` is a 1-D array-like of bools (or 0/1), e.g. ``predictions == labels``. An
    empty mask gives ``(nan, nan, nan)``.
    """
    mask = _as_correct_mask(correct_mask, "correct_mask")
    n = int(mask.size)
    correct = int(mask.sum())
    low, high = wilson_interval(correct, n, confidence)
    return (correct / n if n else math.nan, low, high)


# --------------------------------------------------------------------------------------------
# two classifiers on the same images
# --------------------------------------------------------------------------------------------


def _binom_half_cdf(k: int, m: int) -> float:
    """``P(X <= k)`` for ``X ~ Bin(m, 1/2)``, summed exactly in integers, rounded once.

    Each binomial coefficient comes from the previous one (``C(m, i+1) = C(m, i) * (m-i) / (i+1)``,
    an exact integer division), so the sum is k cheap big-integer steps rather than k calls to
    ``math.comb``.
    """
    term = total = 1  # C(m, 0)
    for i in range(k):
        term = term * (m - i) // (i + 1)
        total += term
    return total / (1 << m)


def mcnemar_p_value(b01: int, b10: int) -> float:
    """Exact two-sided McNemar p-value from the two discordant counts.

    ``min(1, 2 * P(X <= min(b01, b10)))`` with ``X ~ Bin(b01 + b10, 1/2)``; 1.0 when
    ``b01 + b10 == 0``. E.g. ``(0, 5) -> 0.0625``, ``(1, 9) -> 0.021484375``.
    """
    b01 = _check_count(b01, "b01")
    b10 = _check_count(b10, "b10")
    m = b01 + b10
    if m == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_half_cdf(min(b01, b10), m))


def _newcombe_paired_interval(both: int, b01: int, b10: int, neither: int, confidence: float) -> tuple[float, float]:
    """Newcombe's (1998, method 10) interval for ``p1 - p2`` from a paired 2x2 table.

    Table: ``both`` = right for A and B, ``b01`` = A right / B wrong, ``b10`` = A wrong / B right,
    ``neither`` = wrong for both. ``p1 = (both + b01)/n`` is A's accuracy, ``p2 = (both + b10)/n``
    B's.
    """
    n = both + b01 + b10 + neither
    a_right, a_wrong = both + b01, b10 + neither
    b_right, b_wrong = both + b10, b01 + neither
    p1, p2 = a_right / n, b_right / n
    diff = (b01 - b10) / n
    l1, u1 = wilson_interval(a_right, n, confidence)
    l2, u2 = wilson_interval(b_right, n, confidence)

    # phi: the correlation of the two correctness indicators, with Newcombe's continuity
    # correction of a positive numerator; 0 when either classifier is constant on these images.
    phi = 0.0
    if a_right and a_wrong and b_right and b_wrong:
        cross = both * neither - b01 * b10
        if cross > n / 2:
            cross -= n / 2
        elif cross > 0:
            cross = 0
        phi = cross / math.sqrt(a_right * a_wrong * b_right * b_wrong)

    d1, e1 = p1 - l1, u1 - p1  # how far A's Wilson interval reaches below / above p1
    d2, e2 = p2 - l2, u2 - p2
    low = diff - math.sqrt(max(0.0, d1 * d1 - 2.0 * phi * d1 * e2 + e2 * e2))
    high = diff + math.sqrt(max(0.0, d2 * d2 - 2.0 * phi * d2 * e1 + e1 * e1))
    return (max(-1.0, low), min(1.0, high))


@dataclass(frozen=True)
class McNemarResult:
    """A paired comparison of classifiers A and B on the same ``n`` images.

    Accuracies are fractions (0..1); the difference ``accuracy_a - accuracy_b`` and its interval
    are in percentage points (``diff_points = 2.5`` means A is 2.5 points more accurate).
    """

    n: int  # images compared
    both_correct: int
    b01: int  # A right, B wrong
    b10: int  # A wrong, B right
    both_wrong: int
    accuracy_a: float
    accuracy_b: float
    diff_points: float  # 100 * (accuracy_a - accuracy_b)
    diff_low_points: float  # paired confidence interval for diff_points
    diff_high_points: float
    p_value: float  # exact McNemar, two-sided
    confidence: float = 0.95
    test: str = TEST_METHOD
    ci_method: str = CI_METHOD

    @property
    def discordant(self) -> int:
        """Images on which A and B disagree (the only ones that inform the test)."""
        return self.b01 + self.b10

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (ints, floats, strings) of every field."""
        return asdict(self)


def mcnemar_exact(a_correct, b_correct, confidence: float = 0.95) -> McNemarResult:
    """Compare classifiers A and B scored on the same images, in the same order.

    ``a_correct[i]`` / ``b_correct[i]`` say whether A / B got image ``i`` right (1-D array-likes of
    bools or 0/1, equal length, at least one image). Returns the paired table, the exact two-sided
    McNemar p-value, and ``100 * (acc(A) - acc(B))`` with its Newcombe square-and-add paired
    interval at ``confidence`` (see the module docstring). Swapping A and B keeps the p-value and
    negates the difference and its interval.
    """
    a, b = _check_pair(a_correct, b_correct, "a_correct", "b_correct")
    confidence = _check_probability(confidence, "confidence")
    n = int(a.size)
    both = int(np.count_nonzero(a & b))
    b01 = int(np.count_nonzero(a & ~b))
    b10 = int(np.count_nonzero(~a & b))
    neither = n - both - b01 - b10
    low, high = _newcombe_paired_interval(both, b01, b10, neither, confidence)
    return McNemarResult(
        n=n,
        both_correct=both,
        b01=b01,
        b10=b10,
        both_wrong=neither,
        accuracy_a=(both + b01) / n,
        accuracy_b=(both + b10) / n,
        diff_points=100.0 * (b01 - b10) / n,
        diff_low_points=100.0 * low,
        diff_high_points=100.0 * high,
        p_value=mcnemar_p_value(b01, b10),
        confidence=confidence,
    )


def significantly_worse(candidate_correct, reference_correct, alpha: float = 0.05) -> bool:
    """True when the candidate is less accurate than the reference on the same images AND the
    exact McNemar test rejects "equally accurate" at level ``alpha`` (``p < alpha``).

    A candidate that is only a few images behind is *not* significantly worse: that is noise.
    """
    alpha = _check_probability(alpha, "alpha")
    result = mcnemar_exact(candidate_correct, reference_correct)
    # candidate is A: it is behind when it wins fewer discordant images than it loses
    return result.b01 < result.b10 and result.p_value < alpha


def holm_adjust(p_values) -> list[float]:
    """Holm-adjusted p-values, in the order given: reject test ``i`` at family-wise level ``alpha`` when
    ``adjusted[i] < alpha``.

    Sorted ascending, the ``j``-th smallest (0-based) of ``m`` is multiplied by ``m - j``, capped at 1, and
    made non-decreasing along the sorted order (Holm 1979). Ties keep their input order. Empty in, empty out.

    >>> holm_adjust([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    values = []
    for i, p in enumerate(p_values):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (0.0 <= float(p) <= 1.0):
            raise ValueError(f"p_values[{i}] must be a probability in [0, 1], got {p!r}")
        values.append(float(p))
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for j, i in enumerate(sorted(range(m), key=lambda k: values[k])):
        running = max(running, min(1.0, (m - j) * values[i]))
        adjusted[i] = running
    return adjusted
