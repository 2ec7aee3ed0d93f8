"""pareto.png: accuracy against p50 latency of every artifact, the front, the pick.

Read at a glance: only the artifacts a reader chooses between (the front, the tied set, the pick) carry a
label, a small number beside the marker, placed where it covers no other label or marker; the table to the
right names each number (point, format, accuracy with its interval, latency, size). A table rather than
names on the plot (or adjustText, which needs scipy) because the artifacts of one grid point crowd at one
accuracy: 80 artifacts and a 20-member front still read, and the layout is deterministic.

matplotlib is imported inside :func:`draw_pareto` only, so reports are cheap to import.
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetl.export.formats import FORMATS
from edgetl.io.files import atomic_write_bytes
from edgetl.measure.results import ArtifactResult
from edgetl.pick.pareto import BYTES_PER_MB, Pick, is_ok

PARETO_PNG = "pareto.png"

#: Labelled artifacts beyond which the table stops (the front of a huge grid); the rest are counted.
MAX_TABLE_ROWS = 30
#: Marker area (pt^2) of the largest artifact, and the floor that keeps a tiny one visible.
MAX_AREA, MIN_AREA = 360.0, 16.0
PICK_STAR_AREA = 520.0


def format_colour(fmt: str) -> str:
    """The plot colour of a format: the format table's, or one drawn from a hash of an unknown name
    (stable across runs, unlike hash()), so every plot of every sweep agrees."""

    spec = FORMATS.get(fmt)
    return spec.colour if spec else _PALETTE[zlib.crc32(fmt.encode("utf-8")) % len(_PALETTE)]


_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


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


def _whiskers_and_budget(ax, ok: list[ArtifactResult], budget) -> None:
    """95% intervals of accuracy as whiskers; the latency and accuracy budgets as dashed lines."""
    with_ci = [r for r in ok if r.accuracy_low is not None and r.accuracy_high is not None]
    if with_ci:
        ax.errorbar(
            [r.latency_ms_p50 for r in with_ci],
            [r.accuracy * 100 for r in with_ci],
            yerr=[
                [(r.accuracy - r.accuracy_low) * 100 for r in with_ci],
                [(r.accuracy_high - r.accuracy) * 100 for r in with_ci],
            ],
            fmt="none",
            ecolor="0.55",
            elinewidth=0.8,
            capsize=2,
            alpha=0.6,
            zorder=1,
        )
    slowest = max(r.latency_ms_p50 for r in ok)
    if budget is not None and budget.max_latency_ms is not None and budget.max_latency_ms > 3 * slowest:
        # Far right of every artifact: a line there would squash them all into the left edge; say it instead.
        ax.annotate(
            f"latency budget {budget.max_latency_ms:g} ms (every artifact is within it) \u2192",
            (0.99, 0.98),
            xycoords="axes fraction",
            ha="right",
            va="top",
            fontsize=8,
            color="firebrick",
        )
    elif budget is not None and budget.max_latency_ms is not None:
        ax.axvline(
            budget.max_latency_ms,
            color="firebrick",
            ls=":",
            lw=1.2,
            zorder=1,
            label=f"latency budget {budget.max_latency_ms:g} ms",
        )
    if budget is not None and budget.min_accuracy is not None:
        ax.axhline(
            budget.min_accuracy * 100,
            color="firebrick",
            ls="-.",
            lw=1.0,
            zorder=1,
            label=f"accuracy budget {budget.min_accuracy * 100:g}%",
        )


@dataclass(frozen=True)
class _Label:
    number: int
    row: ArtifactResult
    role: str  # "pick", "tied" or "front"


def labelled_rows(ok: Sequence[ArtifactResult], pick: Pick) -> list[_Label]:
    """The front, the tied set and the pick, numbered by latency (then accuracy, best first)."""
    chosen = pick.chosen.identity if pick.chosen is not None else None
    tied = {r.identity for r in pick.tied}
    front = {r.identity for r in pick.front}
    keep = [r for r in ok if r.identity in front or r.identity in tied or r.identity == chosen]
    keep.sort(key=lambda r: (r.latency_ms_p50, -r.accuracy, r.point, r.format))
    role = {**dict.fromkeys(front, "front"), **dict.fromkeys(tied, "tied")}
    if chosen is not None:
        role[chosen] = "pick"
    return [_Label(i, r, role[r.identity]) for i, r in enumerate(keep[:MAX_TABLE_ROWS], 1)]


def _area(r: ArtifactResult, biggest: int) -> float:
    return max(MIN_AREA, MAX_AREA * r.size_bytes / biggest)


def _overlap(a: tuple, b: tuple) -> float:
    """Overlapping area of two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(ax, labels: list[_Label], ok: Sequence[ArtifactResult], biggest: int) -> list:
    """Put each label's number beside its marker where it covers the fewest other labels and markers.

    Greedy, in display coordinates (the figure is drawn first so the layout is final): candidate spots
    on rings of growing radius around the marker, the first with no overlap wins, else the least
    overlapping one; a thin leader line joins a number set further out to its marker. A little over 60 lines:
    one loop (search the spots, then annotate), which reads best whole.
    """
    fig = ax.figure
    fig.canvas.draw()  # constrained layout fixes the axes: display coordinates are final from here
    px = fig.dpi / 72.0
    to_px = ax.transData.transform
    frame = ax.get_window_extent()
    star = {label.row.identity for label in labels if label.role == "pick"}

    def radius(r: ArtifactResult) -> float:  # the pick's star covers more than its marker
        return math.sqrt(max(_area(r, biggest), PICK_STAR_AREA * 0.7 if r.identity in star else 0) / math.pi) * px

    markers = []
    for r in ok:
        (x, y), rad = to_px((r.latency_ms_p50, r.accuracy * 100)), radius(r)
        markers.append((r.identity, (x - rad, y - rad, x + rad, y + rad)))
    placed: list[tuple] = []
    texts = []
    for label in labels:
        r = label.row
        (x, y), radius_px = to_px((r.latency_ms_p50, r.accuracy * 100)), radius(r)
        w, h = (5.2 * len(str(label.number)) + 3) * px, 10 * px
        best = None
        for gap in (2, 7, 14, 24, 36, 52):
            for k in range(12):
                angle = math.radians(45 + 30 * k)
                cx = x + math.cos(angle) * (radius_px + gap * px + w / 2)
                cy = y + math.sin(angle) * (radius_px + gap * px + h / 2)
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                if box[0] < frame.x0 or box[2] > frame.x1 or box[1] < frame.y0 or box[3] > frame.y1:
                    continue
                cost = sum(_overlap(box, b) for b in placed) * 4 + sum(
                    _overlap(box, m) for ident, m in markers if ident != r.identity
                )
                if best is None or cost < best[0]:
                    best = (cost, box, cx - x, cy - y, gap)
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        if best is None:  # the marker sits on the frame's edge: right of it, whatever it covers
            best = (0, (x, y, x + w, y + h), radius_px + w / 2, 0, 0)
        _cost, box, dx, dy, gap = best
        placed.append(box)
        bold = label.role == "pick"
        text = ax.annotate(
            str(label.number),
            (r.latency_ms_p50, r.accuracy * 100),
            xytext=(dx / px, dy / px),
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=8,
            fontweight="bold" if bold else "normal",
            color="black" if bold else "#222222",
            zorder=7,
            arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6, "shrinkA": 0, "shrinkB": 0} if gap > 7 else None,
        )
        text.set_in_layout(False)
        texts.append(text)
    return texts


