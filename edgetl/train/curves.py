"""Training curves: TensorBoard event files (`--summaries_dir`, as retrain.py wrote them) and a small PNG.

Events are written with TensorFlow's own summary writer (`tf.summary.create_file_writer`), so
`tensorboard --logdir DIR` shows them (TensorFlow 2.21 no longer installs TensorBoard: `pip install
tensorboard`). Layout, one TensorBoard run per sub-directory:

- `train/` and `validation/`: the head's `accuracy` and `cross_entropy` at every evaluation step (of the
  chosen settings' head on the training split; train/validation appear as two runs of one chart, as in
  retrain.py), `fine_tune/accuracy` and `fine_tune/cross_entropy` per epoch when fine-tuning (step =
  epoch), and in `train/` the refit's `refit/accuracy` and `refit/cross_entropy` (train + validation).
- `search/<settings>/`: each candidate of the head-settings search, `search/validation_accuracy` and
  `search/validation_cross_entropy` per evaluation step; `search/` itself holds the table as text and each
  candidate's final figures by candidate number (`search/candidate_validation_*`).

The curves are what run.json records (`history`, `fine_tune.history`, `tuning.table`) plus the search's
per-step histories, which only the training process has.
"""

from __future__ import annotations

import io
from pathlib import Path

from edgetl.io.files import atomic_write_bytes

#: The sub-directories (TensorBoard runs) this module writes; a new write replaces their event files.
RUNS = ("train", "validation", "search")
EVENTS_GLOB = "events.out.tfevents.*"
CURVES_PNG = "curves.png"


def candidate_name(row: dict) -> str:
    """A search candidate's run name: its settings, e.g. `lr0.001_l2_0.0001_dropout0.3_ls0`."""
    return f"lr{row['learning_rate']:g}_l2_{row['l2']:g}_dropout{row['dropout']:g}_ls{row['label_smoothing']:g}"


def _clear(directory: Path) -> None:
    """Remove the event files an earlier write left in our runs (TensorBoard would overlay both), and
    nothing else: retrain.py deleted the whole directory, which may hold the user's own files."""
    for run in RUNS:
        for old in (directory / run).rglob(EVENTS_GLOB) if (directory / run).is_dir() else ():
            old.unlink()


def _plugin(name: str):
    """TensorBoard's marker for a summary of plugin `name` ("scalars", "text"), as tf.summary.scalar and
    tf.summary.text write it: TensorFlow 2.21 no longer installs the `tensorboard` package those two need,
    so the summaries are written with TensorFlow's own `tf.summary.write` and this marker."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = name
    return metadata


def _scalars(writer, series: dict[str, list[tuple[int, float]]]) -> None:
    import tensorflow as tf

    scalar = _plugin("scalars")
    with writer.as_default():
        for tag, points in series.items():
            for step, value in points:
                if value is not None:
                    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step), metadata=scalar)
    writer.flush()


def _head_series(history: list[dict], split: str, prefix: str = "") -> dict[str, list[tuple[int, float]]]:
    return {
        f"{prefix}accuracy": [(r["step"], r[f"{split}_accuracy"]) for r in history],
        f"{prefix}cross_entropy": [(r["step"], r[f"{split}_cross_entropy"]) for r in history],
    }


def _fine_tune_series(fine_tune: dict | None, validation: bool) -> dict[str, list[tuple[int, float]]]:
    if not fine_tune:
        return {}
    acc, loss = ("val_accuracy", "val_loss") if validation else ("accuracy", "loss")
    history = fine_tune["history"]
    return {
        "fine_tune/accuracy": [(r["epoch"], r.get(acc)) for r in history],
        "fine_tune/cross_entropy": [(r["epoch"], r.get(loss)) for r in history],
    }


def write_summaries(
    directory: str | Path,
    run: dict,
    search_histories: list[list[dict]] | None = None,
    refit_history: list[dict] | None = None,
) -> list[Path]:
    """Write the event files of one trained run (`run` is its run.json) into `directory`; returns the
    event files written. `search_histories`: each search candidate's evaluations, in `tuning.table` order."""
    import tensorflow as tf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _clear(directory)
    history = run.get("history") or []
    writers = []

    def writer(name: str):
        w = tf.summary.create_file_writer(str(directory / name))
        writers.append(w)
        return w

    train_series = {**_head_series(history, "train"), **_fine_tune_series(run.get("fine_tune"), False)}
    if refit_history:
        train_series.update(_head_series(refit_history, "train", "refit/"))
    _scalars(writer("train"), train_series)
    _scalars(
        writer("validation"),
        {**_head_series(history, "validation"), **_fine_tune_series(run.get("fine_tune"), True)},
    )
    table = (run.get("tuning") or {}).get("table") or []
    if len(table) > 1:
        _write_search(writer("search"), table)
        for row, steps in zip(table, search_histories or []):
            _scalars(
                writer(f"search/{candidate_name(row)}"),
                {f"search/validation_{k}": v for k, v in _head_series(steps, "validation").items()},
            )
    for w in writers:
        w.close()
    return sorted(directory.rglob(EVENTS_GLOB))


