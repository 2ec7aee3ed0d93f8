"""Parameter constraints declared once per config, and the one validator (scikit-learn's way, in small).

Each frozen config dataclass lists its constraints in a class-level table, `CONSTRAINTS` (field name ->
`Interval` or `OneOf`), and calls `validate(self)` first thing in `__post_init__`; only rules between
fields are written by hand after it. The error names the field, the valid range and the value. The tests
generate invalid values from the same tables (`invalid_examples`), so a new field is tested on arrival.
Stdlib only: every stage imports it, the device side included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_BRACKETS = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


@dataclass(frozen=True)
class Interval:
    """A number in a range. `kind` int: whole numbers only (True/False and 2.5 are refused); float: any
    finite real number (NaN and infinities refused). `low`/`high` None: unbounded on that side. `closed`
    says which ends belong to the range. `none_ok`: None is valid too (the field is optional)."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"
    none_ok: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.none_ok
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return low_ok and high_ok

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            left, right = _BRACKETS[self.closed]
            text = f"{what} in {left}{self.low:g}, {self.high:g}{right}"
        elif self.low is not None:
            text = f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}"
        elif self.high is not None:
            text = f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}"
        else:
            text = what
        return text + (" or None" if self.none_ok else "")

    def invalid_examples(self) -> list[Any]:
        """Values this constraint refuses: each side's first value outside, a wrong type, NaN, a bool."""
        step = 1 if self.kind is int else 1e-6
        bad: list[Any] = ["3", float("nan"), True]
        if self.low is not None:
            bad.append(self.low if self.closed in ("right", "neither") else self.low - step)
        if self.high is not None:
            bad.append(self.high if self.closed in ("left", "neither") else self.high + step)
        if self.kind is int:
            bad.append((self.low if self.low is not None else 0) + 1.5)
        if not self.none_ok:
            bad.append(None)
        return [v for v in bad if not self.accepts(v)]


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values (`none_ok`: or None)."""

    options: tuple
    none_ok: bool = False

    def accepts(self, value: Any) -> bool:
        return (value is None and self.none_ok) or (value is not None and value in self.options)

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.options)) + (" or None" if self.none_ok else "")

    def invalid_examples(self) -> list[Any]:
        return ["not-an-option"] + ([] if self.none_ok else [None])


Constraint = Interval | OneOf


def validate(config: Any, error: type[Exception] = ValueError, prefix: str = "") -> None:
    """Check every field of `config` that its class's `CONSTRAINTS` table names; `error` (a ValueError
    subclass of the stage, e.g. ExportError) names the field (after `prefix`), the valid range and the value."""
    for name, constraint in type(config).CONSTRAINTS.items():
        value = getattr(config, name)
        if not constraint.accepts(value):
            raise error(f"{prefix}{name} must be {constraint.describe()}, got {value!r}")
