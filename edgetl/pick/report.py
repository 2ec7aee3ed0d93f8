"""report.md (the budget, the pick and why, every artifact) and the model card of the pick.

Everything here is regenerated from results.json by :func:`edgetl.pick.rebuild.rebuild_report` (the ``edgetl report
RUN_DIR`` command), e.g. to try another budget without re-running any benchmark. Every file is written
atomically, so an interrupted sweep or a concurrent reader never sees a half-written report.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgetl.export import accelerators
from edgetl.io.files import atomic_write_text
from edgetl.io.text import visible_lines
from edgetl.measure.results import ArtifactResult
from edgetl.pick.fidelity_table import calibration_section, class_fidelity_section
from edgetl.pick.pareto import BYTES_PER_MB, RUNTIME_NAMES, Budget, Pick, is_ok, paired
from edgetl.pick.plot import PARETO_PNG, plot_pareto

REPORT_MD = "report.md"


# --------------------------------------------------------------------------------------------
# report.md
# --------------------------------------------------------------------------------------------


def _num(x: float | int | None, scale: float = 1.0, digits: int = 1) -> str:
    """Table cell for a number; "–" for missing or non-finite values (failed rows)."""
    if x is None or isinstance(x, bool):
        return "–"
    try:
        v = float(x) * scale
    except (TypeError, ValueError):
        return "–"
    return f"{v:.{digits}f}" if math.isfinite(v) else "–"


def _cell(text: str) -> str:
    """Make arbitrary text (e.g. a status with an error message) safe inside a table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _describe(r: ArtifactResult) -> str:
    return (
        f"`{r.point}` {r.format}: top-1 {_num(r.accuracy, 100)}%, "
        f"p50 {_num(r.latency_ms_p50, digits=2)} ms, size {_num(r.size_bytes, 1 / BYTES_PER_MB, 2)} MB"
    )


def _interval(r: ArtifactResult) -> str:
    if r.accuracy_low is None or not is_ok(r):
        return _num(r.accuracy, 100)
    return f"{_num(r.accuracy, 100)} [{_num(r.accuracy_low, 100)}, {_num(r.accuracy_high, 100)}]"


def _versus(r: ArtifactResult, reference: ArtifactResult | None) -> str:
    """ "-0.8 (p 0.45)": r's accuracy minus the reference's in points, McNemar's p; "–" when not comparable."""
    if reference is None or not is_ok(r) or r.identity == reference.identity:
        return "–"
    test = paired(r, reference)
    return "–" if test is None else f"{test.diff_points:+.1f} (p {test.p_value:.2g})"


def float_twin(r: ArtifactResult, rows: Sequence[ArtifactResult]) -> ArtifactResult | None:
    """The float32 artifact of r's grid point in r's runtime (tflite-float32 for tflite-int8), if any."""
    wanted = r.format.split("-")[0] + "-float32"
    return next((x for x in rows if x.point == r.point and x.format == wanted and is_ok(x)), None)


