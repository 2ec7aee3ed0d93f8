"""`export_run`: every requested format of one run converted and checked, then the recovery ladder
(`edgetl.export.ladder`) for the int8 formats that failed; the loop `edgetl export` shares with the sweep's
export unit."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from edgetl.export import calibration as calib
from edgetl.export.config import ExportConfig
from edgetl.export.inputs import load_run_inputs, read_run
from edgetl.export.ladder import climb
from edgetl.export.run import ARTIFACTS_DIR, ExportResult, Log, export_format
from edgetl.io.quiet import bars_off


def export_run(
    run_dir: str | Path,
    config: ExportConfig = ExportConfig(),
    log: Log | None = None,
    progress: bool = True,
    dataset=None,
) -> list[ExportResult]:
    """Export and check each format of `config` for one run; the loop `edgetl export` and the sweep share.

    Artifacts land in RUN/artifacts/<format><suffix>; int8 ones get <format>.calibration.json beside
    them; RUN/artifacts/export.json gets one entry per format, merged with earlier exports. Checks
    always compare with the run's own model, also for int8 formats converted from the bias-corrected
    copy. Problems with the inputs (run dir, manifest) raise ExportError before anything is written.
    The results end with the ladder's rungs, when it converted any.
    """
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    run_dir = Path(run_dir)
    run = read_run(run_dir)  # fail fast, before TensorFlow loads, on a wrong --run or a stale manifest
    from_manifest = None
    if config.needs_calibration and config.calibration_manifest is not None:
        from_manifest = calib.calibration_set_from_manifest(
            calib.load_manifest(config.calibration_manifest),
            int(run["backbone"]["resolution"]),
            fallback_root=run["image_dir"],
        )
    inputs = load_run_inputs(run_dir, dataset)
    inputs.calibration = from_manifest
    for note in inputs.notes + (from_manifest.notes if from_manifest else []):
        log(f"note: {note}")
    (run_dir / ARTIFACTS_DIR).mkdir(parents=True, exist_ok=True)
    results = []
    with tqdm(config.formats, desc="export", unit="format", disable=not progress or bars_off(), file=sys.stderr) as bar:
        for fmt in bar:
            bar.set_description(fmt)
            results.append(export_format(inputs, fmt, config, log))
    return results + climb(inputs, config, log)
