"""report.md's per-class fidelity section: how each class of the pick and its tied set fares against the float
model (the export check's `class_fidelity`, `edgetl.export.fidelity`), and which artifacts the per-class gate
failed, naming the class and the drop; and the calibration-sensitivity section (`--calibration_repeats`,
`edgetl.export.repeats`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgetl.measure.results import ArtifactResult
from edgetl.pick.pareto import Pick


def _cell(row: dict) -> str:
    """'-6.0 (12/0, p 0.002)': points vs the float model, images flipped wrong / right, Holm-adjusted p."""
    mark = " **failed**" if row.get("failed") else ""
    return f"{-row['drop_points']:+.1f} ({row['flipped_wrong']}/{row['flipped_right']}, p {row['p_holm']:.2g}){mark}"


HEATMAP_PNG = "class_fidelity.png"


def plot_heatmap(measured: Sequence[ArtifactResult], path: Path) -> Path:
    """classes x artifacts: points each class gains (blue) or loses (red) against the float model; failed
    classes outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    classes = [c["class"] for c in measured[0].class_fidelity["classes"]]
    grid = np.full((len(classes), len(measured)), np.nan)
    for j, r in enumerate(measured):
        for c in r.class_fidelity["classes"]:
            if c["class"] in classes:
                grid[classes.index(c["class"]), j] = -c["drop_points"]
    span = max(5.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 5.0)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(measured), 1.5 + 0.35 * len(classes)))
    image = ax.imshow(grid, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
    for j, r in enumerate(measured):
        for c in r.class_fidelity["classes"]:
            i = classes.index(c["class"])
            ax.text(j, i, f"{round(-c['drop_points']):+d}", ha="center", va="center", fontsize=7)
            if c.get("failed"):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_xticks(range(len(measured)), [f"{r.point} {r.format}" for r in measured], rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    fig.colorbar(image, ax=ax, label="points vs float model")
    ax.set_title("per-class fidelity (outlined: failed the gate)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def class_fidelity_section(results: Sequence[ArtifactResult], pick: Pick, out_dir: Path | None = None) -> list[str]:
    """Markdown lines (empty when no row has a per-class measurement); with `out_dir`, also the heatmap."""
    measured = [r for r in results if r.class_fidelity and r.class_fidelity.get("classes")]
    if not measured:
        return []
    md = [
        "## Per-class fidelity",
        "",
        "Each quantized artifact against its float model, class by class, on up to "
        f"{measured[0].class_fidelity.get('images_per_class')} images per class from every split (never its "
        "calibration images): points gained or lost, images flipped wrong / right, and the exact McNemar p "
        "Holm-adjusted over the classes. A class fails when it loses more than "
        f"{measured[0].class_fidelity.get('max_class_drop'):g} points with p < "
        f"{measured[0].class_fidelity.get('alpha', 0.05):g}.",
        "",
    ]
    shown = [r for r in ([pick.chosen] if pick.chosen else []) + list(pick.tied) if r.class_fidelity]
    shown = list({r.identity: r for r in shown}.values())
    if shown:
        names = [row["class"] for row in shown[0].class_fidelity["classes"]]
        md += ["| class | " + " | ".join(f"`{r.point}` {r.format}" for r in shown) + " |"]
        md += ["|---|" + "--:|" * len(shown)]
        for name in names:
            cells = []
            for r in shown:
                row = next((c for c in r.class_fidelity["classes"] if c["class"] == name), None)
                cells.append(_cell(row) if row else "–")
            md.append(f"| {name} | " + " | ".join(cells) + " |")
        md.append("")
    failed = [r for r in measured if r.class_fidelity.get("failed")]
    if failed:
        md += [f"Failed the per-class gate ({len(failed)}):", ""]
        for r in failed:
            rows = [c for c in r.class_fidelity["classes"] if c.get("failed")]
            md.append(
                f"- `{r.point}` {r.format}: "
                + "; ".join(
                    f"{c['class']} {-c['drop_points']:+.1f} points ({c['float_accuracy']:.1%} -> {c['accuracy']:.1%}"
                    f" on {c['n']} images, {c['flipped_wrong']} flipped wrong / {c['flipped_right']} right, "
                    f"Holm p {c['p_holm']:.2g})"
                    for c in rows
                )
            )
        md.append("")
    else:
        md += [f"No artifact failed the per-class gate ({len(measured)} measured).", ""]
    if out_dir is not None:
        plot_heatmap(measured, Path(out_dir) / HEATMAP_PNG)
        md += [f"![per-class fidelity]({HEATMAP_PNG})", ""]
    return md


def calibration_section(results: Sequence[ArtifactResult]) -> list[str]:
    """Markdown lines on the spread over `--calibration_repeats` calibration sets (empty when none repeated)."""
    repeated = [r for r in results if r.calibration_repeats and r.calibration_repeats.get("test_accuracy")]
    if not repeated:
        return []
    md = [
        "## Calibration sensitivity",
        "",
        "Each calibrated artifact converted and checked again on disjoint sets of calibration images "
        "(`--calibration_repeats`; the file kept is the first set's): how many sets pass the check, the test "
        "accuracy's range and sample sd, and the class whose accuracy on the per-class images moves most.",
        "",
        "| artifact | sets | pass | test accuracy (min .. max, sd) | widest class (min .. max) |",
        "|---|--:|--:|---|---|",
    ]
    for r in repeated:
        rep = r.calibration_repeats
        acc = rep["test_accuracy"]
        spans = {name: s for name, s in (rep.get("class_accuracy") or {}).items() if s}
        widest = "–"
        if spans:
            name, s = max(spans.items(), key=lambda kv: kv[1]["max"] - kv[1]["min"])
            widest = f"{name} {s['min']:.1%} .. {s['max']:.1%}"
        md.append(
            f"| `{r.point}` {r.format} | {rep['repeats']} | {rep['passed']} | {acc['min']:.1%} .. {acc['max']:.1%}, "
            f"{100 * acc['sd']:.1f} points | {widest} |"
        )
    return md + [""]
