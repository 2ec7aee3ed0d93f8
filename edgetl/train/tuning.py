"""Head settings chosen on validation, then the head refit on all the labelled data.

A small grid over learning rate, weight decay, dropout and label smoothing, each point a numpy fit on the
cached features (the points that share their batches are trained together, `train_heads`). The rule that picks
one keeps the promise "the defaults need no flags": among the settings whose validation accuracy is at least
that of the given settings (today's fixed ones unless flags say otherwise), the one with the lowest validation
cross-entropy wins. Cross-entropy decides rather than accuracy because it uses every probability, so it is far
less noisy on a few hundred images than a count of right answers; the accuracy floor means the choice is never
worse on validation.

Refit: with the settings and the number of steps chosen, the head is trained again on train + validation
for the same number of epochs (the test split stays untouched), since 10 % more photos is worth more
than the early-stopping signal once the step count is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np
from tqdm import tqdm

from edgetl.io.quiet import bars_off
from edgetl.train.head import HEAD_FIELDS, PER_HEAD, Head, HeadConfig, accuracy, cross_entropy, train_head, train_heads

#: The searched HeadConfig fields, in table order.
SEARCHED = ("learning_rate", "l2", "dropout", "label_smoothing")


@dataclass(frozen=True)
class TuneConfig:
    """Which head settings to try on validation (one value per field: that field is fixed) and whether to
    refit on train + validation afterwards."""

    search: bool = True
    refit: bool = True
    learning_rate: tuple[float, ...] = (0.001, 0.003)
    l2: tuple[float, ...] = (0.0, 1e-4, 1e-3)
    dropout: tuple[float, ...] = (0.0, 0.3)
    label_smoothing: tuple[float, ...] = (0.0, 0.1)

    def __post_init__(self) -> None:
        for name in SEARCHED:
            values = tuple(float(v) for v in getattr(self, name))
            if not values:
                raise ValueError(f"the search over {name} needs at least one value")
            object.__setattr__(self, name, values)
            for v in values:
                replace(HeadConfig(), **{name: v})  # HeadConfig says what is valid

    def fixing(self, **fixed: float) -> TuneConfig:
        """The same search with the given fields held at one value (flags the user set win)."""
        return replace(self, **{k: (v,) for k, v in fixed.items()})

    def candidates(self, base: HeadConfig) -> list[HeadConfig]:
        """Every combination, with the given settings always among them (the accuracy floor)."""
        axes = [tuple(dict.fromkeys((getattr(base, n),) + getattr(self, n))) for n in SEARCHED]
        if not self.search:
            axes = [(getattr(base, n),) for n in SEARCHED]
        return [replace(base, **dict(zip(SEARCHED, values))) for values in product(*axes)]


@dataclass
class HeadFit:
    head: Head  # the head to deploy: refit on train + validation, or the chosen head
    chosen: HeadConfig
    selected: Head  # the chosen settings' head trained on the training split (its validation figures hold)
    table: list[dict] = field(default_factory=list)  # one row per candidate
    refit_steps: int | None = None
    histories: list[list[dict]] = field(default_factory=list)  # each candidate's evaluations, in table order
    replay: Callable[[int], Head] | None = None  # the deployed head's training, stopped after that many steps
    trained_steps: int = 0  # how many steps the deployed head's training ran

    def summary(self, base: HeadConfig) -> dict:
        """run.json's "tuning"."""
        return {
            "searched": list(SEARCHED),
            "given": {n: getattr(base, n) for n in SEARCHED},
            "chosen": {n: getattr(self.chosen, n) for n in SEARCHED},
            "rule": (
                "lowest validation cross-entropy among settings at least as accurate on validation as the given ones"
            ),
            "table": self.table,
            "refit_steps": self.refit_steps,
        }


def _row(config: HeadConfig, head: Head, val: tuple) -> dict:
    val_x, val_y = val
    probs = head.predict_proba(val_x)
    return {
        **{n: getattr(config, n) for n in SEARCHED},
        "best_step": head.best_step,
        "validation_accuracy": accuracy(probs, val_y),
        "validation_cross_entropy": cross_entropy(probs, val_y),
    }


