"""tools/label_image.py end to end, in subprocesses: output format, labels, errors, no TensorFlow, device venvs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetl.runtime import load_model
from edgetl.runtime.label_image import main

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tools" / "label_image.py"
SCORE_LINE = re.compile(r"^(\d\.\d{6}): (.+)$")
TIME_LINE = re.compile(r"^time: (\d+\.\d{3})ms$")
DEVICE_VENVS = {".venv-litert": "ai_edge_litert", ".venv-tflite-runtime": "tflite_runtime"}


def run_label_image(*args, python=sys.executable, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(python), str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def parse(stdout: str) -> list[dict]:
    """Result blocks: {"image": path or None, "scores": [(score, label), ...], "time_ms": float}."""
    blocks, current = [], {"image": None, "scores": []}
    for line in stdout.splitlines():
        if line.startswith("image: "):
            assert not current["scores"], f"image header inside a block: {stdout}"
            current["image"] = line[len("image: ") :]
        elif m := SCORE_LINE.match(line):
            current["scores"].append((float(m.group(1)), m.group(2)))
        elif m := TIME_LINE.match(line):
            current["time_ms"] = float(m.group(1))
            blocks.append(current)
            current = {"image": None, "scores": []}
        else:
            raise AssertionError(f"unexpected output line {line!r} in:\n{stdout}")
    assert not current["scores"], f"scores without a time line:\n{stdout}"
    return blocks


def check_blocks(blocks, tiny_models, images, top_k=3):
    assert len(blocks) == len(images)
    for block, image in zip(blocks, images):
        if len(images) > 1:
            assert block["image"] == str(image)
        scores = [s for s, _ in block["scores"]]
        assert len(scores) == top_k
        assert scores == sorted(scores, reverse=True)
        assert all(label in tiny_models.labels for _, label in block["scores"])
        assert block["time_ms"] > 0


def clear_images(tiny_models, margin: float = 0.5) -> list[int]:
    """Images on which the Keras model's top class leads the runner-up by at least `margin`.

    int8 is not bit-faithful to float, and int8 kernels differ between runtimes (LiteRT's default XNNPACK
    delegate runs int8 too; tflite_runtime 2.14 uses its builtin kernels): on close calls they may
    legitimately disagree with Keras, so int8 top labels are checked on clear-cut images only.
    """
    ordered = np.sort(tiny_models.keras_probs, axis=1)
    picked = [i for i, row in enumerate(ordered) if row[-1] - row[-2] >= margin]
    assert len(picked) >= 4, "too few clear-cut images for a meaningful check"
    return picked


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr}"


# ---------------------------------------------------------------------------------------------------------
# output


@pytest.mark.parametrize("which", ["float_tflite", "int8_tflite", "onnx"])
def test_prints_scores_labels_and_time(tiny_models, which):
    model_path = getattr(tiny_models, which)
    proc = run_label_image("--model_file", model_path, "--image", *tiny_models.images)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    blocks = parse(proc.stdout)
    check_blocks(blocks, tiny_models, tiny_models.images)
    printed = np.array([[dict((l, s) for s, l in b["scores"])[label] for label in tiny_models.labels] for b in blocks])
    expected = load_model(model_path).predict(tiny_models.pixels)
    np.testing.assert_allclose(printed, expected, atol=2e-6)  # what predict() says, to print precision
    tops = [b["scores"][0][1] for b in blocks]
    if which == "int8_tflite":
        for i in clear_images(tiny_models):
            assert tops[i] == tiny_models.keras_top[i], tiny_models.images[i]
    else:
        assert tops == tiny_models.keras_top
        np.testing.assert_allclose(printed, tiny_models.keras_probs, atol=1e-4)


def test_single_image_output_is_tensorflow_label_image_format(tiny_models):
    proc = run_label_image("-m", tiny_models.float_tflite, "-i", tiny_models.images[0], "--top_k", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert SCORE_LINE.match(lines[0]) and SCORE_LINE.match(lines[1]) and TIME_LINE.match(lines[2])
    assert lines[0].endswith(f": {tiny_models.keras_top[0]}")


def test_in_process_main_and_input_mean_std(tiny_models, capsys):
    image = tiny_models.images[1]
    assert (
        main(
            [
                "--model_file",
                str(tiny_models.float_tflite),
                "--image",
                str(image),
                "--input_mean",
                "127.5",
                "--input_std",
                "127.5",
                "--num_threads",
                "2",
            ]
        )
        == 0
    )
    blocks = parse(capsys.readouterr().out)
    x = (tiny_models.pixels[1:2].astype(np.float32) - 127.5) / 127.5
    expected = np.asarray(tiny_models.keras_model.predict(x, verbose=0))[0]
    printed = dict((label, s) for s, label in blocks[0]["scores"])
    np.testing.assert_allclose([printed[label] for label in tiny_models.labels], expected, atol=1e-4)


def test_label_file_overrides_embedded_labels(tiny_models, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a cat\n\nthe dog\nfish  \n", encoding="utf-8")
    proc = run_label_image("-m", tiny_models.int8_tflite, "-l", labels, "-i", tiny_models.images[0])
    assert proc.returncode == 0, proc.stderr
    printed = {label for _, label in parse(proc.stdout)[0]["scores"]}
    assert printed == {"a cat", "the dog", "fish"}


def test_model_without_labels_needs_label_file(tiny_models, tmp_path):
    image = tiny_models.images[0]
    proc = run_label_image("-m", tiny_models.bare_float_tflite, "-i", image)
    no_traceback(proc)
    assert proc.returncode == 2 and proc.stdout == ""
    assert str(tiny_models.bare_float_tflite) in proc.stderr and "--label_file" in proc.stderr
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(tiny_models.labels))
    proc = run_label_image("-m", tiny_models.bare_float_tflite, "-l", labels, "-i", image)
    assert proc.returncode == 0, proc.stderr
    assert parse(proc.stdout)[0]["scores"][0][1] == tiny_models.keras_top[0]
    # ONNX without metadata_props: the same.
    assert run_label_image("-m", tiny_models.bare_onnx, "-l", labels, "-i", image).returncode == 0
    assert run_label_image("-m", tiny_models.bare_onnx, "-i", image).returncode == 2


def test_label_count_mismatch_and_missing_label_file(tiny_models, tmp_path):
    labels = tmp_path / "four.txt"
    labels.write_text("a\nb\nc\nd\n")
    proc = run_label_image("-m", tiny_models.float_tflite, "-l", labels, "-i", tiny_models.images[0])
    no_traceback(proc)
    assert proc.returncode == 2 and "4 labels" in proc.stderr and "3 classes" in proc.stderr
    proc = run_label_image("-m", tiny_models.float_tflite, "-l", tmp_path / "nope.txt", "-i", tiny_models.images[0])
    no_traceback(proc)
    assert proc.returncode == 2 and "nope.txt" in proc.stderr


# ---------------------------------------------------------------------------------------------------------
# errors


def test_bad_image_is_reported_and_the_rest_classified(tiny_models, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    missing = tmp_path / "missing.jpg"
    good = tiny_models.images[:2]
    proc = run_label_image("-m", tiny_models.float_tflite, "-i", good[0], bad, text, missing, good[1])
    no_traceback(proc)
    assert proc.returncode == 1
    errors = proc.stderr.splitlines()
    for path in (bad, text, missing):
        assert sum(str(path) in line for line in errors) == 1, proc.stderr
    blocks = parse(proc.stdout)
    assert [b["image"] for b in blocks] == [str(good[0]), str(good[1])]
    assert [b["scores"][0][1] for b in blocks] == tiny_models.keras_top[:2]


def make_bad_models(tiny_models, d: Path) -> dict[str, Path]:
    jpeg = tiny_models.images[-1].read_bytes()
    tflite = tiny_models.float_tflite.read_bytes()
    onnx = tiny_models.onnx.read_bytes()
    files = {
        "photo.tflite": jpeg,
        "notes.tflite": b"# not a model\nlayers: 3\n",
        "empty.tflite": b"",
        "half.tflite": tflite[: len(tflite) // 2],
        "short.tflite": tiny_models.bare_float_tflite.read_bytes()[:-100],
        "photo.onnx": jpeg,
        "half.onnx": onnx[: len(onnx) // 2],
        "model.h5": tflite,
    }
    for name, content in files.items():
        (d / name).write_bytes(content)
    return {name: d / name for name in [*files, "missing.tflite"]}


def test_wrong_model_files_give_one_clear_line(tiny_models, tmp_path):
    for name, path in make_bad_models(tiny_models, tmp_path).items():
        proc = run_label_image("-m", path, "-i", tiny_models.images[0])
        no_traceback(proc)
        assert proc.returncode == 2, (name, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("label_image: error:")]
        assert len(errors) == 1 and str(path) in errors[0], (name, proc.stderr)
        assert proc.stdout == ""


def test_usage_errors():
    proc = run_label_image("--model_file", "x.tflite")
    assert proc.returncode == 2 and "--image" in proc.stderr
    proc = run_label_image("-m", "x.tflite", "-i", "y.jpg", "--num_threads", "0")
    assert proc.returncode == 2 and "--num_threads" in proc.stderr
    assert run_label_image("--help").returncode == 0


# ---------------------------------------------------------------------------------------------------------
# no TensorFlow on the device path

BLOCKER = r"""
import runpy, sys
BLOCKED = {"tensorflow", "keras", "tf_keras", "tf2onnx"}
attempts = []
class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ImportError(f"import of {name} blocked by the test")
        return None
