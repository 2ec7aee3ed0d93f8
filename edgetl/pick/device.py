"""Re-pick on the latencies a device measured itself (`device_bench.py` from `edgetl bundle`).

A device JSON replaces the host's latency, start-up and memory figures of the artifacts it measured;
accuracy stays the host's (the device's own top-1 and its agreement with the host are reported beside
it). Artifacts the device did not measure get an estimate from a per-format fit of device latency
against MACs (a power law, ``log latency = a + b log MACs``, with three or more measured artifacts of
that format), or else from the median device/host latency ratio; the fit's leave-one-out error is
reported, and estimated cells are marked, so a pick that rests on an estimate says so.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.measure.results import ArtifactResult
from edgetl.measure.timing import BUSY_OTHER_CORES
from edgetl.pick.pareto import RUNTIME_NAMES, pick_all
from edgetl.pick.report import write_report

DEVICE_KIND = "edgetl-device-results"
MIN_POINTS_FOR_FIT = 3


@dataclass(frozen=True)
class DeviceResults:
    device: dict  # name, machine, cpu, cores, os, python, runtimes
    rows: list[dict]  # one per artifact and thread count, as device_bench.py writes them

    @property
    def name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(self.device.get("name") or "device"))


@dataclass(frozen=True)
class LatencyFit:
    """How estimated latencies were made for one format, and how well that predicts measured ones."""

    format: str
    method: str  # "power law in MACs" | "device/host ratio" | "device/host ratio of the other formats"
    measured: int
    loo_median_error: float | None  # leave-one-out |predicted - measured| / measured; None below 2 points
    loo_max_error: float | None


def read_device_results(path: str | Path) -> DeviceResults:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read device results {path}: {e}") from e
    if not isinstance(data, dict) or data.get("kind") != DEVICE_KIND:
        raise ValueError(
            f'{path} is not an edgetl device results file (no "kind": "{DEVICE_KIND}"); '
            "make one with device_bench.py from `edgetl bundle`"
        )
    return DeviceResults(data.get("device") or {}, [r for r in data.get("results", []) if isinstance(r, dict)])


def _predict(method: str, train: list[ArtifactResult], measured: dict, target: ArtifactResult) -> float:
    if method.startswith("power law"):
        x = np.log([max(r.macs, 1) for r in train])
        y = np.log([measured[r.identity] for r in train])
        slope, intercept = np.polyfit(x, y, 1)
        return float(math.exp(intercept + slope * math.log(max(target.macs, 1))))
    ratios = [measured[r.identity] / r.latency_ms_p50 for r in train if r.latency_ms_p50 > 0]
    return float(target.latency_ms_p50 * (np.median(ratios) if ratios else 1.0))


def fit_format(fmt: str, rows: list[ArtifactResult], measured: dict) -> tuple[LatencyFit, list[ArtifactResult]]:
    """The fit for one format from the rows the device measured (`measured`: identity -> device p50)."""
    train = [r for r in rows if r.format == fmt and r.identity in measured]
    distinct_macs = len({r.macs for r in train})
    method = "power law in MACs" if len(train) >= MIN_POINTS_FOR_FIT and distinct_macs >= 2 else "device/host ratio"
    if method == "device/host ratio" and not train:  # borrow every format's ratio
        train = [r for r in rows if r.identity in measured]
        method = "device/host ratio of the other formats"
    errors = []
    for held_out in train if len(train) >= 2 else []:
        rest = [r for r in train if r is not held_out]
        if method.startswith("power law") and len({r.macs for r in rest}) < 2:
            continue
        predicted = _predict(method, rest, measured, held_out)
        errors.append(abs(predicted - measured[held_out.identity]) / measured[held_out.identity])
    fit = LatencyFit(
        fmt,
        method,
        len([r for r in train if r.format == fmt]),
        float(np.median(errors)) if errors else None,
        float(max(errors)) if errors else None,
    )
    return fit, train


def _measured_row(host: ArtifactResult, d: dict) -> ArtifactResult:
    return replace(
        host,
        latency_ms_p50=d["latency_ms_p50"],
        latency_ms_p90=d["latency_ms_p90"],
        latency_ms_p99=d["latency_ms_p99"],
        latency_ms_mean=d["latency_ms_mean"],
        load_ms=d.get("load_ms"),
        first_inference_ms=d.get("first_inference_ms"),
        peak_rss_mib=d.get("peak_rss_mib", host.peak_rss_mib),
        num_threads=d["num_threads"],
        other_cpu_cores=d.get("other_cpu_cores"),
        cpu_int8_dot=d.get("cpu_int8_dot"),
        latency_source="device",
        warning="" if (d.get("other_cpu_cores") or 0) <= BUSY_OTHER_CORES else "busy device while timed",
    )


def device_rows(
    host_rows: list[ArtifactResult], results: DeviceResults, num_threads: int
) -> tuple[list[ArtifactResult], list[LatencyFit]]:
    """The host rows with this device's latencies at `num_threads`, estimated where it measured none.

    Artifacts the device could not run at all (no runtime for them there) are left out.
    """
    cannot_run = {(d["point"], d["format"]) for d in results.rows if str(d.get("status", "")).startswith("skipped")}
    ok = [r for r in host_rows if r.ok and (r.point, r.format) not in cannot_run]
    by_key = {
        (d["point"], d["format"]): d
        for d in results.rows
        if d.get("status") == "ok" and d.get("num_threads") == num_threads
    }
    measured = {r.identity: by_key[(r.point, r.format)]["latency_ms_p50"] for r in ok if (r.point, r.format) in by_key}
    if not measured:
        raise ValueError(
            f"device {results.name} measured none of the sweep's artifacts at {num_threads} thread(s); "
            f"it has thread counts {sorted({d['num_threads'] for d in results.rows if 'num_threads' in d})}"
        )
    rows, fits = [], []
    for fmt in sorted({r.format for r in ok}):
        fit, train = fit_format(fmt, ok, measured)
        fits.append(fit)
        for r in (x for x in ok if x.format == fmt):
            if r.identity in measured:
                rows.append(_measured_row(r, by_key[(r.point, r.format)]))
                continue
            p50 = _predict(fit.method, train, measured, r)
            scale = p50 / r.latency_ms_p50 if r.latency_ms_p50 > 0 else 1.0
            rows.append(
                replace(
                    r,
                    latency_ms_p50=p50,
                    latency_ms_p90=r.latency_ms_p90 * scale,
                    latency_ms_p99=r.latency_ms_p99 * scale,
                    latency_ms_mean=r.latency_ms_mean * scale,
                    num_threads=num_threads,
                    latency_source="estimate",
                    load_ms=None,
                    first_inference_ms=None,
                )
            )
    return rows, fits


def divergent(results: DeviceResults) -> list[str]:
    """One line per artifact whose answers on the device differ from the host's: its self-check on the golden
    images failed there (device_bench.py runs it first), or it could not be run on a file that has them."""
    lines, seen = [], set()
    for r in results.rows:
        check = r.get("self_check") or {}
        key = (r.get("point"), r.get("format"))
        if key in seen or check.get("status") != "diverged":
            continue
        seen.add(key)
        agree = r.get("agreement_with_host")
        lines.append(
            f"`{key[0]}` {key[1]}: its answers on the golden images differ from the host's by up to "
            f"{check.get('max_abs_probability_diff', float('nan')):.3f} (> {check.get('tolerance')}; top-1 "
            f"{check.get('top1_agree')}/{check.get('num_images')})"
            + (f"; top-1 agreement with the host on the test images {agree:.1%}" if agree is not None else "")
        )
    return lines


def _side_by_side(host_rows: list[ArtifactResult], rows: list[ArtifactResult], name: str) -> list[str]:
    host = {r.identity: r for r in host_rows}
    lines = [
        "## Host and device latency",
        "",
        f"| point | format | host p50 ms (x{host_rows[0].num_threads}) | {name} p50 ms | source | {name} start-up ms |",
        "| --- | --- | --: | --: | --- | --: |",
    ]
    for r in sorted(rows, key=lambda r: (r.point, r.format)):
        init = "–" if r.init_ms is None else f"{r.init_ms:.1f}"
        lines.append(
            f"| `{r.point}` | {r.format} | {host[r.identity].latency_ms_p50:.2f} | "
            f"{r.latency_ms_p50:.2f} | {r.latency_source} | {init} |"
        )
    return lines + [""]


def write_device_reports(
    out_dir, host_rows: list[ArtifactResult], device_files, budget, config, num_threads: int
) -> list[str]:
    """OUT/devices/<name>/report.md and pareto.png per device file; returns the main report's section."""
    out = Path(out_dir)
    section = [
        "## On devices",
        "",
        f"Latencies at {num_threads} thread(s), measured on each device by "
        "device_bench.py (`edgetl bundle`); accuracy is the host's.",
        "",
    ]
    for path in device_files:
        results = read_device_results(path)
        rows, fits = device_rows(host_rows, results, num_threads)
        chosen, by_runtime = pick_all(rows, budget, config)  # the runtimes of the artifacts the device ran
        d = results.device
        about = (
            f"{results.name}: {d.get('machine', '?')}, {d.get('cpu', '?')}, {d.get('cores', '?')} cores, "
            f"{d.get('os', '?')}, runtimes {d.get('runtimes', {})}"
        )
        fit_lines = [
            f"estimates for {f.format}: {f.method} from {f.measured} measured artifact(s); leave-one-out "
            + (
                "error " + f"median {f.loo_median_error:.0%}, max {f.loo_max_error:.0%}"
                if f.loo_median_error is not None
                else "error not computable (too few points)"
            )
            for f in fits
        ]
        estimated = sum(r.latency_source == "estimate" for r in rows)
        diverged = divergent(results)
        write_report(
            rows,
            chosen,
            budget,
            out / "devices" / results.name,
            title=f"{results.name}: device latencies",
            notes=[
                about,
                f"{len(rows) - estimated} measured, {estimated} estimated",
                *fit_lines,
                *(f"**Diverges from the host:** {line}" for line in diverged),
            ],
            sections=_side_by_side(host_rows, rows, results.name),
            by_runtime=by_runtime,
        )
        if chosen.chosen is None:
            line = f"nothing picked ({chosen.reason})"
        else:
            c = chosen.chosen
            line = f"pick **`{c.point}` {c.format}**, p50 {c.latency_ms_p50:.2f} ms" + (
                " (an **estimate**: the device did not measure it)" if c.latency_source == "estimate" else " (measured)"
            )
        section.append(
            f"- {about}: {line}; {estimated} of {len(rows)} latencies estimated; "
            f"[report](devices/{results.name}/report.md)"
        )
        section += [
            f"  - {RUNTIME_NAMES.get(rt, rt)}: `{p.chosen.point}` {p.chosen.format}, "
            f"p50 {p.chosen.latency_ms_p50:.2f} ms"
            for rt, p in by_runtime.items()
            if p.chosen is not None and len(by_runtime) > 1
        ]
        section += [f"  - **Diverges from the host:** {line}" for line in diverged]
    return section + [""]
