"""pareto.png: accuracy against p50 latency of every artifact, the front, the pick.

matplotlib is imported inside :func:`plot_pareto` only, so reports are cheap to import.
"""

from __future__ import annotations

import io
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from edgetl.export.formats import FORMATS
from edgetl.io.files import atomic_write_bytes
from edgetl.measure.results import ArtifactResult
from edgetl.pick.pareto import BYTES_PER_MB, Pick, is_ok

PARETO_PNG = "pareto.png"

#: Artifacts beyond which point labels are left off the plot (they would only overlap).
MAX_LABELLED_POINTS = 40


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
    if budget is not None and budget.max_latency_ms is not None:
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


def plot_pareto(
    results: Sequence[ArtifactResult], pick: Pick, path: str | os.PathLike, title: str = "edgetl sweep", budget=None
) -> Path:
    """Accuracy (%) vs p50 latency (ms) of every successful artifact, written to `path` (PNG).

    Marker area is proportional to file size, colour is per format (legend), front members have a
    black ring and a staircase line, the pick is a star with its name, whiskers are 95% intervals of the
    accuracy, and `budget`'s latency and accuracy limits are dotted lines. The x axis is logarithmic
    when latencies span more than 10x. Failed rows are not drawn (counted in the title). Points are
    labelled with their grid point id when there are at most 40 of them. Long (one figure drawn layer by
    layer, as matplotlib code reads best); the whiskers and budget lines are drawn by a helper.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: sweeps run on servers and boards without a display
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rows = list(results)
    ok = [r for r in rows if is_ok(r)]
    front_keys = {r.identity for r in pick.front}
    n_front = sum(1 for r in ok if r.identity in front_keys)

    fig = Figure(figsize=(10, 6.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    n_failed = len(rows) - len(ok)
    ax.set_title(
        f"{title}: {len(ok)} artifacts, {n_front} on the Pareto front"
        + (f", {n_failed} failed (not drawn)" if n_failed else "")
    )

    if not ok:
        ax.text(0.5, 0.5, "no successful artifacts to plot", ha="center", va="center", transform=ax.transAxes)
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
            on_front = [r.identity in front_keys for r in group]
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

        _whiskers_and_budget(ax, ok, budget)
        xs, ys = _front_staircase([r for r in ok if r.identity in front_keys])
        if xs:
            ax.step(xs, ys, where="post", color="black", lw=1.0, ls="--", alpha=0.7, zorder=2)

        if len(ok) <= MAX_LABELLED_POINTS:
            for r in ok:
                ax.annotate(
                    r.point,
                    (r.latency_ms_p50, r.accuracy * 100),
                    xytext=(4, -9),
                    textcoords="offset points",
                    fontsize=7,
                    color="#333333",
                    zorder=4,
                )

        chosen = pick.chosen
        if chosen is not None and is_ok(chosen):
            cx, cy = chosen.latency_ms_p50, chosen.accuracy * 100
            ax.scatter([cx], [cy], marker="*", s=420, c="gold", edgecolors="black", linewidths=1.2, zorder=5)
            ax.annotate(
                f"pick: {chosen.point} {chosen.format}",
                (cx, cy),
                xytext=(12, 12),
                textcoords="offset points",
                fontsize=9,
                fontweight="bold",
                zorder=6,
                bbox={"boxstyle": "round,pad=0.3", "fc": "lightyellow", "ec": "0.5"},
                arrowprops={"arrowstyle": "-", "color": "0.4"},
            )

        handles = (
            [
                Line2D(
                    [],
                    [],
                    marker="o",
                    ls="none",
                    markersize=8,
                    markerfacecolor=to_rgba(format_colour(f), 0.8),
                    markeredgecolor="none",
                    label=f,
                )
                for f in formats
            ]
            + [
                Line2D(
                    [],
                    [],
                    marker="o",
                    ls="--",
                    lw=1.0,
                    color="black",
                    markersize=8,
                    markerfacecolor="none",
                    markeredgecolor="black",
                    label="Pareto front (ringed)",
                ),
                Line2D(
                    [],
                    [],
                    marker="*",
                    ls="none",
                    markersize=14,
                    markerfacecolor="gold",
                    markeredgecolor="black",
                    label="pick",
                ),
                Line2D([], [], color="0.55", lw=0.8, label="95% interval of accuracy"),
            ]
            + [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        )
        ax.legend(
            handles=handles,
            loc="lower right",
            fontsize=8,
            framealpha=0.85,
            title=f"format (marker area ∝ file size,\nlargest {biggest / BYTES_PER_MB:.2f} MB)",
            title_fontsize=8,
        )
        ax.margins(x=0.06, y=0.08)

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    image = io.BytesIO()
    fig.savefig(image, format=fmt)
    atomic_write_bytes(path, image.getvalue())
    return path