def results_table(results: Sequence[ArtifactResult], pick: Pick) -> str:
    """Markdown table of every artifact, sorted by point then format, front, tied set and pick marked."""
    front_keys = {r.identity for r in pick.front}
    tied_keys = {r.identity for r in pick.tied}
    chosen_key = pick.chosen.identity if pick.chosen is not None else None
    head = [
        "point",
        "format",
        "acc % [95% CI]",
        "vs best",
        "vs float32",
        "top-5 %",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "start-up ms",
        "size MB",
        "peak RSS MiB",
        "MMACs",
        "accelerators",
        "status",
        "front / tied / pick",
    ]
    align = ["---", "---"] + ["--:"] * 11 + ["---", "---", ":-:"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    for r in sorted(results, key=lambda r: (r.point, r.format)):
        marks = [m for m, keys in (("◆", front_keys), ("=", tied_keys)) if r.identity in keys]
        if chosen_key is not None and r.identity == chosen_key:
            marks.append("★ **pick**")
        status = r.status + (f"; warning: {r.warning}" if r.warning else "")
        cells = [
            f"`{_cell(r.point)}`",
            _cell(r.format),
            _interval(r),
            _versus(r, pick.reference),
            _versus(r, float_twin(r, results)),
            _num(r.top5_accuracy, 100),
            _num(r.latency_ms_p50, digits=2),
            _num(r.latency_ms_p90, digits=2),
            _num(r.latency_ms_p99, digits=2),
            _num(r.init_ms, digits=1),
            _num(r.size_bytes, 1 / BYTES_PER_MB, 2),
            _num(r.peak_rss_mib),
            _num(r.macs, 1e-6),
            _cell(accelerators.summary(r.accelerators)) or "–",
            _cell(status),
            " ".join(marks),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _accelerator_lines(r: ArtifactResult) -> list[str]:
    """What the runtime's own static check says about the pick's accelerators (edgetl.export.accelerators)."""
    cell = accelerators.summary(r.accelerators)
    if not cell:
        return []
    return [
        "",
        f"Accelerators (ops or nodes the delegate could take, by the runtime's static check): {cell}. "
        "A partial or NO verdict means the rest runs on the CPU; check on the device with `edgetl bundle`.",
    ]


def _int8_without_dot_product(ok: Sequence[ArtifactResult]) -> list[str]:
    """A note when int8 files were timed on a CPU without int8 dot-product instructions (edgetl.runtime.cpu)."""
    slow = [r for r in ok if r.format.endswith("int8") and r.cpu_int8_dot == "none"]
    if not slow:
        return []
    return [
        "",
        f"**Note:** {len(slow)} int8 artifact(s) were timed on a CPU without int8 dot-product instructions "
        "(x86: AVX-VNNI, AVX512-VNNI, AMX; Arm: dotprod, i8mm), where int8 kernels can run slower than float32; "
        "on a CPU with them int8 is usually the faster. Time them on the device itself: `edgetl bundle`.",
    ]


def _measured_on(ok: Sequence[ArtifactResult]) -> list[str]:
    """Which machine (and Ray node) timed the latencies; a warning when they are not all one machine."""
    counts: dict[str, int] = {}
    for r in ok:
        if r.measured_on:
            counts[r.measured_on] = counts.get(r.measured_on, 0) + 1
    if not counts:
        return []
    lines = ["", "Latency measured on: " + "; ".join(f"{m} ({n})" for m, n in sorted(counts.items())) + "."]
    if len({m.split(" (")[0] for m in counts}) > 1:
        lines += [
            "",
            "**Warning:** the latencies were measured on different machines, which are not comparable; "
            "re-run with `--bench_resource` naming one kind of node, or without `--ray`.",
        ]
    return lines


def by_runtime_lines(by_runtime: Mapping[str, Pick], best_dir: str | None = None) -> list[str]:
    """One line per runtime that has artifacts: its pick (and where best/ keeps it), or why there is none."""
    if not by_runtime:
        return []
    lines = [
        "",
        "Per runtime (the file to ship depends on the runtime the app embeds; `--runtime` picks the headline):",
        "",
    ]
    for rt, p in by_runtime.items():
        name = RUNTIME_NAMES.get(rt, rt)
        if p.chosen is None:
            lines.append(f"- {name}: nothing picked ({p.reason.split(';')[0]})")
            continue
        where = f" -> `{best_dir}/{rt}/`" if best_dir else ""
        lines.append(f"- {name}: **{_describe(p.chosen)}**{where}")
    return lines


def write_report(
    results: Sequence[ArtifactResult],
    pick: Pick,
    budget: Budget | None,
    out_dir: str | os.PathLike,
    title: str = "edgetl sweep",
    notes: Sequence[str] = (),
    sections: Sequence[str] = (),
    by_runtime: Mapping[str, Pick] | None = None,
    best_dir: str | None = None,
) -> Path:
    """Write ``out_dir/report.md`` (and ``out_dir/pareto.png`` via :func:`plot_pareto`).

    Sections: the budget, the pick and why (or why nothing fits, with the closest artifacts and
    what each one violates) and each runtime's pick (`by_runtime`, from `edgetl.pick.pareto.pick_all`;
    `best_dir`: where they were copied, if anywhere), the table of all artifacts, then the plot.
    """
    out = Path(out_dir)
    rows = list(results)
    budget = budget if budget is not None else Budget()
    ok = [r for r in rows if is_ok(r)]
    n_failed = len(rows) - len(ok)

    plot_pareto(rows, pick, out / PARETO_PNG, title=title, budget=budget)

    md = [f"# {title}", ""]
    md.append(
        f"{len(rows)} artifacts benchmarked: {len(ok)} ok, {n_failed} failed, "
        f"{len(pick.front)} on the Pareto front (accuracy ↑, p50 latency ↓, size ↓)"
        + (f" of the {RUNTIME_NAMES.get(pick.runtime, pick.runtime)} artifacts." if pick.runtime != "any" else ".")
    )
    md += ["", "## Budget", ""]
    if budget.is_set:
        md.append(f"{budget.describe()} (1 MB = 10^6 bytes; latency is the p50).")
    else:
        md.append("None set: every successful artifact is a candidate.")
    md += ["", "## Pick", ""]
    if pick.chosen is not None:
        md.append(f"**{_describe(pick.chosen)}**")
        md += ["", f"Artifact: `{pick.chosen.path}`", "", f"Why: {pick.reason}"]
        md += _accelerator_lines(pick.chosen)
        if pick.tied:
            md += [
                "",
                f"Tied set ({len(pick.tied)}): "
                + "; ".join(f"`{r.point}` {r.format} {_interval(r)}%" for r in pick.tied),
            ]
    else:
        md.append(f"**Nothing picked.** {pick.reason}")
        if pick.closest:
            md += ["", "Closest artifacts (smallest total relative budget violation):", ""]
            for r in pick.closest:
                md.append(f"- {_describe(r)}: {budget.describe_violation(r) or 'fits'}")
    md += by_runtime_lines(by_runtime or {}, best_dir)
    busy = [r for r in ok if r.warning]
    if busy:
        md += [
            "",
            f"**Warning:** {len(busy)} latency measurement(s) ran on a busy machine (other processes "
            "used CPU while they were timed); their latencies are inflated. Re-run on an idle machine.",
        ]
    md += _measured_on(ok)
    md += _int8_without_dot_product(ok)
    md += [
        "",
        "## Artifacts",
        "",
        "◆ = on the Pareto front, = tied with the most accurate, ★ = the pick. Accuracy with its 95% Wilson "
        "interval; *vs best* / *vs float32*: accuracy difference in points against the most accurate artifact "
        "within budget / the float32 file of the same point and runtime, on the same test images, with "
        "McNemar's exact p. Start-up: load and allocate plus the first inference.",
        "",
        results_table(rows, pick),
        "",
        "## Accuracy vs latency",
        "",
        f"![pareto]({PARETO_PNG})",
        "",
    ]
    md += class_fidelity_section(rows, pick, out)
    md += calibration_section(rows)
    md += list(sections)
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return atomic_write_text(out / REPORT_MD, visible_lines("\n".join(md)))  # class and file names are anyone's


# --------------------------------------------------------------------------------------------
# model card
# --------------------------------------------------------------------------------------------

_DEFAULT_INPUT = (
    "raw RGB pixels 0..255, shape [1, {r}, {r}, 3] (any batch for files exported with --dynamic_batch): "
    "float32, or uint8/int8 for full-integer models; the [-1, 1] scaling is inside the model"
)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_value(x) for x in v)
    if isinstance(v, Mapping):
        return "; ".join(f"{k}: {_fmt_value(x)}" for k, x in v.items())
    return str(v)


def write_model_card(result: ArtifactResult, extra: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a short markdown model card for the deployed artifact to `path` (one section after another:
    long, but a flat list of lines reads as the card it writes).

    `extra` carries what the results row does not know, all optional: ``title``, ``input_type``
    (overrides the default description of the input), ``dataset`` (path), ``class_names``,
    ``split_sizes`` (dict), ``training`` (dict of settings), ``runtime``, ``device``,
    ``weights``, ``notes``; any other key is listed under "Other details".
    """
    extra = dict(extra or {})
    r = result
    title = extra.pop("title", f"{r.point} ({r.format})")
    input_type = extra.pop("input_type", _DEFAULT_INPUT.format(r=r.resolution))
    md = [f"# Model card: {title}", "", "## What it is", ""]
    md += [
        f"- Image classifier: MobileNet {r.backbone} backbone, alpha {r.alpha:g}, "
        f"{r.resolution}x{r.resolution} input, retrained classification head",
        f"- Format: {r.format}, file `{r.path}` ({r.size_bytes / BYTES_PER_MB:.2f} MB, {r.size_bytes:,} bytes)",
        f"- Input: {input_type}",
        "- Output: class probabilities [N, num_classes]",
        f"- Compute: {r.macs / 1e6:.1f} M multiply-accumulates per image, {r.params / 1e6:.2f} M parameters",
    ]
    if "weights" in extra:
        md.append(f"- Backbone weights: {_fmt_value(extra.pop('weights'))}")
    classes = extra.pop("class_names", None) or list(r.per_class_accuracy)
    if classes:
        md.append(f"- Classes ({len(classes)}): {', '.join(map(str, classes))}")

    md += ["", "## How it was trained and measured", ""]
    if "dataset" in extra:
        md.append(f"- Dataset: `{_fmt_value(extra.pop('dataset'))}`")
    if "split_sizes" in extra:
        md.append(f"- Split sizes: {_fmt_value(extra.pop('split_sizes'))}")
    if "training" in extra:
        md.append(f"- Training: {_fmt_value(extra.pop('training'))}")
    md.append(f"- Evaluated on {r.num_test_images} held-out test images")
    runtime = extra.pop("runtime", None)
    device = extra.pop("device", None)
    md.append(
        f"- Latency measured with {r.num_threads} thread{'s' if r.num_threads != 1 else ''}"
        + (f" on {runtime}" if runtime else "")
        + (f", {device}" if device else "")
    )
    notes = extra.pop("notes", None)
    for k, v in extra.items():
        md.append(f"- {k}: {_fmt_value(v)}")

    md += [
        "",
        "## Numbers",
        "",
        "| metric | value |",
        "| --- | --: |",
        f"| top-1 accuracy | {_num(r.accuracy, 100)}% |",
    ]
    if r.top5_accuracy is not None:
        md.append(f"| top-5 accuracy | {_num(r.top5_accuracy, 100)}% |")
    md += [
        f"| latency p50 / p90 / p99 | {_num(r.latency_ms_p50, digits=2)} / "
        f"{_num(r.latency_ms_p90, digits=2)} / {_num(r.latency_ms_p99, digits=2)} ms |",
        f"| latency mean | {_num(r.latency_ms_mean, digits=2)} ms |",
        f"| peak RSS | {_num(r.peak_rss_mib)} MiB |",
        f"| size | {_num(r.size_bytes, 1 / BYTES_PER_MB, 2)} MB |",
    ]
    if accelerators.summary(r.accelerators):
        md.append(f"| accelerators (static check) | {_cell(accelerators.summary(r.accelerators))} |")
    if r.per_class_accuracy:
        md += ["", "Per-class accuracy:", "", "| class | accuracy |", "| --- | --: |"]
        md += [f"| {_cell(k)} | {_num(v, 100)}% |" for k, v in r.per_class_accuracy.items()]
    if r.status != "ok":
        md += ["", f"**Warning:** this artifact's benchmark status is `{r.status}`."]
    if notes:
        md += ["", "## Notes", "", str(notes)]
    md.append("")
    return atomic_write_text(path, visible_lines("\n".join(md)))


__all__ = ["REPORT_MD", "results_table", "write_model_card", "write_report"]
