"""The recovery ladder: when an int8 or dynamic-range file fails its check (overall or per class), the next
artifacts to try.

Rungs, in order, until one passes its check: tflite-int16x8 (int16 activations, int8 weights), then
tflite-float16. Each rung tried is a real artifact (converted, with metadata, checked, and in a sweep
benchmarked and on the front), so the pick weighs what recovery costs in latency and size. A rung that was
requested on its own (`--formats ...,tflite-int16x8`) is not converted twice: its result is read.
`ExportConfig.quantization_ladder = False` (`--quantization_ladder off`) keeps the formats as requested.

export.json records, on each failed int8 entry, `ladder: {tried: [...], recovered_by: rung | null}`, and on
each rung it converted, `rung_for: [failed formats]`.
"""

from __future__ import annotations

from edgetl.export.config import ExportConfig
from edgetl.export.formats import FORMATS
from edgetl.export.inputs import RunInputs
from edgetl.export.run import ExportResult, Log, export_format, merge_export_entry, read_export_summary

LADDER = ("tflite-int16x8", "tflite-float16")
TRIGGERS = ("int8", "dynamic")  # the quantizations whose failed check starts the ladder (int8 weights)


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


def climb(inputs: RunInputs, config: ExportConfig, log: Log) -> list[ExportResult]:
    """Try the rungs for this run's failed int8 formats; returns the results of the rungs it converted."""
    summary = read_export_summary(inputs.run_dir)
    failed = failed_int8(summary, config.formats)
    if not failed or not config.quantization_ladder:
        return []
    tried, recovered, made = [], None, []
    for rung in LADDER:
        tried.append(rung)
        if rung in config.formats:
            ok = summary.get(rung, {}).get("status") == "ok"
        else:
            log(f"{', '.join(failed)} failed its check: trying {rung}")
            result = export_format(inputs, rung, config, log)
            merge_export_entry(inputs.run_dir, rung, {**read_export_summary(inputs.run_dir)[rung], "rung_for": failed})
            made.append(result)
            ok = result.ok
        if ok:
            recovered = rung
            break
    outcome = f"recovered by {recovered}" if recovered else "no rung passed"
    log(f"quantization ladder: {outcome} (tried {', '.join(tried)})")
    now = read_export_summary(inputs.run_dir)
    for f in failed:
        merge_export_entry(inputs.run_dir, f, {**now[f], "ladder": {"tried": tried, "recovered_by": recovered}})
    return made