def _table(tax, labels: list[_Label], n_labelled: int) -> None:
    """The numbers' key: one monospaced line per labelled artifact, the pick in bold."""
    tax.axis("off")
    lines = [(f"{'#':>2}  {'artifact':<29} {'top-1 % [95% CI]':<18} {'p50 ms':>7} {'MB':>6}", "header")]
    for label in labels:
        r = label.row
        ci = (
            f"[{r.accuracy_low * 100:.1f}, {r.accuracy_high * 100:.1f}]"
            if r.accuracy_low is not None and r.accuracy_high is not None
            else ""
        )
        tag = {"pick": " <- pick", "tied": " tied", "front": ""}[label.role]
        name = f"{r.point} {r.format}"
        lines.append(
            (
                f"{label.number:>2}  {name:<29} {r.accuracy * 100:5.1f} {ci:<12} {r.latency_ms_p50:>7.2f} "
                f"{r.size_bytes / BYTES_PER_MB:>6.2f}{tag}",
                label.role,
            )
        )
    if n_labelled > len(labels):
        lines.append((f"    ... and {n_labelled - len(labels)} more on the front (results.csv)", "front"))
    for i, (line, role) in enumerate(lines):
        tax.text(
            0.0,
            1.0 - i * 0.032,
            line,
            transform=tax.transAxes,
            family="monospace",
            fontsize=7.5,
            va="top",
            fontweight="bold" if role in ("pick", "header") else "normal",
            color="black" if role != "tied" else "#7a4f00",
        )


