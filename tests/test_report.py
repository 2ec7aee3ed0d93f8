"""results.csv/json, pareto.png, report.md and the model card (edgetl.pick.report). Fast, no TensorFlow."""

from __future__ import annotations

import csv
import json
import math
import os
import struct
from pathlib import Path

import pytest
from conftest import make_result

from edgetl.measure.results import read_notes, read_results, write_results
from edgetl.pick.pareto import Budget, pick
from edgetl.pick.plot import format_colour, plot_pareto
from edgetl.pick.rebuild import rebuild_report
from edgetl.pick.report import write_model_card, write_report

REPO = Path(__file__).resolve().parents[1]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sweep():
    """A small sweep: three grid points x two formats, one failed row, one with top-5."""
    rows = []
    for point, acc, lat, size in [
        ("v1-a0.25-r128", 0.72, 1.8, 0.6),
        ("v2-a0.5-r160", 0.86, 4.5, 2.1),
        ("v2-a1.0-r224", 0.91, 19.0, 9.2),
    ]:
        rows.append(make_result(acc, lat, size, point=point, format="tflite-float32"))
        rows.append(
            make_result(
                acc - 0.01,
                lat / 2.5,
                size / 4,
                point=point,
                format="tflite-int8",
                top5_accuracy=0.99,
                per_class_accuracy={"daisy": 0.5, "rosé|x": 1 / 3},
                confusion_matrix=[[1, 2, 3], [4, 5, 6], [7, 8, 9]],
            )
        )
    rows.append(
        make_result(
            0.0,
            math.nan,
            3.0,
            point="v2-a0.75-r192",
            format="onnx",
            status="error: onnxruntime failed | shape mismatch\nsecond line",
            latency_ms_p90=math.nan,
            latency_ms_p99=math.nan,
            latency_ms_mean=math.nan,
        )
    )
    return rows


