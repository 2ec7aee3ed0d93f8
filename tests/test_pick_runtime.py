"""The pick for the runtime the device embeds (`--runtime tflite|onnx|any`): fast, constructed rows and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_result

from edgetl.cli.main import build_parser
from edgetl.cli.pick import pick_from_args
from edgetl.export import ExportConfig
from edgetl.export.formats import FORMATS, RUNTIMES
from edgetl.features.backbones import BackboneSpec
from edgetl.pick.device import write_device_reports
from edgetl.pick.pareto import Budget, PickConfig, of_runtime, pick, pick_all, runtime_of
from edgetl.pick.report import write_report
from edgetl.sweep.config import SweepConfig
from edgetl.sweep.run import finish_sweep

N = 360


def _row(point: str, fmt: str, right: int, p50: float, size_mb: float):
    """A row with per-image predictions (`right` of N correct), as the sweep writes it."""
    suffix = FORMATS[fmt].suffix
    return make_result(
        right / N,
        p50,
        size_mb,
        point=point,
        format=fmt,
        path=f"points/{point}/{fmt}{suffix}",
        num_threads=1,
        predictions=[0] * right + [1] * (N - right),
        labels=[0] * N,
    )


def _rows():
    # As the README sweep measured: the onnx-int8 file is the cheapest of the tied set, so `any` picks it.
    return [
        _row("v1-a1-r224", "tflite-float32", 330, 8.0, 16.9),
        _row("v1-a1-r224", "tflite-int8", 329, 5.0, 4.4),
        _row("v1-a1-r224", "onnx-float32", 330, 7.0, 16.9),
        _row("v1-a1-r224", "onnx-int8", 329, 3.0, 4.4),
    ]


def test_the_headline_pick_is_among_the_runtimes_artifacts_only():
    rows = _rows()
    assert pick(rows, None, PickConfig(runtime="any")).chosen.format == "onnx-int8"  # the old rule
    default = pick(rows)
    assert PickConfig().runtime == "tflite"
    assert default.chosen.format == "tflite-int8" and "--runtime tflite" in default.reason
    assert {r.format for r in default.front} <= {"tflite-float32", "tflite-int8"}
    assert pick(rows, None, PickConfig(runtime="onnx")).chosen.format == "onnx-int8"


def test_pick_all_gives_each_runtimes_pick_and_the_headline_is_one_of_them():
    rows = _rows()
    headline, by_runtime = pick_all(rows, None, PickConfig())
    assert list(by_runtime) == list(RUNTIMES)
    assert headline is by_runtime["tflite"]
    assert {rt: p.chosen.format for rt, p in by_runtime.items()} == {"tflite": "tflite-int8", "onnx": "onnx-int8"}
    anything, same = pick_all(rows, None, PickConfig(runtime="any"))
    assert anything.chosen.format == "onnx-int8" and set(same) == set(by_runtime)


def test_a_runtime_without_artifacts_picks_nothing_and_says_what_to_do():
    onnx_only = [r for r in _rows() if r.format.startswith("onnx")]
    chosen = pick(onnx_only)
    assert chosen.chosen is None and "--runtime any" in chosen.reason and "onnx" in chosen.reason
    headline, by_runtime = pick_all(onnx_only)
    assert headline.chosen is None and list(by_runtime) == ["onnx"]


def test_a_budget_only_another_runtime_meets_is_not_met():
    rows = _rows()
    budget = Budget(max_latency_ms=4.0)  # only onnx-int8 (3 ms) fits
    chosen = pick(rows, budget)
    assert chosen.chosen is None and chosen.reason.startswith("no artifact fits:")
    assert chosen.closest and all(r.format.startswith("tflite") for r in chosen.closest)
    assert pick(rows, budget, PickConfig(runtime="any")).chosen.format == "onnx-int8"


def test_runtime_of_reads_the_format_table():
    for name, spec in FORMATS.items():
        assert runtime_of(make_result(format=name)) == spec.runtime
    assert runtime_of(make_result(format="coreml-float16")) == "coreml"  # a name this edgetl does not know
    rows = _rows()
    assert of_runtime(rows, "any") == rows and len(of_runtime(rows, "onnx")) == 2
    with pytest.raises(ValueError, match="runtime must be one of 'tflite', 'onnx', 'any'"):
        PickConfig(runtime="coreml")


def test_report_gives_each_runtimes_pick(tmp_path):
    rows = _rows()
    headline, by_runtime = pick_all(rows)
    text = write_report(rows, headline, None, tmp_path, by_runtime=by_runtime, best_dir="best").read_text()
    assert "- LiteRT/TFLite: **`v1-a1-r224` tflite-int8" in text and "`best/tflite/`" in text
    assert "- onnxruntime: **`v1-a1-r224` onnx-int8" in text and "`best/onnx/`" in text
    assert text.index("**`v1-a1-r224` tflite-int8") < text.index("Per runtime")  # the headline comes first
    assert "2 on the Pareto front (accuracy ↑, p50 latency ↓, size ↓) of the LiteRT/TFLite artifacts." in text


def _fake_sweep_files(out: Path, rows) -> None:
    """What copy_best reads of a sweep: the artifacts, labels.txt, run.json and each artifact's bench record."""
    for r in rows:
        point = out / "points" / r.point
        (point / "bench").mkdir(parents=True, exist_ok=True)
        (out / r.path).write_bytes(r.format.encode())
        (point / "labels.txt").write_text("a\nb\n")
        (point / "bench" / f"{r.format}.json").write_text(json.dumps({"input_dtype": "float32"}))
        run = {
            "classes": ["a", "b"],
            "metrics": {"num_train": 1, "num_validation": 1, "num_test": N},
            "backbone": {"weights": "none"},
            "training": {},
        }
        (point / "run.json").write_text(json.dumps(run))