def choose(table: list[dict], baseline: int = 0) -> int:
    """Index of the winning row: the lowest cross-entropy among rows at least as accurate as `baseline`."""
    floor = table[baseline]["validation_accuracy"]
    eligible = [i for i, r in enumerate(table) if r["validation_accuracy"] >= floor]
    return min(eligible, key=lambda i: (table[i]["validation_cross_entropy"], i))


def _fit_candidates(candidates: list[HeadConfig], train: tuple, val: tuple, num_classes: int, log) -> list[Head]:
    """One head per candidate, in order. Candidates that differ only in PER_HEAD settings are trained
    together (`train_heads`: the same heads, sooner than one by one)."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault(tuple(getattr(c, f) for f in HEAD_FIELDS if f not in PER_HEAD), []).append(i)
    heads: list[Head | None] = [None] * len(candidates)
    with tqdm(
        total=len(candidates), desc="head settings", unit="fit", leave=False, disable=len(candidates) < 2 or bars_off()
    ) as bar:
        for members in groups.values():
            fitted = train_heads(*train, *val, num_classes, [candidates[i] for i in members], log=log)
            for i, head in zip(members, fitted):
                heads[i] = head
            bar.update(len(members))
    return heads


def fit_head(
    train: tuple,
    val: tuple,
    num_classes: int,
    base: HeadConfig = HeadConfig(),
    tune: TuneConfig = TuneConfig(),
    log=print,
    extra_train: tuple | None = None,
) -> HeadFit:
    """Search, choose, refit. `train`/`val` are (features, labels); `extra_train` (augmented views of the
    training images) joins the training set of every fit but is never validated on."""
    train_x, train_y = train
    if extra_train is not None and len(extra_train[0]):
        train_x, train_y = np.concatenate([train_x, extra_train[0]]), np.concatenate([train_y, extra_train[1]])
    val_x, val_y = val
    has_val = len(val_y) > 0
    candidates = tune.candidates(base) if has_val else [base]
    quiet = lambda _msg: None  # noqa: E731
    heads = _fit_candidates(candidates, (train_x, train_y), val, num_classes, log if len(candidates) == 1 else quiet)
    table = [_row(c, h, val) if has_val else {n: getattr(c, n) for n in SEARCHED} for c, h in zip(candidates, heads)]
    best = choose(table) if has_val else 0
    chosen, selected = candidates[best], heads[best]
    if len(candidates) > 1:
        r = table[best]
        log(
            f"head settings: {len(candidates)} tried on validation; chosen "
            + ", ".join(f"{n} {getattr(chosen, n):g}" for n in SEARCHED)
            + f" ({r['validation_accuracy']:.1%}, cross-entropy {r['validation_cross_entropy']:.4f}; the given "
            f"settings: {table[0]['validation_accuracy']:.1%}, {table[0]['validation_cross_entropy']:.4f})"
        )
    fit = HeadFit(selected, chosen, selected, table, histories=[h.history for h in heads])
    # A head's weights after k steps are those of the same fit stopped at k (the batches and dropout masks
    # depend on the seed and the step only), which is how retrain's intermediate graphs are made.
    fit.replay = lambda steps: train_head(train_x, train_y, *val, num_classes, chosen, log=quiet, fixed_steps=steps)
    fit.trained_steps = selected.history[-1]["step"] if selected.history else 0
    if tune.refit and has_val:
        all_x, all_y = np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y])
        # As many epochs as early stopping chose: steps grow with the images.
        fit.refit_steps = max(1, math.ceil(selected.best_step * len(all_y) / len(train_y)))
        fit.replay = lambda steps: train_head(
            all_x, all_y, val_x[:0], val_y[:0], num_classes, chosen, log=quiet, fixed_steps=steps
        )
        fit.head, fit.trained_steps = fit.replay(fit.refit_steps), fit.refit_steps
        log(f"refit on train + validation ({len(all_y)} images) for {fit.refit_steps} steps")
    return fit