def assert_png(path: Path, min_bytes: int = 10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width > 400 and height > 300


def no_temp_files(d: Path):
    return not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_results_json_round_trip_exact(tmp_path):
    rows = sweep()
    csv_path, json_path = write_results(rows, tmp_path)
    assert csv_path == tmp_path / "results.csv" and json_path == tmp_path / "results.json"
    back = read_results(tmp_path)
    assert len(back) == len(rows)
    for a, b in zip(rows, back):
        if a.status == "ok":
            assert a == b
        else:  # NaN != NaN, so compare the serialised forms
            assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
            assert math.isnan(b.latency_ms_p50)
    assert no_temp_files(tmp_path)


def test_results_csv_is_flat(tmp_path):
    rows = sweep()
    csv_path, _ = write_results(rows, tmp_path)
    with open(csv_path, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert list(table[0]) == list(rows[0].to_dict())
    for r, row in zip(rows, table):
        assert row["point"] == r.point and row["format"] == r.format and row["status"] == r.status
        assert int(row["size_bytes"]) == r.size_bytes
        assert float(row["accuracy"]) == r.accuracy
        assert json.loads(row["per_class_accuracy"]) == r.per_class_accuracy
        assert json.loads(row["confusion_matrix"]) == r.confusion_matrix
        assert row["top5_accuracy"] == ("" if r.top5_accuracy is None else repr(r.top5_accuracy))


def test_write_results_overwrites_atomically(tmp_path):
    write_results(sweep(), tmp_path)
    write_results(sweep()[:2], tmp_path)
    assert len(read_results(tmp_path)) == 2
    assert no_temp_files(tmp_path)


def test_read_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text('[{"point": "x", "bogus": 1}]')
    with pytest.raises(ValueError, match="unknown fields"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_results(tmp_path)


def test_report_with_budget(tmp_path):
    rows = sweep()
    budget = Budget(max_latency_ms=5.0, max_size_mb=2.0)
    p = pick(rows, budget)
    assert p.chosen is not None
    md_path = write_report(rows, p, budget, tmp_path, title="flowers sweep")
    text = md_path.read_text(encoding="utf-8")
    assert md_path == tmp_path / "report.md"
    assert text.startswith("# flowers sweep")
    assert "p50 latency <= 5 ms, size <= 2 MB" in text
    # Table header, one line per artifact, sorted by point then format.
    assert "| point | format | acc % [95% CI] | vs best | vs float32 | top-5 % | p50 ms | p90 ms | p99 ms |" in text
    table = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert len(table) == len(rows)
    keys = [(r.point, r.format) for r in rows]
    assert [ln.split(" | ")[0].strip("| `") for ln in table] == [pt for pt, _ in sorted(keys)]
    # The pick is named and marked, front members marked, failed row escaped onto one line.
    assert f"`{p.chosen.point}` {p.chosen.format}" in text
    pick_lines = [ln for ln in table if "**pick**" in ln]
    assert len(pick_lines) == 1 and p.chosen.point in pick_lines[0] and p.chosen.format in pick_lines[0]
    assert sum("◆" in ln for ln in table) == len(p.front)
    failed = [ln for ln in table if "onnx" in ln]
    assert len(failed) == 1 and "\\| shape mismatch second line" in failed[0] and "–" in failed[0]
    assert "![pareto](pareto.png)" in text
    assert_png(tmp_path / "pareto.png")
    assert no_temp_files(tmp_path)


def test_report_nothing_fits(tmp_path):
    rows = sweep()
    budget = Budget(max_latency_ms=0.5, min_accuracy=0.95)
    p = pick(rows, budget)
    assert p.chosen is None
    text = write_report(rows, p, budget, tmp_path).read_text(encoding="utf-8")
    assert "Nothing picked" in text and "no artifact fits" in text
    for r in p.closest:
        assert f"{budget.describe_violation(r)}" in text
    assert "**pick**" not in text
    assert_png(tmp_path / "pareto.png")


def test_report_without_budget_picks_knee(tmp_path):
    rows = sweep()
    p = pick(rows, None)
    text = write_report(rows, p, None, tmp_path).read_text(encoding="utf-8")
    assert "knee" in text and "**pick**" in text


def test_rebuild_report_from_results_json_alone(tmp_path):
    rows = sweep()
    write_results(rows, tmp_path)
    for name in ("results.csv",):
        os.remove(tmp_path / name)
    md = rebuild_report(tmp_path, Budget(max_size_mb=1.0))
    assert md == tmp_path / "report.md"
    text = md.read_text(encoding="utf-8")
    expected = pick(rows, Budget(max_size_mb=1.0)).chosen
    assert expected is not None and f"`{expected.point}` {expected.format}" in text
    assert (tmp_path / "results.csv").is_file()
    assert_png(tmp_path / "pareto.png")
    assert len(read_results(tmp_path)) == len(rows)
    # A different budget re-picks from the same results.json.
    text2 = rebuild_report(tmp_path, Budget(min_accuracy=0.9)).read_text(encoding="utf-8")
    assert "`v2-a1.0-r224` tflite-float32" in text2.split("## Artifacts")[0]


def test_plot_many_points_log_axis_and_all_failed(tmp_path):
    # 45 artifacts spanning > 10x latency (log axis); then a sweep where all failed.
    rows = [make_result(0.5 + i * 0.01, 0.5 * 1.1**i, 0.2 + i * 0.1, format=f"fmt{i % 5}") for i in range(45)]
    p = pick(rows)
    assert_png(plot_pareto(rows, p, tmp_path / "many.png"))
    failed = [make_result(status="error")]
    assert_png(plot_pareto(failed, pick(failed), tmp_path / "none.png"), min_bytes=5_000)
    assert no_temp_files(tmp_path)


def test_format_colours_are_stable():
    assert format_colour("tflite-int8") == format_colour("tflite-int8")
    assert format_colour("some-new-format") == format_colour("some-new-format")
    assert format_colour("tflite-int8") != format_colour("tflite-float32")


def test_model_card(tmp_path):
    r = sweep()[1]
    extra = {
        "dataset": "/data/flowers",
        "class_names": ["daisy", "rose"],
        "split_sizes": {"train": 800, "validation": 100, "test": 100},
        "training": {"epochs": 20, "learning_rate": 0.01},
        "runtime": "ai-edge-litert 1.2",
        "seed": 42,
    }
    path = write_model_card(r, extra, tmp_path / "MODEL_CARD.md")
    text = path.read_text(encoding="utf-8")
    for needle in (
        "MobileNet v2",
        "alpha 1",
        "224x224",
        "tflite-int8",
        "/data/flowers",
        "daisy, rose",
        "train: 800",
        "epochs: 20",
        "ai-edge-litert 1.2",
        "4 threads",
        "seed: 42",
        "top-1 accuracy",
        "top-5 accuracy",
        "latency p50",
    ):
        assert needle in text, needle
    assert "uint8/int8" in text  # default input description


def test_notes_survive_in_results_json_and_a_rebuilt_report(tmp_path):
    rows = sweep()
    notes = ["v2-a0.35-r96 skipped: no weights for MobileNet v2 alpha 0.35", "a | note"]
    write_results(rows, tmp_path, notes)
    assert read_notes(tmp_path) == notes and len(read_results(tmp_path)) == len(rows)
    text = rebuild_report(tmp_path, None).read_text(encoding="utf-8")
    assert "## Notes" in text and notes[0] in text
    assert read_notes(tmp_path) == notes  # rewriting results.json keeps them


def test_results_json_from_before_notes_still_reads(tmp_path):
    rows = sweep()
    (tmp_path / "results.json").write_text(json.dumps([r.to_dict() for r in rows]))
    assert len(read_results(tmp_path)) == len(rows) and read_notes(tmp_path) == []


@pytest.mark.parametrize("grid", ["readme", "full20"])
def test_plot_numbers_the_front_tied_and_pick_without_overlap(grid):
    """The README sweep's size (24 artifacts) and the full 20-point grid (80): every artifact of the front,
    the tied set and the pick numbered beside its marker, no two numbers overlapping, the table naming each."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_pareto", REPO / "tools" / "render_pareto.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    from edgetl.pick.plot import draw_pareto, labelled_rows

    rows = render.constructed_rows(render.GRIDS[grid])
    budget = Budget(max_latency_ms=15)
    chosen = pick(rows, budget)
    fig = draw_pareto(rows, chosen, budget=budget)
    ax, table = fig.axes[0], fig.axes[1]
    labels = labelled_rows(rows, chosen)
    wanted = {r.identity for r in [*chosen.front, *chosen.tied, chosen.chosen]}
    assert {label.row.identity for label in labels} == wanted and len(wanted) >= 10
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    assert sorted(int(t.get_text()) for t in numbers) == list(range(1, len(labels) + 1))
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in numbers]
    frame = ax.get_window_extent(renderer)
    for i, a in enumerate(boxes):
        assert frame.contains(a.x0, a.y0) and frame.contains(a.x1, a.y1), numbers[i].get_text()
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (numbers[i].get_text(), a, b)
    lines = [t.get_text() for t in table.texts]
    pick_line = next(line for line in lines if line.endswith("<- pick"))
    assert f"{chosen.chosen.point} {chosen.chosen.format}" in pick_line
    assert len(lines) == len(labels) + 1  # the header and one line per number


def test_a_far_latency_budget_is_stated_not_drawn():
    """A 15 ms budget beside sub-millisecond artifacts: a line there would squash every marker to the left edge."""
    from edgetl.pick.plot import draw_pareto

    rows = [make_result(0.8 + i * 0.01, latency=0.2 + i * 0.1, point=f"p{i}") for i in range(4)]
    budget = Budget(max_latency_ms=15)
    ax = draw_pareto(rows, pick(rows, budget), budget=budget).axes[0]
    assert ax.get_xlim()[1] < 1.0
    assert any("latency budget 15 ms" in t.get_text() for t in ax.texts)
    near = Budget(max_latency_ms=0.5)
    ax = draw_pareto(rows, pick(rows, near), budget=near).axes[0]
    assert any(line.get_label() == "latency budget 0.5 ms" for line in ax.get_lines())
