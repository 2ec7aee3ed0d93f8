"""Write what a sweep measured: results.csv/json, pareto.png, report.md and a model card.

results.json is the source of truth (exact round trip through :func:`read_results`); everything
else can be regenerated from it with :func:`rebuild_report` (the ``edgetl report RUN_DIR`` command),
e.g. to try another budget without re-running any benchmark.

Every file is written atomically (temp file in the same directory, then ``os.replace``) so an
interrupted sweep or a concurrent reader never sees a half-written report.

Import-light on purpose: no TensorFlow, and matplotlib is only imported inside :func:`plot_pareto`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgetl.bench import ArtifactResult
from edgetl.files import atomic_write_bytes, atomic_write_text
from edgetl.pareto import BYTES_PER_MB, Budget, Pick, is_ok, pick as pick_artifact

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
REPORT_MD = "report.md"
PARETO_PNG = "pareto.png"

#: Artifacts beyond which point labels are left off the plot (they would only overlap).
MAX_LABELLED_POINTS = 40

_FIELDS = [f.name for f in dataclasses.fields(ArtifactResult)]
_JSON_COLUMNS = ("per_class_accuracy", "confusion_matrix")


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------


def _atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_text(path, text)


# --------------------------------------------------------------------------------------------
# results.csv / results.json
# --------------------------------------------------------------------------------------------


def _csv_row(r: ArtifactResult) -> dict[str, Any]:
    row = r.to_dict()
    for col in _JSON_COLUMNS:
        row[col] = json.dumps(row[col], sort_keys=False)
    if row["top5_accuracy"] is None:
        row["top5_accuracy"] = ""
    return row


def write_results(results: Sequence[ArtifactResult], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` into `out_dir`; returns (csv_path, json_path).

    The CSV has one flat row per artifact with the ArtifactResult fields as columns, for
    spreadsheets; the nested per_class_accuracy / confusion_matrix are JSON strings there and
    top5_accuracy ``None`` is an empty cell. The JSON is a list of ``to_dict()`` and is the one to
    read back (:func:`read_results`), because it keeps types exactly.
    """
    out = Path(out_dir)
    rows = list(results)
    for i, r in enumerate(rows):
        if not isinstance(r, ArtifactResult):
            raise ValueError(f"results[{i}] is a {type(r).__name__}, not an ArtifactResult")

    table = io.StringIO()
    w = csv.DictWriter(table, fieldnames=_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(_csv_row(r))
    csv_path = atomic_write_text(out / RESULTS_CSV, table.getvalue())
    # json's default repr of floats round-trips exactly; NaN (failed rows) is written as NaN,
    # which Python's json reads back, at the cost of strict-JSON tools.
    text = json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
    json_path = _atomic_write_text(out / RESULTS_JSON, text)
    return csv_path, json_path


def read_results(out_dir: str | os.PathLike) -> list[ArtifactResult]:
    """The ArtifactResults stored in ``out_dir/results.json`` (exactly what write_results wrote).

    Fields missing from an older file take their dataclass defaults; unknown keys are an error
    rather than silently dropped, since that would mean this edgetl is older than the file.
    """
    path = Path(out_dir) / RESULTS_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {out_dir} a sweep output directory?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a JSON list of results, got {type(data).__name__}")
    known = set(_FIELDS)
    out: list[ArtifactResult] = []
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            raise ValueError(f"{path}: entry {i} is a {type(d).__name__}, not an object")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{path}: entry {i} has unknown fields {unknown} (written by a newer edgetl?)")
        try:
            out.append(ArtifactResult(**d))
        except TypeError as e:
            raise ValueError(f"{path}: entry {i} is not a complete result: {e}") from e
    return out


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------

# Fixed colours for the formats edgetl usually exports, so every plot of every sweep agrees; any
# other format name gets a colour from a hash of its name (stable across runs, unlike hash()).
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
            "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_KNOWN_FORMAT_COLOURS = {
    "keras": "#7f7f7f",
    "tflite-float32": "#1f77b4",
    "tflite-float16": "#17becf",
    "tflite-dynamic": "#9467bd",
    "tflite-dynamic-int8": "#9467bd",
    "tflite-int8": "#d62728",
    "tflite-full-int8": "#d62728",
    "onnx": "#2ca02c",
    "onnx-float32": "#2ca02c",
    "onnx-int8": "#bcbd22",
    "onnx-uint8": "#bcbd22",
}


