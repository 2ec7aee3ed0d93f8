"""Model files from strangers (issue 28): bounded reads, every reader error a one-line user error, and no
terminal injection, through the real readers and the real label_image (tools/hostile_models.py builds the
files from the session's tiny exported models).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from edgetl.runtime.appended_zip import MAX_ARCHIVE_BYTES, MAX_LABEL_CHARS, MAX_LABELS, MAX_MEMBER_BYTES
from edgetl.runtime.metadata import ModelFileError, read_embedded

REPO = Path(__file__).resolve().parents[1]
LABEL_IMAGE = REPO / "tools" / "label_image.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("hostile_models", REPO / "tools" / "hostile_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hostile = _load_tool()


@pytest.fixture(scope="module")
def model(tiny_models) -> bytes:
    return tiny_models.float_tflite.read_bytes()


def _write(tmp_path: Path, data: bytes, name: str = "model.tflite") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(ModelFileError) as info:
        read_embedded(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message
    return message


def _with_members(model: bytes, extra: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    flatbuffer, members = hostile.split_model(model)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in {**members, **extra}.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return flatbuffer + buf.getvalue()


# ---------------------------------------------------------------------------------------------------------
# bounded reads


def test_a_zip_bomb_is_refused_from_its_header_in_little_memory(model, tmp_path):
    path = _write(tmp_path, hostile.bomb(model, 64))  # 64 MiB of labels in about 64 KB
    tracemalloc.start()
    start = time.perf_counter()
    message = _refused(path, "'labels.txt'", f"{64 << 20:,} bytes", f"{MAX_MEMBER_BYTES:,}-byte limit")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < path.stat().st_size + (1 << 20), (peak, message)  # the file's bytes and little else
    assert seconds < 2


def test_a_header_that_lies_about_the_size_gains_nothing(model, tmp_path):
    path = _write(tmp_path, hostile.liar(model))  # claims 9 bytes, 4 MiB follow
    tracemalloc.start()
    _refused(path, "labels.txt")
    assert tracemalloc.get_traced_memory()[1] < path.stat().st_size + (1 << 20)
    tracemalloc.stop()


def test_a_deflated_stream_longer_than_its_header_is_cut_at_the_limit(model, tmp_path):
    """The central directory says 100 bytes; the deflate stream holds 64 MiB: at most the header's bytes
    are inflated, then the CRC fails."""
    data = bytearray(hostile.bomb(model, 64))
    zip_at = data.find(b"PK\x03\x04", len(data) - (1 << 20))
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size, local and central
        pos = data.find(sig, zip_at)
        while pos >= 0:
            if b"labels.txt" in data[pos : pos + 60]:
                data[pos + at : pos + at + 4] = (100).to_bytes(4, "little")
            pos = data.find(sig, pos + 4)
    tracemalloc.start()
    _refused(_write(tmp_path, bytes(data)), "labels.txt", "corrupt")
    assert tracemalloc.get_traced_memory()[1] < len(data) + (1 << 20)
    tracemalloc.stop()


@pytest.mark.parametrize("method, name", [(zipfile.ZIP_BZIP2, "12"), (zipfile.ZIP_LZMA, "14")])
def test_only_stored_and_deflated_members_are_read(model, tmp_path, method, name):
    path = _write(tmp_path, _with_members(model, {"notes.txt": b"hello"}, method))
    _refused(path, "compression method", name, "stored (0) and deflated (8)")


def test_a_deflated_archive_from_an_older_edgetl_is_still_read(model, tmp_path, tiny_models):
    flatbuffer, members = hostile.split_model(model)
    path = _write(tmp_path, hostile.with_archive(flatbuffer, members, deflated=tuple(members)))
    assert read_embedded(path)[1] == tiny_models.labels


def test_too_many_members_and_too_many_bytes_in_all_are_refused(model, tmp_path):
    many = {f"f{i}.txt": b"x" for i in range(80)}
    _refused(_write(tmp_path, _with_members(model, many), "many.tflite"), "82 members", "limit of 64")
    big = {f"big{i}.bin": bytes(3 << 20) for i in range(3)}  # each within the member limit
    _refused(_write(tmp_path, _with_members(model, big), "big.tflite"), f"{MAX_ARCHIVE_BYTES:,} bytes")


def test_too_many_labels_and_too_long_a_label_are_refused(model, tmp_path):
    flatbuffer, members = hostile.split_model(model)
    many = "".join(f"c{i}\n" for i in range(MAX_LABELS + 1)).encode()
    path = _write(tmp_path, hostile.with_archive(flatbuffer, {**members, "labels.txt": many}), "many.tflite")
    _refused(path, "labels.txt", f"{MAX_LABELS:,}")
    long = ("a" * (MAX_LABEL_CHARS + 1) + "\nb\n").encode()
    path = _write(tmp_path, hostile.with_archive(flatbuffer, {**members, "labels.txt": long}), "long.tflite")
    _refused(path, "label 0", f"{MAX_LABEL_CHARS + 1:,} characters")


def test_nested_or_mistyped_edgetl_json_is_a_model_file_error(model, tmp_path):
    flatbuffer, members = hostile.split_model(model)
    deep = hostile.with_archive(flatbuffer, {**members, "edgetl.json": b"[" * 100_000})
    _refused(_write(tmp_path, deep, "deep.tflite"), "edgetl.json", "JSON")
    meta = json.loads(members["edgetl.json"])
    for bad in ({"input": {"size": "big"}}, {"input": [1]}, {"labels": "cats"}, {"backbone": {"alpha": "x"}}):
        mistyped = hostile.with_archive(flatbuffer, {**members, "edgetl.json": json.dumps({**meta, **bad}).encode()})
        _refused(_write(tmp_path, mistyped, "typed.tflite"), "edgetl.json")


def test_onnx_metadata_props_are_bounded(tiny_models, tmp_path):
    data = tiny_models.onnx.read_bytes()
    big = hostile.onnx_with_props(data, {"notes": "x" * (MAX_MEMBER_BYTES + 1)})
    _refused(_write(tmp_path, big, "big.onnx"), "metadata_props", f"{MAX_MEMBER_BYTES:,}")
    many = hostile.onnx_with_props(data, {f"k{i}": "v" for i in range(1100)})
    _refused(_write(tmp_path, many, "many.onnx"), "metadata_props entries")
    labels = hostile.onnx_with_props(data, {"labels": "\n".join(f"c{i}" for i in range(MAX_LABELS + 1))})
    _refused(_write(tmp_path, labels, "labels.onnx"), "metadata_props labels", f"{MAX_LABELS:,}")


# ---------------------------------------------------------------------------------------------------------
# the real tools


def _label_image(model: Path, image: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(LABEL_IMAGE), "--model_file", str(model), "--image", str(image), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


# label_image, then the process's own peak resident memory (VmHWM: per process image, so not the pytest
# process's, which a forked child's ru_maxrss would include).
_PEAK = (
    "import runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1]\n"
    "print(f'peak_kb={peak}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory from /proc (Linux)")
def test_label_image_on_a_256_mib_bomb_exits_2_in_bounded_memory(model, tmp_path, tiny_models):
    path = _write(tmp_path, hostile.bomb(model, 256), "bomb.tflite")
    cmd = [
        sys.executable,
        "-c",
        _PEAK,
        str(LABEL_IMAGE),
        "--model_file",
        str(path),
        "--image",
        str(tiny_models.images[0]),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    error = [line for line in lines if line.startswith("label_image: error: ")]
    assert len(error) == 1 and "labels.txt" in error[0] and f"{MAX_MEMBER_BYTES:,}-byte limit" in error[0]
    peak_mb = int(lines[-1].removeprefix("peak_kb=")) / 1024
    # Reading the member would cost 256 MB and more; the process (Python, numpy, the runtime) stays small.
    assert peak_mb < 150, peak_mb


def test_label_image_prints_an_injected_label_escaped(model, tmp_path, tiny_models):
    path = _write(tmp_path, hostile.inject_tflite(model), "inject.tflite")
    proc = _label_image(path, tiny_models.images[0], "--top_k", "10")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "\\x1b]0;edgetl was here\\x07\\x1b[2Jcats" in proc.stdout
    assert hostile.INJECTED_LABEL.startswith("\x1b]0;edgetl was here\x07\x1b[2J")


def test_label_image_escapes_file_names_in_errors(tmp_path, tiny_models):
    path = _write(tmp_path, b"\x1b[2J not a model", "evil\x1b[2J.tflite")
    proc = _label_image(path, tiny_models.images[0])
    assert proc.returncode == 2
    assert "\x1b" not in proc.stderr and "evil\\x1b[2J.tflite" in proc.stderr


def test_edgetl_bench_and_label_on_a_bomb_are_one_line_and_exit_2(model, tmp_path, tiny_models, capsys):
    from edgetl.cli.main import main

    path = _write(tmp_path, hostile.bomb(model, 16), "bomb.tflite")
    assert main(["bench", str(path), "--image_dir", str(tmp_path)]) == 2
    assert main(["label", "--model_file", str(path), "--image", str(tiny_models.images[0])]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 2 and all("labels.txt" in line and "limit" in line for line in err), err


def _with_filter_scale(path: Path, value: float) -> bytes:
    """The int8 model with one per-channel filter scale of a convolution set to `value`."""
    import struct

    from ai_edge_litert.interpreter import Interpreter

    data = path.read_bytes()
    for t in Interpreter(model_path=str(path)).get_tensor_details():
        scales = t["quantization_parameters"]["scales"]
        if t["dtype"].__name__ == "int8" and len(t["shape"]) == 4 and len(scales) > 1:
            pattern = struct.pack("<f", float(scales[0]))
            if data.count(pattern) == 1:
                pos = data.index(pattern)
                return data[:pos] + struct.pack("<f", value) + data[pos + 4 :]
    pytest.fail("no convolution filter scale found")


def test_a_damaged_quantization_scale_is_refused_before_litert_aborts_on_it(tiny_models, tmp_path):
    """LiteRT 2.x aborts the process (double free) on a requantization scale of 256 or more; the structural
    check refuses it first, with --no_verify too. A scale that is only wrong still runs."""
    image = tiny_models.images[0]
    path = _write(tmp_path, _with_filter_scale(tiny_models.int8_tflite, 1e30), "scale.tflite")
    proc = _label_image(path, image, "--no_verify")
    assert proc.returncode == 2, proc.stderr[-500:]
    assert "requantization scale" in proc.stderr and "damaged" in proc.stderr
    path = _write(tmp_path, _with_filter_scale(tiny_models.int8_tflite, 1.0), "wrong.tflite")
    assert _label_image(path, image, "--no_verify").returncode == 0
