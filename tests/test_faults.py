"""Nothing lost when the disk, the process or the machine fails: real tmpfs mounts (full, read-only), SIGKILL at
named stages, RLIMIT_FSIZE, a power-cut truncation, damaged model bytes. One tiny sweep (V1 0.25 at 96 px with
ImageNet weights, three formats, a few real photos) is the reference every faulted run must end up equal to.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FLOWERS, REPO_ROOT, WEIGHTS_DIR, copy_subset

pytestmark = pytest.mark.slow  # sweeps in subprocesses: minutes

FORMATS = "tflite-float32,tflite-int8,onnx-float32"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)}


def sweep_args(data: Path, out: Path, cache: Path) -> list[str]:
    return [
        "sweep",
        "--image_dir",
        str(data),
        "--weights_dir",
        str(WEIGHTS_DIR),
        "--backbones",
        "v1",
        "--alphas",
        "0.25",
        "--resolutions",
        "96",
        "--formats",
        FORMATS,
        "--how_many_training_steps",
        "100",
        "--calibration_images",
        "12",
        "--min_timed_runs",
        "5",
        "--min_timed_seconds",
        "0.05",
        "--bottleneck_dir",
        str(cache),
        "--output_dir",
        str(out),
    ]


def edgetl(*args: str, kill_at: str | None = None, trace: Path | None = None, limit_bytes: int | None = None):
    env = dict(ENV)
    if kill_at:
        env["EDGETL_KILL_AT"] = kill_at
    if trace:
        env["EDGETL_TRACE"] = str(trace)

    def limit():
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "edgetl.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=limit,
        timeout=600,
    )


def results(out: Path) -> dict:
    """What must not change whatever faults happened: every figure but latency and memory."""
    rows = json.loads((out / "results.json").read_text())["results"]
    keep = ("accuracy", "size_bytes", "sha256", "status", "predictions", "confusion_matrix")
    return {(r["point"], r["format"]): {k: r[k] for k in keep} for r in rows}


def stages(trace: Path) -> list[str]:
    return trace.read_text().split() if trace.exists() else []


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs here ({done.stderr.strip()}); the disk-fault tests need root"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return copy_subset(FLOWERS, tmp_path_factory.mktemp("faults") / "photos", ["daisy", "roses"], 20)


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory) -> Path:
    """The uninterrupted sweep."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = edgetl(*sweep_args(photos, out, out.parent / "cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


KILL_POINTS = [
    "features#1",
    "head",
    "save_run:tflite",
    "convert:tflite-float32",
    "check:tflite-float32",
    "calibration",
    "bias_correction",
    "convert:tflite-int8",
    "manifest:tflite-int8",
    "convert:onnx-float32",
    "bench:tflite-float32",
    "bench:tflite-int8",
    "report",
]