def format_colour(fmt: str) -> str:
    """The colour for a format name: the same name always gets the same colour."""
    return _KNOWN_FORMAT_COLOURS.get(fmt) or _PALETTE[zlib.crc32(fmt.encode("utf-8")) % len(_PALETTE)]


def _key(r: ArtifactResult) -> tuple[str, str, str]:
    """Identity of an artifact across lists (a Pick may come from a re-read results.json)."""
    return (r.point, r.format, r.path)


def _front_staircase(front: Sequence[ArtifactResult]) -> tuple[list[float], list[float]]:
    """The (latency, accuracy %) staircase of the front as seen in the 2-D plot.

    The front is 3-D (size too), so some members sit below the 2-D envelope; the line follows the
    best accuracy reachable at each latency, the members themselves get a ring.
    """
    xs: list[float] = []
    ys: list[float] = []
    best = -math.inf
    for r in sorted(front, key=lambda r: (r.latency_ms_p50, -r.accuracy)):
        if r.accuracy > best:
            best = r.accuracy
            xs.append(r.latency_ms_p50)
            ys.append(r.accuracy * 100)
    return xs, ys


def plot_pareto(results: Sequence[ArtifactResult], pick: Pick, path: str | os.PathLike,
                title: str = "edgetl sweep") -> Path:
    """Accuracy (%) vs p50 latency (ms) of every successful artifact, written to `path` (PNG).

    Marker area is proportional to file size, colour is per format (legend), front members have a
    black ring and a staircase line, the pick is a star with its name. The x axis is logarithmic
    when latencies span more than 10x. Failed rows are not drawn (counted in the title). Points are
    labelled with their grid point id when there are at most 40 of them.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: sweeps run on servers and boards without a display
    from matplotlib.figure import Figure
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = list(results)
    ok = [r for r in rows if is_ok(r)]
    front_keys = {_key(r) for r in pick.front}
    n_front = sum(1 for r in ok if _key(r) in front_keys)

    fig = Figure(figsize=(10, 6.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    n_failed = len(rows) - len(ok)
    ax.set_title(f"{title}: {len(ok)} artifacts, {n_front} on the Pareto front"
                 + (f", {n_failed} failed (not drawn)" if n_failed else ""))

    if not ok:
        ax.text(0.5, 0.5, "no successful artifacts to plot", ha="center", va="center",
                transform=ax.transAxes)
    else:
        lats = [r.latency_ms_p50 for r in ok]
        lo, hi = min(lats), max(lats)
        if lo > 0 and hi / lo > 10:
            ax.set_xscale("log")
            # Plain numbers (0.5, 1, 2, 5, 10 ms) rather than 10^0: latencies are read, not decoded.
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())

        # Area proportional to size; the largest artifact gets max_area pt^2. A floor keeps tiny
        # artifacts visible (a 100 kB head next to a 20 MB model would otherwise vanish).
        max_area, min_area = 700.0, 12.0
        biggest = max(r.size_bytes for r in ok) or 1
        formats = sorted({r.format for r in ok})
        for fmt in formats:
            group = [r for r in ok if r.format == fmt]
            on_front = [_key(r) in front_keys for r in group]
            # Front members opaque with a black ring, the rest faint: the eye goes to the choices.
            ax.scatter(
                [r.latency_ms_p50 for r in group],
                [r.accuracy * 100 for r in group],
                s=[max(min_area, max_area * r.size_bytes / biggest) for r in group],
                c=[to_rgba(format_colour(fmt), 0.8 if f else 0.3) for f in on_front],
                edgecolors=["black" if f else to_rgba(format_colour(fmt), 0.6) for f in on_front],
                linewidths=[1.3 if f else 0.6 for f in on_front],
                zorder=3,
            )

        xs, ys = _front_staircase([r for r in ok if _key(r) in front_keys])
        if xs:
            ax.step(xs, ys, where="post", color="black", lw=1.0, ls="--", alpha=0.7, zorder=2)

        if len(ok) <= MAX_LABELLED_POINTS:
            for r in ok:
                ax.annotate(r.point, (r.latency_ms_p50, r.accuracy * 100), xytext=(4, -9),
                            textcoords="offset points", fontsize=7, color="#333333", zorder=4)

        chosen = pick.chosen
        if chosen is not None and is_ok(chosen):
            cx, cy = chosen.latency_ms_p50, chosen.accuracy * 100
            ax.scatter([cx], [cy], marker="*", s=420, c="gold", edgecolors="black",
                       linewidths=1.2, zorder=5)
            ax.annotate(f"pick: {chosen.point} {chosen.format}", (cx, cy), xytext=(12, 12),
                        textcoords="offset points", fontsize=9, fontweight="bold", zorder=6,
                        bbox={"boxstyle": "round,pad=0.3", "fc": "lightyellow", "ec": "0.5"},
                        arrowprops={"arrowstyle": "-", "color": "0.4"})

        handles = [
            Line2D([], [], marker="o", ls="none", markersize=8, markerfacecolor=to_rgba(format_colour(f), 0.8),
                   markeredgecolor="none", label=f)
            for f in formats
        ] + [
            Line2D([], [], marker="o", ls="--", lw=1.0, color="black", markersize=8,
                   markerfacecolor="none", markeredgecolor="black", label="Pareto front (ringed)"),
            Line2D([], [], marker="*", ls="none", markersize=14, markerfacecolor="gold",
                   markeredgecolor="black", label="pick"),
        ]
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.85,
                  title=f"format (marker area ∝ file size,\nlargest {biggest / BYTES_PER_MB:.2f} MB)",
                  title_fontsize=8)
        ax.margins(x=0.06, y=0.08)

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    image = io.BytesIO()
    fig.savefig(image, format=fmt)
    atomic_write_bytes(path, image.getvalue())
    return path


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
    return (f"`{r.point}` {r.format}: top-1 {_num(r.accuracy, 100)}%, "
            f"p50 {_num(r.latency_ms_p50, digits=2)} ms, size {_num(r.size_bytes, 1 / BYTES_PER_MB, 2)} MB")


def results_table(results: Sequence[ArtifactResult], pick: Pick) -> str:
    """Markdown table of every artifact, sorted by point then format, front and pick marked."""
    front_keys = {_key(r) for r in pick.front}
    chosen_key = _key(pick.chosen) if pick.chosen is not None else None
    head = ["point", "format", "acc %", "top-5 %", "p50 ms", "p90 ms", "p99 ms", "size MB",
            "peak RSS MB", "MMACs", "params (M)", "status", "front / pick"]
    align = ["---", "---"] + ["--:"] * 9 + ["---", ":-:"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    for r in sorted(results, key=lambda r: (r.point, r.format)):
        marks = []
        if _key(r) in front_keys:
            marks.append("◆")
        if chosen_key is not None and _key(r) == chosen_key:
            marks.append("★ **pick**")
        cells = [
            f"`{_cell(r.point)}`", _cell(r.format),
            _num(r.accuracy, 100), _num(r.top5_accuracy, 100),
            _num(r.latency_ms_p50, digits=2), _num(r.latency_ms_p90, digits=2),
            _num(r.latency_ms_p99, digits=2),
            _num(r.size_bytes, 1 / BYTES_PER_MB, 2), _num(r.peak_rss_mb),
            _num(r.macs, 1e-6), _num(r.params, 1e-6, 2),
            _cell(r.status), " ".join(marks),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(results: Sequence[ArtifactResult], pick: Pick, budget: Budget | None,
                 out_dir: str | os.PathLike, title: str = "edgetl sweep", notes: Sequence[str] = ()) -> Path:
    """Write ``out_dir/report.md`` (and ``out_dir/pareto.png`` via :func:`plot_pareto`).

    Sections: the budget, the pick and why (or why nothing fits, with the closest artifacts and
    what each one violates), the table of all artifacts, then the plot.
    """
    out = Path(out_dir)
    rows = list(results)
    budget = budget if budget is not None else Budget()
    ok = [r for r in rows if is_ok(r)]
    n_failed = len(rows) - len(ok)

    plot_pareto(rows, pick, out / PARETO_PNG, title=title)

    md = [f"# {title}", ""]
    md.append(f"{len(rows)} artifacts benchmarked: {len(ok)} ok, {n_failed} failed, "
              f"{len(pick.front)} on the Pareto front (accuracy ↑, p50 latency ↓, size ↓).")
    md += ["", "## Budget", ""]
    if budget.is_set:
        md.append(f"{budget.describe()} (1 MB = 10^6 bytes; latency is the p50).")
    else:
        md.append("None set: the pick is the knee of the Pareto front.")
    md += ["", "## Pick", ""]
    if pick.chosen is not None:
        md.append(f"**{_describe(pick.chosen)}**")
        md += ["", f"Artifact: `{pick.chosen.path}`", "", f"Why: {pick.reason}"]
    else:
        md.append(f"**Nothing picked.** {pick.reason}")
        if pick.closest:
            md += ["", "Closest artifacts (smallest total relative budget violation):", ""]
            for r in pick.closest:
                md.append(f"- {_describe(r)}: {budget.describe_violation(r) or 'fits'}")
    md += ["", "## Artifacts", "", "◆ = on the Pareto front, ★ = the pick.", "",
           results_table(rows, pick), "", "## Accuracy vs latency", "", f"![pareto]({PARETO_PNG})", ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return _atomic_write_text(out / REPORT_MD, "\n".join(md))


def rebuild_report(out_dir: str | os.PathLike, budget: Budget | None) -> Path:
    """Re-read ``results.json`` in `out_dir`, re-pick under `budget`, rewrite csv/json, png and md.

    Needs nothing but results.json, so a report can be redone (new budget, newer edgetl) long after
    the artifacts themselves are gone. Returns the path of report.md.
    """
    results = read_results(out_dir)
    if not results:
        raise ValueError(f"{Path(out_dir) / RESULTS_JSON} holds no results")
    chosen = pick_artifact(results, budget)
    write_results(results, out_dir)
    return write_report(results, chosen, budget, out_dir)


# --------------------------------------------------------------------------------------------
# model card
# --------------------------------------------------------------------------------------------

_DEFAULT_INPUT = ("raw RGB pixels 0..255, shape [N, {r}, {r}, 3]: float32, or uint8/int8 for "
                  "full-integer models; the [-1, 1] scaling is inside the model")


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_value(x) for x in v)
    if isinstance(v, Mapping):
        return "; ".join(f"{k}: {_fmt_value(x)}" for k, x in v.items())
    return str(v)


def write_model_card(result: ArtifactResult, extra: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a short markdown model card for the deployed artifact to `path`.

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
    md.append(f"- Latency measured with {r.num_threads} thread{'s' if r.num_threads != 1 else ''}"
              + (f" on {runtime}" if runtime else "") + (f", {device}" if device else ""))
    notes = extra.pop("notes", None)
    for k, v in extra.items():
        md.append(f"- {k}: {_fmt_value(v)}")

    md += ["", "## Numbers", "", "| metric | value |", "| --- | --: |",
           f"| top-1 accuracy | {_num(r.accuracy, 100)}% |"]
    if r.top5_accuracy is not None:
        md.append(f"| top-5 accuracy | {_num(r.top5_accuracy, 100)}% |")
    md += [
        f"| latency p50 / p90 / p99 | {_num(r.latency_ms_p50, digits=2)} / "
        f"{_num(r.latency_ms_p90, digits=2)} / {_num(r.latency_ms_p99, digits=2)} ms |",
        f"| latency mean | {_num(r.latency_ms_mean, digits=2)} ms |",
        f"| peak RSS | {_num(r.peak_rss_mb)} MB |",
        f"| size | {_num(r.size_bytes, 1 / BYTES_PER_MB, 2)} MB |",
    ]
    if r.per_class_accuracy:
        md += ["", "Per-class accuracy:", "", "| class | accuracy |", "| --- | --: |"]
        md += [f"| {_cell(k)} | {_num(v, 100)}% |" for k, v in r.per_class_accuracy.items()]
    if r.status != "ok":
        md += ["", f"**Warning:** this artifact's benchmark status is `{r.status}`."]
    if notes:
        md += ["", "## Notes", "", str(notes)]
    md.append("")
    return _atomic_write_text(path, "\n".join(md))


__all__ = [
    "format_colour",
    "plot_pareto",
    "read_results",
    "rebuild_report",
    "results_table",
    "write_model_card",
    "write_report",
    "write_results",
]