def test_best_holds_the_headline_pick_and_one_folder_per_runtime(tmp_path):
    rows = _rows()
    out = tmp_path / "run"
    _fake_sweep_files(out, rows)
    (out / "best" / "stale").mkdir(parents=True)  # a previous run's best/ goes as a whole
    config = SweepConfig(image_dir=tmp_path, output_dir=out, points=(BackboneSpec("v1", 1.0, 224),))
    result = finish_sweep(config, rows, [])
    assert result.pick.format == "tflite-int8"
    best = out / "best"
    assert {p.name for p in best.iterdir()} == {"tflite-int8.tflite", "labels.txt", "model_card.md", "tflite", "onnx"}
    assert (best / "tflite-int8.tflite").read_bytes() == b"tflite-int8"
    assert (best / "tflite" / "tflite-int8.tflite").is_file() and (best / "onnx" / "onnx-int8.onnx").is_file()
    assert "on onnxruntime" in (best / "onnx" / "model_card.md").read_text()
    assert "on LiteRT/TFLite" in (best / "model_card.md").read_text()
    assert "`best/onnx/`" in (out / "report.md").read_text()


def test_a_sweep_refuses_a_runtime_it_exports_nothing_for():
    point = (BackboneSpec("v1", 0.25, 96),)
    onnx_only = ExportConfig(formats=("onnx-int8",))
    with pytest.raises(ValueError, match="--runtime tflite: the sweep exports no tflite format"):
        SweepConfig(image_dir="x", output_dir="y", points=point, export=onnx_only)
    SweepConfig(image_dir="x", output_dir="y", points=point, export=onnx_only, pick=PickConfig(runtime="any"))


def test_the_runtime_flag_of_sweep_and_report():
    parser = build_parser()
    assert pick_from_args(parser.parse_args(["report", "run"])).runtime == "tflite"
    assert pick_from_args(parser.parse_args(["report", "run", "--runtime", "onnx"])).runtime == "onnx"
    args = parser.parse_args(["sweep", "--image_dir", "x", "--output_dir", "y", "--runtime", "any"])
    assert pick_from_args(args).runtime == "any"
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "run", "--runtime", "coreml"])


def test_the_device_re_pick_uses_the_runtimes_the_device_ran(tmp_path):
    rows = _rows()
    measured = [
        {
            "point": r.point,
            "format": r.format,
            "num_threads": 1,
            "status": "ok",
            **{f"latency_ms_{k}": r.latency_ms_p50 * 3 for k in ("p50", "p90", "p99", "mean")},
        }
        for r in rows
        if r.format.startswith("tflite")
    ] + [{"point": r.point, "format": r.format, "status": "skipped: no onnxruntime"} for r in rows[2:]]
    path = tmp_path / "device-phone.json"
    path.write_text(json.dumps({"kind": "edgetl-device-results", "device": {"name": "phone"}, "results": measured}))
    section = "\n".join(write_device_reports(tmp_path, rows, [path], Budget(), PickConfig(runtime="any"), 1))
    assert "pick **`v1-a1-r224` tflite-int8**" in section  # onnx cannot run there, even with --runtime any
    report = (tmp_path / "devices" / "phone" / "report.md").read_text()
    assert "- LiteRT/TFLite: **`v1-a1-r224` tflite-int8" in report and "- onnxruntime:" not in report


def test_a_front_only_bundle_carries_each_runtimes_front(tmp_path):
    from edgetl.measure.results import write_results
    from edgetl.pick.bundle import bundle_rows
    from edgetl.pick.pareto import pareto_front

    rows = _rows()
    write_results(rows, tmp_path, [])
    assert {r.format for r in pareto_front(rows)} == {"onnx-float32", "onnx-int8"}  # they dominate the .tflite files
    assert {r.format for r in bundle_rows(tmp_path, True)} == {r.format for r in rows}