def test_killed_at_every_stage_resumes_to_the_same_results_without_redoing_finished_units(photos, reference, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    traces = []
    for i, point in enumerate(KILL_POINTS):  # each run resumes the one before, and is killed further on
        trace = tmp_path / f"trace-{i}.txt"
        done = edgetl(*sweep_args(photos, out, cache), kill_at=point, trace=trace)
        assert done.returncode == -9, f"not killed at {point}: exit {done.returncode}\n{done.stderr[-2000:]}"
        assert stages(trace)[-1] == point.split("#")[0]
        traces.append(stages(trace))
    final = tmp_path / "trace-final.txt"
    done = edgetl(*sweep_args(photos, out, cache), trace=final)
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(out) == results(reference)
    # Finished units are not redone: `next_run[P]` is what the run after the kill at P did.
    next_run = dict(zip(KILL_POINTS, traces[1:] + [stages(final)]))
    # 40 photos in batches of 32: killed after the first, the next run computes (and checkpoints) only the second
    assert next_run["features#1"].count("features") == 1
    for killed_at in KILL_POINTS[KILL_POINTS.index("convert:tflite-float32") :]:  # trained before those kills
        assert "head" not in next_run[killed_at] and "features" not in next_run[killed_at], killed_at
    assert "convert:tflite-float32" not in next_run["calibration"]  # tflite-float32 was finished then
    assert "convert:tflite-int8" in next_run["manifest:tflite-int8"]  # killed before export.json recorded it
    assert not any(s.startswith("convert:") for s in next_run["bench:tflite-float32"])
    assert "bench:tflite-float32" not in next_run["bench:tflite-int8"]
    assert not any(s.startswith(("convert:", "bench:")) for s in next_run["report"]) and "report" in next_run["report"]
    for leftover in out.rglob("*.tmp"):  # a kill may leave a temp file; nothing ever reads one
        assert leftover.name.startswith("."), leftover


def test_a_write_killed_by_the_file_size_limit_is_redone(photos, reference, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    # Python ignores SIGXFSZ, so the write that crosses the limit fails with EFBIG instead of killing the process
    done = edgetl(*sweep_args(photos, out, cache), limit_bytes=600_000)
    assert done.returncode == 2 and "file too large" in done.stderr and "ulimit -f" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not list(out.rglob(".model.tmp.keras"))
    assert not (out / "points" / "v1-a0.25-r96" / "run.json").exists()
    done = edgetl(*sweep_args(photos, out, cache))
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(out) == results(reference)


def test_a_truncated_newest_artifact_is_detected_and_only_its_units_redone(photos, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    artifacts = sorted((out / "points").glob("*/artifacts/*.*[tx]"), key=lambda p: p.stat().st_mtime_ns)
    newest = [p for p in artifacts if p.suffix in (".tflite", ".onnx")][-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a power cut
    trace = tmp_path / "trace.txt"
    done = edgetl(*sweep_args(photos, out, reference.parent / "cache"), trace=trace)
    assert done.returncode == 0, done.stderr[-3000:]
    fmt = newest.stem
    assert [s for s in stages(trace) if s.startswith(("convert:", "bench:", "head"))] == [
        f"convert:{fmt}",
        f"bench:{fmt}",
    ]
    assert results(out) == results(reference)


def test_full_disk_exits_2_naming_the_path_keeps_finished_work_and_resumes(photos, reference, tmp_path):
    used = sum(p.stat().st_size for p in (reference / "points").rglob("*") if p.is_file())
    with tmpfs(tmp_path / "small", f"{used // 3}") as disk:
        out = disk / "run"
        done = edgetl(*sweep_args(photos, out, tmp_path / "cache"))
        assert done.returncode == 2, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        message = [line for line in done.stderr.splitlines() if "no space left on device" in line]
        assert message and str(disk) in message[0] and "run the same command again" in message[0]
        assert not [p for p in out.rglob("*") if ".tmp" in p.name], "a failed write left its temp files"
        remount(disk, "size=200m")
        trace = tmp_path / "trace.txt"
        done = edgetl(*sweep_args(photos, out, tmp_path / "cache"), trace=trace)
        assert done.returncode == 0, done.stderr[-3000:]
        assert results(out) == results(reference)


def test_read_only_output_is_exit_2_and_a_read_only_cache_only_a_warning(photos, tmp_path):
    with tmpfs(tmp_path / "ro", "10m") as disk:
        remount(disk, "ro")
        done = edgetl(*sweep_args(photos, disk / "run", tmp_path / "cache"))
        assert done.returncode == 2 and "read-only file system" in done.stderr and "Traceback" not in done.stderr
        out = tmp_path / "run"
        done = edgetl(*sweep_args(photos, out, disk / "cache"))
        assert done.returncode == 0, done.stderr[-3000:]
        warnings = [line for line in (done.stdout + done.stderr).splitlines() if "cannot be written" in line]
        assert len(warnings) == 1 and "bottleneck cache" in warnings[0] and "in memory" in warnings[0]


def test_damaged_model_bytes_are_refused_by_label_image_verify_and_bench(photos, reference, tmp_path):
    artifact = reference / "points" / "v1-a0.25-r96" / "artifacts" / "tflite-int8.tflite"
    image = sorted(photos.glob("daisy/*"))[0]
    label = [sys.executable, str(REPO_ROOT / "tools" / "label_image.py"), "--verify", "--image", str(image)]
    intact = subprocess.run([*label, "--model_file", str(artifact)], capture_output=True, text=True, env=ENV)
    assert intact.returncode == 0, intact.stderr
    damaged = tmp_path / "damaged.tflite"
    data = bytearray(artifact.read_bytes())
    rng = random.Random(0)
    for i in rng.sample(range(1000, len(data) // 2), 200):  # 200 random bytes inside the flatbuffer
        data[i] ^= 0xFF
    damaged.write_bytes(bytes(data))
    refused = subprocess.run([*label, "--model_file", str(damaged)], capture_output=True, text=True, env=ENV)
    assert refused.returncode == 2 and "damaged" in refused.stderr, refused.stdout + refused.stderr
    bench = edgetl("bench", str(damaged), "--image_dir", str(photos))
    assert bench.returncode == 2 and "damaged" in bench.stderr
    rows = json.loads((reference / "results.json").read_text())["results"]
    assert all(len(r["sha256"]) == 64 for r in rows)


def test_a_sweep_warns_before_starting_when_the_disk_looks_too_small(photos, tmp_path):
    from edgetl.data.dataset import scan_dataset
    from edgetl.features.backbones import BackboneSpec
    from edgetl.sweep.config import SweepConfig
    from edgetl.sweep.space import check_space, estimate_space

    with tmpfs(tmp_path / "tiny", "1m") as disk:
        config = SweepConfig(image_dir=photos, output_dir=disk / "run", points=(BackboneSpec("v2", 1.0, 224),))
        dataset = scan_dataset(photos)
        cache_need, out_need = estimate_space(config, dataset)
        assert out_need > 20e6 and cache_need > len(dataset.records) * 4096  # a V2 1.0 point: tens of MB
        said: list[str] = []
        check_space(config, dataset, said.append)
        warnings = [s for s in said if s.startswith("warning:")]
        assert len(warnings) == 1 and str(disk / "run") in warnings[0] and "MB free" in warnings[0]
        assert said[0].startswith("disk: about")  # announced whether or not it fits
        roomy = SweepConfig(
            image_dir=photos, output_dir=tmp_path / "run", points=config.points, features=config.features
        )
        said.clear()
        check_space(roomy, dataset, said.append)
        assert not [s for s in said if "output directory" in s]


def test_a_sweep_announces_the_pixel_store_it_builds_and_refuses_one_that_cannot_fit(photos, tmp_path):
    from edgetl.data.dataset import scan_dataset
    from edgetl.data.pixels import PIXELS_DIR, build_store
    from edgetl.features.backbones import BackboneSpec
    from edgetl.io.files import DiskError
    from edgetl.sweep.config import SweepConfig
    from edgetl.sweep.space import check_space

    points = (BackboneSpec("v1", 0.25, 96), BackboneSpec("v1", 0.25, 128))
    config = SweepConfig(image_dir=photos, output_dir=tmp_path / "run", points=points)
    dataset = scan_dataset(photos)
    said: list[str] = []
    check_space(config, dataset, said.append)
    announced = float(said[0].split("decoded-pixel store ")[1].split(" MB")[0])
    store = build_store(tmp_path / "run" / PIXELS_DIR, dataset.records, [96, 128])
    real = sum(f.stat().st_size for f in (tmp_path / "run" / PIXELS_DIR).glob("r*.u8"))
    store.close()
    assert real == len(dataset.records) * (96 * 96 + 128 * 128) * 3
    assert abs(announced - real / 1e6) <= 0.5  # printed in whole MB
    with tmpfs(tmp_path / "tiny", "1m") as disk:
        with pytest.raises(DiskError, match="decoded-pixel store .* MB free there. Nothing was decoded"):
            build_store(disk / "run" / PIXELS_DIR, dataset.records, [96, 128])  # 40 photos: 3 MB
        assert not (disk / "run" / PIXELS_DIR).exists()
