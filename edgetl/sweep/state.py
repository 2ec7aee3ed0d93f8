"""The sweep's record of its finished units, shared by both executors (`edgetl.sweep.local`,
`edgetl.sweep.ray_driver`) through the plan (`edgetl.sweep.plan`).

A unit is finished when the key in the point's sweep_state.json (and, for a benchmark, in bench/<fmt>.json)
equals the key of the current settings and its output is intact (SHA-256 recorded beside it). The
`record_*` functions write that state after a unit's output is in place, each file atomically, so a run
killed between the two redoes the unit, never trusts half of it.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgetl.export import read_export_summary
from edgetl.features.backbones import BackboneSpec
from edgetl.io.files import atomic_write_json, sha256_file
from edgetl.measure.results import ArtifactResult, failed_result
from edgetl.sweep.config import SweepConfig, point_dir, point_name


def read_json(path: Path) -> dict:
    """A JSON object from `path`; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _intact(point: Path, entry: dict) -> bool:
    """True when the artifact export.json describes is there with the SHA-256 recorded for it."""
    path = point / entry.get("path", "-")
    return path.is_file() and (not entry.get("sha256") or sha256_file(path) == entry["sha256"])


def _trained_run(point: Path) -> dict | None:
    """run.json, when it is readable and the model files still hash to what it records (a power cut
    truncates files); else None."""
    run = read_json(point / "run.json")
    intact = run and all(
        (point / name).is_file() and sha256_file(point / name) == digest
        for name, digest in run.get("files", {}).items()
    )
    return run if intact else None


def read_state(config: SweepConfig, spec: BackboneSpec) -> dict:
    """The point's sweep_state.json ({} with --force: every unit is redone)."""
    return {} if config.force else read_json(point_dir(config, spec) / "sweep_state.json")


def finished_train(config: SweepConfig, spec: BackboneSpec, state: dict, key: str) -> dict | None:
    """The point's run.json when its train unit is finished with these settings and intact; else None."""
    return _trained_run(point_dir(config, spec)) if state.get("train") == key else None


def record_train(config: SweepConfig, spec: BackboneSpec, key: str) -> dict:
    """A new training invalidates the point's exports and benchmarks: the fresh state, written."""
    state = {"train": key, "export": {}, "bench": {}}
    atomic_write_json(point_dir(config, spec) / "sweep_state.json", state)
    return state


def export_todo(config: SweepConfig, spec: BackboneSpec, keys: dict[str, str], state: dict) -> list[str]:
    """The formats whose export key changed or whose artifact is gone or damaged."""
    out = point_dir(config, spec)
    exported = read_export_summary(out)
    return [
        f
        for f in config.export.formats
        if state["export"].get(f) != keys[f] or f not in exported or not _intact(out, exported[f])
    ]


def record_export(config: SweepConfig, spec: BackboneSpec, fmt: str, key: str, state: dict) -> None:
    state["export"][fmt] = key
    state["bench"].pop(fmt, None)
    atomic_write_json(point_dir(config, spec) / "sweep_state.json", state)


def settled_row(
    config: SweepConfig, spec: BackboneSpec, fmt: str, entry: dict, key: str, state: dict
) -> ArtifactResult | None:
    """The row of a format that needs no benchmark: its saved measurement when finished with this key, a
    failed row when there is no intact artifact to measure; None when it must be measured."""
    out = point_dir(config, spec)
    saved, intact = read_json(out / "bench" / f"{fmt}.json"), _intact(out, entry)
    if saved.get("key") == key and state["bench"].get(fmt) == key and intact:
        return ArtifactResult(**saved["result"])
    if not intact:
        return failed_result(
            point_name(config, spec),
            spec.version,
            spec.alpha,
            spec.resolution,
            fmt,
            entry.get("status", "export failed: no artifact"),
            config.bench.num_threads,
        )
    return None


def record_bench(
    config: SweepConfig, spec: BackboneSpec, fmt: str, key: str, row: ArtifactResult, ran_on: dict, state: dict
) -> None:
    """A measurement, saved; a failed benchmark is a row only (the next run tries again)."""
    if row.status.startswith("benchmark failed"):
        return
    out = point_dir(config, spec)
    atomic_write_json(out / "bench" / f"{fmt}.json", {"key": key, **ran_on, "result": row.to_dict()})
    state["bench"][fmt] = key
    atomic_write_json(out / "sweep_state.json", state)