def _legend(ax, formats: list[str], biggest: int) -> None:
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D

    def handle(label: str, **kw) -> Line2D:
        return Line2D([], [], ls=kw.pop("ls", "none"), label=label, **kw)

    handles = [
        handle(f, marker="o", markersize=8, markerfacecolor=to_rgba(format_colour(f), 0.8), markeredgecolor="none")
        for f in formats
    ]
    handles += [
        handle(
            "Pareto front (ringed, numbered)",
            marker="o",
            ls="--",
            lw=1.0,
            color="black",
            markersize=8,
            markerfacecolor="none",
            markeredgecolor="black",
        ),
        handle("pick", marker="*", markersize=14, markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.4),
        handle("95% interval of accuracy", color="0.55", lw=0.8, ls="-"),
    ]
    handles += [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    ax.legend(
        handles=handles,
        loc="lower right",
        fontsize=7.5,
        framealpha=0.85,
        title=f"format (marker area ∝ file size,\nlargest {biggest / BYTES_PER_MB:.2f} MB)",
        title_fontsize=7.5,
    )


def _log_x_if_wide(ax, ok: Sequence[ArtifactResult]) -> None:
    """A log latency axis with plain tick numbers (0.5, 1, 2, 5 ms) when latencies span more than 10x."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lats = [r.latency_ms_p50 for r in ok]
    if min(lats) > 0 and max(lats) / min(lats) > 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _markers(ax, ok: Sequence[ArtifactResult], front_keys: set, biggest: int) -> None:
    """Every artifact, largest first so a small marker is never hidden under a big one; the front opaque
    and ringed, the rest faint."""
    from matplotlib.colors import to_rgba

    rows = sorted(ok, key=lambda r: -r.size_bytes)
    on_front = [r.identity in front_keys for r in rows]
    ax.scatter(
        [r.latency_ms_p50 for r in rows],
        [r.accuracy * 100 for r in rows],
        s=[_area(r, biggest) for r in rows],
        c=[to_rgba(format_colour(r.format), 0.7 if f else 0.3) for r, f in zip(rows, on_front)],
        edgecolors=["black" if f else to_rgba(format_colour(r.format), 0.7) for r, f in zip(rows, on_front)],
        linewidths=[1.2 if f else 0.6 for f in on_front],
        zorder=3,
    )


def draw_pareto(results: Sequence[ArtifactResult], pick: Pick, title: str = "edgetl sweep", budget=None):
    """The figure of :func:`plot_pareto` (matplotlib Figure), with its labels placed."""
    import matplotlib

    matplotlib.use("Agg")  # headless: sweeps run on servers and boards without a display
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(results)
    ok = [r for r in rows if is_ok(r)]
    front_keys = {r.identity for r in pick.front}
    n_front = sum(1 for r in ok if r.identity in front_keys)
    fig = Figure(figsize=(14, 6.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax, tax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.45, 1]})
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    n_failed = len(rows) - len(ok)
    ax.set_title(
        f"{title}: {len(ok)} artifacts, {n_front} on the Pareto front"
        + (f", {n_failed} failed (not drawn)" if n_failed else "")
    )
    if not ok:
        tax.axis("off")
        ax.text(0.5, 0.5, "no successful artifacts to plot", ha="center", va="center", transform=ax.transAxes)
        return fig
    _log_x_if_wide(ax, ok)
    biggest = max(r.size_bytes for r in ok) or 1
    _markers(ax, ok, front_keys, biggest)
    _whiskers_and_budget(ax, ok, budget)
    xs, ys = _front_staircase([r for r in ok if r.identity in front_keys])
    if xs:
        ax.step(xs, ys, where="post", color="black", lw=1.0, ls="--", alpha=0.7, zorder=2)
    chosen = pick.chosen
    if chosen is not None and is_ok(chosen):
        # A hollow star: the markers under it stay visible.
        ax.scatter(
            [chosen.latency_ms_p50],
            [chosen.accuracy * 100],
            marker="*",
            s=PICK_STAR_AREA,
            facecolors="none",
            edgecolors="black",
            linewidths=1.4,
            zorder=6,
        )
    _legend(ax, sorted({r.format for r in ok}), biggest)
    ax.margins(x=0.08, y=0.1)
    labels = labelled_rows(ok, pick)
    n_labelled = len({r.identity for r in [*pick.front, *pick.tied]} | ({chosen.identity} if chosen else set()))
    _table(tax, labels, n_labelled)
    place_labels(ax, labels, ok, biggest)
    return fig


def plot_pareto(
    results: Sequence[ArtifactResult], pick: Pick, path: str | os.PathLike, title: str = "edgetl sweep", budget=None
) -> Path:
    """Accuracy (%) vs p50 latency (ms) of every successful artifact, written to `path` (PNG).

    Marker area is proportional to file size, colour is per format (legend), front members are opaque
    with a black ring and a staircase line, the pick a hollow star, whiskers are 95% intervals of the
    accuracy, and `budget`'s latency and accuracy limits are dotted lines. The x axis is logarithmic when
    latencies span more than 10x. The front, the tied set and the pick are numbered beside their markers
    (no two numbers overlap where there is room) and named in the table on the right. Failed rows are
    not drawn (counted in the title).
    """
    fig = draw_pareto(results, pick, title, budget)
    path = Path(path)
    image = io.BytesIO()
    fig.savefig(image, format=path.suffix.lstrip(".").lower() or "png")
    return atomic_write_bytes(path, image.getvalue())
