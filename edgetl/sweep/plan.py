"""The plan of a sweep, executed by both executors (`edgetl.sweep.local` in-process, `edgetl.sweep.ray_driver`
on Ray): what each grid point still needs, decided from what is on disk, and the one failure policy.

A point's units depend on each other in one order: train -> export (one per format) -> bench (one per
artifact). `plan_point` reads the point's record (`edgetl.sweep.state`) once and says which of them are
finished: a finished train unit gives its run.json, `PointPlan.exports` the formats still to convert,
`PointPlan.bench` each format's saved row or the key its measurement will carry. Only where and when the
units run differs between the executors. The fine-tuning pass is a second plan over the first pass's
front (`fine_tune_pass`), its points named "<id>-ft" and its units recorded with pass "fine-tune".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgetl.export import ladder, read_export_summary
from edgetl.features.backbones import BackboneSpec, ResolvedWeights, WeightsNotFoundError, resolve_weights
from edgetl.io.files import DiskError, one_line
from edgetl.measure.results import ArtifactResult
from edgetl.pick.pareto import pareto_front
from edgetl.sweep.config import SweepConfig, bench_key, export_keys, point_dir, point_name, train_key
from edgetl.sweep.state import export_todo, finished_train, read_state, record_export, record_train, settled_row


class SweepStopped(RuntimeError):
    """An error that ends the whole sweep rather than one point (finished units stay on disk)."""


@dataclass
class PointPlan:
    """One grid point of one pass: its settings' keys, its record on disk, and what is finished."""

    config: SweepConfig
    spec: BackboneSpec
    weights: ResolvedWeights
    train_key: str
    keys: dict[str, str]  # each format's export key
    state: dict  # the point's sweep_state.json
    run: dict | None  # run.json when the train unit is finished (None: it must run)

    @property
    def name(self) -> str:
        return point_name(self.config, self.spec)

    def trained(self) -> None:
        """Record a finished train unit: a new training invalidates every export and benchmark."""
        self.state = record_train(self.config, self.spec, self.train_key)

    def exports(self) -> list[str]:
        """The formats whose export unit must run (every format after a new training)."""
        return export_todo(self.config, self.spec, self.keys, self.state)

    def climbed(self, summary: dict | None = None) -> list[str]:
        """The quantization ladder's rungs this point's export converted (recorded with their current key)."""
        asked = self.config.export.formats
        summary = read_export_summary(point_dir(self.config, self.spec)) if summary is None else summary
        return [f for f in ladder.rungs(summary) if f not in asked and self.state["export"].get(f) == self.keys[f]]

    def bench_formats(self) -> list[str]:
        """The formats to benchmark: those asked for, then the quantization ladder's rungs this point's export
        converted (`edgetl.export.ladder`)."""
        return list(self.config.export.formats) + self.climbed()

    # The ladder, as both executors climb it: once the formats asked for are exported, `next_rung` until None.

    def next_rung(self) -> str | None:
        """The ladder's next rung to export for this point's failed int8 files (None: nothing left to try)."""
        if not self.config.export.quantization_ladder:
            return None
        summary = read_export_summary(point_dir(self.config, self.spec))
        return ladder.walk(summary, self.config.export.formats, self.climbed(summary))[2]

    def rung_exported(self, rung: str) -> None:
        """Record a rung's finished export unit: the failed formats it was for, and its key."""
        ladder.mark_rung(point_dir(self.config, self.spec), rung, self.config.export.formats)
        record_export(self.config, self.spec, rung, self.keys[rung], self.state)

    def ladder_finished(self, log) -> None:
        """Record on the failed entries what the ladder tried and which rung recovered (once: idempotent)."""
        if self.config.export.quantization_ladder:
            ladder.record_outcome(point_dir(self.config, self.spec), self.config.export.formats, self.climbed(), log)

    def bench(self, fmt: str) -> tuple[ArtifactResult | None, dict, str]:
        """(the format's settled row or None when its bench unit must run, its export.json entry, its bench key)."""
        entry = read_export_summary(point_dir(self.config, self.spec)).get(fmt, {})
        key = bench_key(self.config, self.keys[fmt])
        return settled_row(self.config, self.spec, fmt, entry, key, self.state), entry, key


def plan_point(config: SweepConfig, spec: BackboneSpec) -> PointPlan:
    """The point's plan from what is on disk. Raises WeightsNotFoundError when the point has no weights."""
    state = read_state(config, spec)
    weights = resolve_weights(spec, config.features.weights, config.features.weights_dir)
    trained = train_key(config, spec, weights)
    run = finished_train(config, spec, state, trained)
    return PointPlan(config, spec, weights, trained, export_keys(config, trained), state, run)


def pass_name(config: SweepConfig) -> str:
    return "fine-tune" if config.fine_tune else "head"


def unit_record(config: SweepConfig, kind: str, spec: BackboneSpec, fmt: str = "", **where) -> dict:
    """A finished unit as ray_units.json lists it: the same point names and the pass, in both executors."""
    return {"unit": kind, "point": point_name(config, spec), "format": fmt, "pass": pass_name(config), **where}


def fine_tune_pass(config: SweepConfig, results: list[ArtifactResult]) -> SweepConfig | None:
    """The config that fine-tunes the `fine_tune_front` most accurate points of the head-only front
    (None when there is nothing to fine-tune)."""
    if not config.fine_tune_front or not results:
        return None
    front = sorted(pareto_front(results), key=lambda r: (-r.accuracy, r.latency_ms_p50))
    chosen = list(dict.fromkeys((r.backbone, r.alpha, r.resolution) for r in front))[: config.fine_tune_front]
    if not chosen:
        return None
    points = tuple(BackboneSpec(version, alpha, resolution) for version, alpha, resolution in chosen)
    return replace(config, points=points, fine_tune=config.fine_tune_settings, fine_tune_front=0)


# ---------------------------------------------------------------------------------------------------------
# the failure policy: one broken unit fails its point alone; a disk error or a stopped sweep ends the sweep


ENDS_THE_SWEEP = (DiskError, SweepStopped)


def note_failure(what: str, e: BaseException, notes: list[str], say, fatal: tuple = ENDS_THE_SWEEP) -> None:
    """Note why `what` (a point, or one of its units) produced nothing, or re-raise what ends the sweep
    (`fatal`): a disk error of this process (the next unit would hit the same disk) or a `SweepStopped`. A
    point without weights is skipped; any other error fails that unit of its point alone, finished units
    kept. (A Ray node's disk error fails its unit only: the executor passes `fatal=()` for task errors.)"""
    if isinstance(e, fatal):
        raise e
    if isinstance(e, WeightsNotFoundError):
        first_line = str(e).splitlines()[0]
        notes.append(f"{what} skipped: {first_line}")
        say(f"skipping {what}: {first_line}")
        return
    note = f"{what} failed: {type(e).__name__}: {one_line(e)}"
    notes.append(note)
    say(note)


def attempt(what: str, work, notes: list[str], say):
    """work(), or None when it failed (noted by `note_failure`, which re-raises what ends the sweep)."""
    try:
        return work()
    except Exception as e:
        note_failure(what, e, notes, say)
        return None
