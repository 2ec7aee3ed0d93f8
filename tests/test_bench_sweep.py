"""tools/bench_sweep.py's pure helpers on a fake sweep output (no TensorFlow, no edgetl run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "bench_sweep.py"
SPEC = importlib.util.spec_from_file_location("bench_sweep", SCRIPT)
bench_sweep = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench_sweep)


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def fake_point(out: Path, pid: str, *, engine: bool = True, copied: bool = True) -> None:
    point = out / "points" / pid
    feature_engine = {"engine": "litert", "convert_s": 2.0, "check_s": 0.5, "forward_s": 6.0} if engine else "litert"
    write(
        point / "run.json",
        {"backbone": {"feature_engine": feature_engine}, "timings": {"features": 10.0, "head": 3.0, "save": 4.0}},
    )
    f32 = {"seconds": 0.5, **({"converted_by": "edgetl train (the run's model.tflite)"} if copied else {})}
    write(point / "artifacts" / "export.json", {"formats": {"tflite-float32": f32, "tflite-int8": {"seconds": 6.0}}})
    write(point / "bench" / "tflite-float32.json", {"seconds": 1.5, "result": {}})
    write(point / "bench" / "tflite-int8.json", {"key": "k", "result": {}})  # no "seconds" yet: n/a


def test_point_breakdown_reads_every_stage(tmp_path):
    fake_point(tmp_path, "v1-a0.25-r128")
    b = bench_sweep.point_breakdown(tmp_path / "points" / "v1-a0.25-r128", floor_s=9.0)
    assert b["rest_of_features"] == pytest.approx(1.5)
    assert b["extraction_efficiency"] == pytest.approx(0.9)
    assert b["int8_over_f32_export"] == pytest.approx(12.0) and b["int8_over_train_save"] == pytest.approx(1.5)
    assert b["f32_converted_by"] and b["bench"] == {"tflite-float32": 1.5, "tflite-int8": None}
    assert b["total_s"] == pytest.approx(10 + 3 + 4 + 0.5 + 6 + 1.5)
    assert bench_sweep.stage_cells(b) == [2.0, 0.5, 6.0, 1.5, 3.0, 4.0, 6.5, 1.5, b["total_s"]]


def test_missing_fields_are_none_not_errors(tmp_path):
    fake_point(tmp_path, "v1-a1-r224", engine=False)  # an older run.json: the engine is a string
    (tmp_path / "points" / "v1-a1-r224" / "artifacts" / "export.json").unlink()
    b = bench_sweep.point_breakdown(tmp_path / "points" / "v1-a1-r224")
    assert b["convert_s"] is None and b["rest_of_features"] is None and b["extraction_efficiency"] is None
    assert b["export"] == {} and b["int8_over_f32_export"] is None
    assert bench_sweep.verdict("int8_export_cost", b["int8_over_f32_export"]) == "n/a"


def test_sweep_breakdown_floor_sum_needs_every_point(tmp_path):
    for pid in ("v1-a0.25-r128", "v2-a1-r224"):
        fake_point(tmp_path, pid)
    write(
        tmp_path / "timings.json",
        {
            "wall_s": 100.0,
            "decode_once_s": 7.5,
            "start_s": 1.5,
            "finish_s": 4.0,
            "point_wall_s": {"v1-a0.25-r128": 27.0},
        },
    )
    (tmp_path / "points" / "v1-a0.5-r128").mkdir(parents=True)  # no run.json: not a finished point
    floor = {"v1-a0.25-r128": {"seconds": 2.0}, "v2-a1-r224": {"seconds": 8.0}}
    b = bench_sweep.sweep_breakdown(tmp_path, floor)
    assert sorted(b["points"]) == ["v1-a0.25-r128", "v2-a1-r224"]
    assert b["floor_sum_s"] == 10.0 and b["decode_once_s"] == 7.5
    assert b["start_s"] == 1.5 and b["finish_s"] == 4.0
    point = b["points"]["v1-a0.25-r128"]
    assert point["sweep_process_s"] == 27.0
    assert b["points"]["v2-a1-r224"]["sweep_process_s"] is None  # no wall time recorded for it
    assert bench_sweep.sweep_breakdown(tmp_path, {"v2-a1-r224": {"seconds": 8.0}})["floor_sum_s"] is None


def test_ratios_and_verdicts():
    assert bench_sweep.ratio(3.0, 0.0) is None and bench_sweep.ratio(None, 2.0) is None
    assert bench_sweep.verdict("sweep_overhead", 4.0) == "PASS" and bench_sweep.verdict("sweep_overhead", 4.1) == "MISS"
    assert bench_sweep.verdict("extraction_efficiency", 0.84) == "MISS"
    assert bench_sweep.worst([0.9, 0.86], "extraction_efficiency") == 0.86
    assert bench_sweep.worst([1.5, 2.5], "int8_export_cost") == 2.5
    assert bench_sweep.worst([1.5, None], "int8_export_cost") is None
    assert "n/a" in bench_sweep.target_line("x", "warm_over_cold", None)


def test_parse_args_passes_the_rest_to_the_sweep(tmp_path):
    args, extra = bench_sweep.parse_args(["--work_dir", str(tmp_path), "--", "--formats", "tflite-int8"])
    assert extra == ["--formats", "tflite-int8"] and args.out == tmp_path / "bench_sweep.json"
    assert (args.backbones, args.alphas, args.resolutions, args.epochs) == ("v1,v2", "0.25,1.0", "128,224", 5)
    assert args.sweep_name == "README sweep"
    full = ["--alphas", "0.25,0.5,0.75,1.0", "--resolutions", "128,160,192,224"]
    args, _ = bench_sweep.parse_args(["--work_dir", str(tmp_path), *full])
    assert args.sweep_name == "sweep (v1,v2 x 0.25,0.5,0.75,1.0 x 128,160,192,224)"  # not called the README's
