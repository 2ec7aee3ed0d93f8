"""The recovery ladder: when an int8 or dynamic-range file fails its check (overall or per class), the next
artifacts to try.

Rungs, in order, until one passes its check: tflite-int8-mixed (int8 with the layers of largest quantization
error kept in float, `edgetl.export.tflite_mixed`), tflite-int16x8 (int16 activations, int8 weights), then
tflite-float16. Each rung tried is a real artifact (converted, with metadata, checked, and in a sweep
benchmarked and on the front), so the pick weighs what recovery costs in latency and size. A rung that was
requested on its own (`--formats ...,tflite-int16x8`) is not converted twice: its result is read.
`ExportConfig.quantization_ladder = False` (`--quantization_ladder off`) keeps the formats as requested.

`walk` decides the next step from export.json alone, so `climb` (`edgetl export`) and both sweep executors
(through `edgetl.sweep.plan.PointPlan.next_rung`) take the same steps, whichever process converts them.
export.json records, on each failed int8 entry, `ladder: {tried: [...], recovered_by: rung | null}`, and on
each rung it converted, `rung_for: [failed formats]`.
"""

from __future__ import annotations

from pathlib import Path

from edgetl.export.config import ExportConfig
from edgetl.export.formats import FORMATS, LADDER_TRIGGERS
from edgetl.export.inputs import RunInputs
from edgetl.export.run import ExportResult, Log, export_format, merge_export_entry, read_export_summary

LADDER = ("tflite-int8-mixed", "tflite-int16x8", "tflite-float16")
TRIGGERS = LADDER_TRIGGERS


def failed_int8(summary: dict, formats) -> list[str]:
    """The requested int8 and dynamic-range formats whose check failed (export.json `summary` entries)."""
    return [
        f
        for f in formats
        if FORMATS[f].quantization in TRIGGERS and str(summary.get(f, {}).get("status", "")).startswith("check failed")
    ]


def rungs(summary: dict) -> list[str]:
    """The ladder formats a point's export.json holds because the ladder converted them."""
    return [f for f in LADDER if summary.get(f, {}).get("rung_for")]


def walk(summary: dict, formats, converted) -> tuple[list[str], str | None, str | None]:
    """(the rungs tried so far, the one that recovered or None, the next rung to convert or None).

    `formats` are the requested formats (a requested rung is read, not converted), `converted` the rungs this
    export has converted so far. Nothing to do when no requested int8 file failed."""
    if not failed_int8(summary, formats):
        return [], None, None
    tried: list[str] = []
    for rung in LADDER:
        if rung not in formats and rung not in converted:
            return tried, None, rung
        tried.append(rung)
        if summary.get(rung, {}).get("status") == "ok":
            return tried, rung, None
    return tried, None, None


def mark_rung(run_dir: Path, rung: str, formats) -> None:
    """Record on a rung's export.json entry the failed formats it was converted for."""
    summary = read_export_summary(run_dir)
    if rung in summary:
        merge_export_entry(run_dir, rung, {**summary[rung], "rung_for": failed_int8(summary, formats)})


def record_outcome(run_dir: Path, formats, converted, log: Log) -> None:
    """Once `walk` has no next rung: record on each failed entry what the ladder tried and which rung recovered
    (nothing written or said when that is already recorded)."""
    summary = read_export_summary(run_dir)
    tried, recovered, _ = walk(summary, formats, converted)
    failed = failed_int8(summary, formats)
    if not failed:
        return
    record = {"tried": tried, "recovered_by": recovered}
    if all(summary[f].get("ladder") == record for f in failed):
        return  # recorded by an earlier call (a resumed sweep)
    outcome = f"recovered by {recovered}" if recovered else "no rung passed"
    log(f"quantization ladder: {outcome} (tried {', '.join(tried)})")
    for f in failed:
        merge_export_entry(run_dir, f, {**summary[f], "ladder": record})


def climb(inputs: RunInputs, config: ExportConfig, log: Log) -> list[ExportResult]:
    """Try the rungs for this run's failed int8 formats; returns the results of the rungs it converted."""
    if not config.quantization_ladder:
        return []
    made: list[ExportResult] = []
    while True:
        summary = read_export_summary(inputs.run_dir)
        _, _, rung = walk(summary, config.formats, [r.format for r in made])
        if rung is None:
            break
        log(f"{', '.join(failed_int8(summary, config.formats))} failed its check: trying {rung}")
        made.append(export_format(inputs, rung, config, log))
        mark_rung(inputs.run_dir, rung, config.formats)
    record_outcome(inputs.run_dir, config.formats, [r.format for r in made], log)
    return made