def _write_search(writer, table: list[dict]) -> None:
    import tensorflow as tf

    _scalars(
        writer,
        {
            "search/candidate_validation_accuracy": [(i, r.get("validation_accuracy")) for i, r in enumerate(table)],
            "search/candidate_validation_cross_entropy": [
                (i, r.get("validation_cross_entropy")) for i, r in enumerate(table)
            ],
        },
    )
    lines = ["| # | settings | best step | validation accuracy | validation cross-entropy |", "|--:|---|--:|--:|--:|"]
    for i, r in enumerate(table):
        lines.append(
            f"| {i} | {candidate_name(r)} | {r.get('best_step')} | {r.get('validation_accuracy', float('nan')):.4f} "
            f"| {r.get('validation_cross_entropy', float('nan')):.4f} |"
        )
    with writer.as_default():
        tf.summary.write("search/table", tf.constant("\n".join(lines)), step=0, metadata=_plugin("text"))
    writer.flush()


def plot_curves(run: dict, path: str | Path) -> Path | None:
    """A small PNG of the head's train/validation accuracy and cross-entropy per evaluation step (a dotted
    line at the step early stopping kept) and fine-tuning's per epoch, for readers without TensorBoard;
    None when there is nothing to draw."""
    history, fine_tune = run.get("history") or [], (run.get("fine_tune") or {}).get("history") or []
    if not history and not fine_tune:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("head", "step", history, "train_", "validation_", "cross_entropy")] if history else []
    if fine_tune:
        rows.append(("fine-tuning", "epoch", fine_tune, "", "val_", "loss"))
    fig, axes = plt.subplots(len(rows), 2, figsize=(8, 2.6 * len(rows)), squeeze=False)
    for (title, x_name, records, tr, va, loss), (ax_acc, ax_loss) in zip(rows, axes):
        xs = [r[x_name] for r in records]
        for ax, metric, label in ((ax_acc, "accuracy", "accuracy"), (ax_loss, loss, "cross-entropy")):
            ax.plot(xs, [r.get(f"{tr}{metric}") for r in records], label="train")
            ax.plot(xs, [r.get(f"{va}{metric}") for r in records], label="validation")
            ax.set_title(f"{title}: {label}", fontsize=9)
            ax.set_xlabel(x_name, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if x_name == "step" and (run.get("metrics") or {}).get("best_step"):
                ax.axvline(run["metrics"]["best_step"], color="grey", linestyle=":", linewidth=1)
        ax_acc.legend(fontsize=7)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=80)
    plt.close(fig)
    return atomic_write_bytes(path, png.getvalue(), "the curves PNG", durable=False)