sys.meta_path.insert(0, BlockTensorFlow())
script, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(f"BLOCKER attempts={attempts} loaded={loaded}", file=sys.stderr)
"""


@pytest.mark.parametrize("which", ["float_tflite", "int8_tflite", "onnx"])
def test_label_image_never_imports_tensorflow(tiny_models, which):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER,
            str(SCRIPT),
            "-v",
            "-m",
            str(getattr(tiny_models, which)),
            "-i",
            *map(str, tiny_models.images[:3]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tiny_models.dir,
    )
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert "BLOCKER attempts=[] loaded=[]" in proc.stderr
    assert ("via onnxruntime" if which == "onnx" else "via ai_edge_litert") in proc.stderr
    check_blocks(parse(proc.stdout), tiny_models, tiny_models.images[:3])


# ---------------------------------------------------------------------------------------------------------
# the TensorFlow-free device environments made by tools/make_device_venvs.sh


def device_python(name: str) -> Path:
    venv = REPO / name
    if not venv.is_dir():
        message = f"{venv} does not exist: run tools/make_device_venvs.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return venv / "bin" / "python"


@pytest.mark.parametrize("which", ["float_tflite", "int8_tflite"])
@pytest.mark.parametrize("venv", list(DEVICE_VENVS))
def test_device_venv_runs_label_image(tiny_models, venv, which):
    python = device_python(venv)
    proc = run_label_image(
        "-v", "-m", getattr(tiny_models, which), "-i", *tiny_models.images, python=python, cwd=tiny_models.dir
    )
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert f"via {DEVICE_VENVS[venv]}" in proc.stderr
    blocks = parse(proc.stdout)
    check_blocks(blocks, tiny_models, tiny_models.images)
    tops = [b["scores"][0][1] for b in blocks]
    printed = np.array([[dict((l, s) for s, l in b["scores"])[label] for label in tiny_models.labels] for b in blocks])
    if which == "float_tflite":
        assert tops == tiny_models.keras_top
        np.testing.assert_allclose(printed, tiny_models.keras_probs, atol=1e-4)
    else:
        np.testing.assert_allclose(printed.sum(axis=1), 1.0, atol=0.05)
        for i in clear_images(tiny_models):
            assert tops[i] == tiny_models.keras_top[i], tiny_models.images[i]


@pytest.mark.parametrize("venv", list(DEVICE_VENVS))
def test_device_venv_rejects_bad_models_cleanly(tiny_models, venv, tmp_path):
    """tflite_runtime 2.14 segfaults on a truncated flatbuffer unless the runtime checks it first."""
    python = device_python(venv)
    for name, path in make_bad_models(tiny_models, tmp_path).items():
        if path.suffix == ".onnx":
            continue  # no onnxruntime on the device
        proc = run_label_image("-m", path, "-i", tiny_models.images[0], python=python, cwd=tmp_path)
        no_traceback(proc)
        assert proc.returncode == 2, (name, proc.stderr)
        assert str(path) in proc.stderr
