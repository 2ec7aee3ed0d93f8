"""`edgetl report`: a sweep's report rebuilt from its results.json, re-picked, with device results when given."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from edgetl.measure.results import read_notes, read_results, write_results
from edgetl.pick.device import write_device_reports
from edgetl.pick.pareto import Budget, PickConfig, pick_all
from edgetl.pick.report import write_report


def rebuild_report(
    out_dir: str | os.PathLike,
    budget: Budget | None,
    config: PickConfig = PickConfig(),
    device_files: Sequence[str | os.PathLike] = (),
    device_threads: int = 1,
) -> Path:
    """Re-read ``results.json`` in `out_dir`, re-pick under `budget`, rewrite csv/json, png and md.

    Needs nothing but results.json, so a report can be redone (new budget, newer edgetl) long after
    the artifacts themselves are gone. Returns the path of report.md.
    """
    results = read_results(out_dir)
    if not results:
        raise ValueError(f"{Path(out_dir) / 'results.json'} holds no results")
    notes = read_notes(out_dir)
    chosen, by_runtime = pick_all(results, budget, config)
    write_results(results, out_dir, notes)
    sections = []
    if device_files:
        sections = write_device_reports(out_dir, results, device_files, budget, config, device_threads)
    return write_report(results, chosen, budget, out_dir, notes=notes, sections=sections, by_runtime=by_runtime)
