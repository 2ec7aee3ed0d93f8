"""edgetl installed from its wheel, outside the source tree: `edgetl bundle`, `edgetl label` and the device benchmark.

The wheel is built from a copy of pyproject.toml and edgetl/ and installed (without dependencies) into a fresh
venv with no source tree on its path; the dependencies (numpy, Pillow, LiteRT, onnxruntime) come from this
interpreter's site-packages through a .pth line, which adds the folder but not its editable-install hooks.
About 25 s on a busy 2-core machine (10 s to build and install, the rest running the commands), so not slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_result

from edgetl.measure.results import write_results

REPO = Path(__file__).resolve().parents[1]
POINT = "v1-a0.25-r96"


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(venv, env): a venv holding only the edgetl wheel, the dependencies on its path through a .pth."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src)
    shutil.copytree(REPO / "edgetl", src / "edgetl", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # This interpreter's setuptools when it has one (fast, offline); else pip fetches it (3.12+ venvs lack it).
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _run([*pip, "wheel", "--no-deps", *isolation, "-w", root / "dist", src], root, env)
    (wheel,) = (root / "dist").glob("edgetl-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], root, env)
    purelib = Path(
        _run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, env
        ).stdout.strip()
    )
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel], root, env)
    return venv, env


@pytest.fixture(scope="module")
def sweep_dir(tiny_models, tmp_path_factory) -> Path:
    """A sweep's output as `edgetl bundle` reads it: results.json, two artifacts, the point's test images."""
    out = tmp_path_factory.mktemp("sweep")
    point = out / "points" / POINT
    point.mkdir(parents=True)
    n = len(tiny_models.pixels)
    labels = tiny_models.keras_probs.argmax(axis=1)
    np.savez(point / "test_images.npz", images=tiny_models.pixels, labels=labels)
    rows = []
    for fmt, model in (("tflite-float32", tiny_models.float_tflite), ("onnx-float32", tiny_models.onnx)):
        shutil.copy2(model, point / model.name)
        rows.append(
            make_result(
                0.9,
                point=POINT,
                format=fmt,
                path=f"points/{POINT}/{model.name}",
                resolution=tiny_models.size,
                num_test_images=n,
                predictions=labels.tolist(),
                labels=labels.tolist(),
            )
        )
    write_results(rows, out)
    return out


def test_the_wheel_bundles_labels_and_benchmarks_outside_the_source_tree(installed, sweep_dir, tiny_models, tmp_path):
    venv, env = installed
    python, edgetl = venv / "bin" / "python", venv / "bin" / "edgetl"
    where = _run(
        [python, "-c", "import edgetl, sys; print(edgetl.__file__); print('tensorflow' in sys.modules)"], tmp_path, env
    )
    assert where.stdout.split() == [
        str(
            Path(venv).resolve()
            / "lib"
            / f"python{sys.version_info[0]}.{sys.version_info[1]}"
            / "site-packages"
            / "edgetl"
            / "__init__.py"
        ),
        "False",
    ]

    _run([edgetl, "bundle", sweep_dir, "-o", tmp_path / "bundle.zip"], tmp_path, env)
    with zipfile.ZipFile(tmp_path / "bundle.zip") as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "bundle")
    assert {
        "device_bench.py",
        "bundle.json",
        "edgetl/measure/device_bench.py",
        "edgetl/runtime/label_image.py",
    } <= names
    assert not any(n.startswith("tools/") for n in names)

    bench_flags = ["--num_threads", "1", "--min_timed_runs", "5", "--min_timed_seconds", "0", "--name", "wheel"]
    _run([python, "device_bench.py", *bench_flags], tmp_path / "bundle", env)  # as on a device, from the bundle
    device = json.loads((tmp_path / "bundle" / "device-wheel.json").read_text())
    assert sorted((r["format"], r["status"]) for r in device["results"]) == [
        ("onnx-float32", "ok"),
        ("tflite-float32", "ok"),
    ]
    assert all(r["agreement_with_host"] == 1.0 for r in device["results"])

    # The installed module itself, pointed at the unpacked bundle from elsewhere.
    out = tmp_path / "installed.json"
    _run(
        [python, "-m", "edgetl.measure.device_bench", "--bundle", tmp_path / "bundle", *bench_flags, "--out", out],
        tmp_path,
        env,
    )
    assert len(json.loads(out.read_text())["results"]) == 2

    label = _run(
        [edgetl, "label", "--model_file", tiny_models.float_tflite, "--image", tiny_models.images[0]], tmp_path, env
    )
    scores = [line for line in label.stdout.splitlines() if line[:1].isdigit()]
    assert scores[0].endswith(f": {tiny_models.keras_top[0]}"), label.stdout
