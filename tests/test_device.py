"""Re-picking on a device's own latencies (edgetl.pick.device): fast, constructed rows and device files."""

from __future__ import annotations

import json

import pytest
from conftest import make_result

from edgetl.pick.device import device_rows, read_device_results, write_device_reports
from edgetl.pick.pareto import Budget, PickConfig, pick


def _row(point: str, fmt: str, macs: int, host_p50: float, right: int = 326):
    n = 360
    return make_result(
        right / n,
        host_p50,
        2.0 if "int8" in fmt else 8.0,
        point=point,
        format=fmt,
        macs=macs,
        num_threads=1,
        predictions=[0] * right + [1] * (n - right),
        labels=[0] * n,
    )


def _device_file(tmp_path, rows: list[dict], name="phone"):
    path = tmp_path / f"device-{name}.json"
    path.write_text(
        json.dumps({"kind": "edgetl-device-results", "device": {"name": name, "cores": 8}, "results": rows})
    )
    return path


def _measured(point, fmt, p50, threads=1):
    return {
        "point": point,
        "format": fmt,
        "num_threads": threads,
        "status": "ok",
        "latency_ms_p50": p50,
        "latency_ms_p90": p50 * 1.1,
        "latency_ms_p99": p50 * 1.3,
        "latency_ms_mean": p50 * 1.05,
        "load_ms": 5.0,
        "first_inference_ms": 2 * p50,
        "peak_rss_mib": 40.0,
        "other_cpu_cores": 0.0,
    }


def test_a_device_where_int8_is_fastest_moves_the_pick(tmp_path):
    # On the host int8 is slower than float32 (as on some x86 machines); both tied on accuracy.
    host = [_row("v1-a1-r224", "tflite-float32", 569_000_000, 4.0), _row("v1-a1-r224", "tflite-int8", 569_000_000, 6.0)]
    assert pick(host, Budget()).chosen.format == "tflite-float32"
    device = read_device_results(
        _device_file(
            tmp_path, [_measured("v1-a1-r224", "tflite-float32", 30.0), _measured("v1-a1-r224", "tflite-int8", 11.0)]
        )
    )
    rows, _ = device_rows(host, device, 1)
    assert {r.latency_source for r in rows} == {"device"}
    assert pick(rows, Budget()).chosen.format == "tflite-int8"


def test_unmeasured_artifacts_are_estimated_from_a_power_law_with_its_leave_one_out_error(tmp_path):
    macs = [15_000_000, 50_000_000, 150_000_000, 300_000_000, 569_000_000]
    host = [_row(f"p{i}", "tflite-int8", m, m / 1e8) for i, m in enumerate(macs)]
    # the device's latency is exactly 2 ms per 10^8 MACs to the power 0.9: a power law the fit recovers
    true = {f"p{i}": 2.0 * (m / 1e8) ** 0.9 for i, m in enumerate(macs)}
    device = read_device_results(
        _device_file(tmp_path, [_measured(p, "tflite-int8", true[p]) for p in ("p0", "p1", "p3", "p4")])
    )
    rows, fits = device_rows(host, device, 1)
    estimated = next(r for r in rows if r.point == "p2")
    assert estimated.latency_source == "estimate"
    assert estimated.latency_ms_p50 == pytest.approx(true["p2"], rel=1e-6)
    (fit,) = fits
    assert fit.method == "power law in MACs" and fit.measured == 4 and fit.loo_max_error < 1e-6


def test_formats_the_device_cannot_run_are_left_out_and_bad_files_named(tmp_path):
    host = [_row("a", "tflite-int8", 10, 1.0), _row("a", "onnx-int8", 10, 0.5)]
    device = read_device_results(
        _device_file(
            tmp_path,
            [
                _measured("a", "tflite-int8", 3.0),
                {"point": "a", "format": "onnx-int8", "status": "skipped: no onnxruntime"},
            ],
        )
    )
    rows, _ = device_rows(host, device, 1)
    assert [r.format for r in rows] == ["tflite-int8"]
    with pytest.raises(ValueError, match="at 4 thread"):
        device_rows(host, device, 4)
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not an edgetl device results file"):
        read_device_results(bad)


def test_device_reports_say_when_the_pick_rests_on_an_estimate(tmp_path):
    host = [_row("small", "tflite-int8", 10_000_000, 5.0), _row("big", "tflite-int8", 500_000_000, 1.0, right=327)]
    device = _device_file(tmp_path, [_measured("big", "tflite-int8", 4.0)])  # "small" is estimated from the ratio
    section = write_device_reports(tmp_path, host, [device], Budget(), PickConfig(), 1)
    text = "\n".join(section)
    assert "phone" in text and "1 of 2 latencies estimated" in text
    assert (tmp_path / "devices" / "phone" / "report.md").is_file()
    assert "Host and device latency" in (tmp_path / "devices" / "phone" / "report.md").read_text()
