"""Standard TFLite Metadata (edgetl.export.tflite_metadata): edgetl's .tflite files work in the stock clients.

One tiny real model (MobileNet V1 alpha 0.25 at 96 px, random weights made to give confident, varied
answers, behind Rescaling(1/127.5, -1), a 3-class softmax), converted to float32 and full int8 (uint8 in and
out), gets standard metadata; then:

- the interpreter's outputs are bit-identical with and without it, and only one buffer and one metadata
  entry were added; the bytes are reproducible;
- read_standard_metadata gives the labels and normalization back, with the standard library alone (also run
  in the device environments, which have no TensorFlow and, for tflite-runtime, no flatbuffers);
- edgetl's own appended-ZIP reader still finds labels.txt and edgetl.json;
- MediaPipe Tasks' ImageClassifier (.venv-mediapipe) and the TFLite Task Library's (.venv-task-library), run
  through tools/client_check.py, load both files and answer with the label names, agreeing with the
  interpreter's top-1 on most photos; the bare files show the failures this metadata fixes.

Client and device environments come from tools/make_client_venvs.sh and tools/make_device_venvs.sh; a test
that needs a missing one is skipped, saying which.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest


def _missing(message: str):
    """A missing environment skips a developer's run but fails CI, where tools/install.sh makes them all."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


REPO = Path(__file__).resolve().parents[1]
CLIENT_CHECK = REPO / "tools" / "client_check.py"
CLIENT_VENVS = {"mediapipe": REPO / ".venv-mediapipe", "task_library": REPO / ".venv-task-library"}
DEVICE_VENVS = {"litert": REPO / ".venv-litert", "tflite-runtime": REPO / ".venv-tflite-runtime"}
TEST_DATA = Path(os.environ.get("EDGETL_TEST_DATA", REPO.parent / "shared")).resolve()
FLOWERS = TEST_DATA / "datasets" / "flowers"

LABELS = ["daisy", "roses", "tulips"]
SIZE = 96
FORMATS = ("tflite-float32", "tflite-int8")
CHILD_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2", "PYTHONNOUSERSITE": "1"}


def _info(fmt: str) -> dict:
    return {
        "name": "edgetl test classifier",
        "description": "Classifies flowers (test model).",
        "version": "1.0",
        "author": "edgetl tests",
        "license": "Apache-2.0",
        "labels": list(LABELS),
        "mean": 0.0,
        "std": 1.0,
        "edgetl_json": {
            "edgetl_version": "0.1.0",
            "format": fmt,
            "labels": list(LABELS),
            "backbone": {"version": "v1", "alpha": 0.25, "resolution": SIZE, "weights": "none"},
            "input": {"size": SIZE, "mean": 0.0, "std": 1.0},
            "calibration_manifest_sha256": "0" * 64 if fmt == "tflite-int8" else None,
        },
    }


def _synthetic(n: int, seed: int, h: int = SIZE, w: int = SIZE) -> np.ndarray:
    """Varied smooth uint8 images: two-colour gradients plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
        t = (t - t.min()) / (np.ptp(t) + 1e-9)
        out.append(np.clip(c1 * (1 - t) + c2 * t + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8))
    return np.stack(out)


def _photos(out_dir: Path) -> list[Path]:
    """Two real photos per flower class (sorted), else synthetic ones, written as PNG at about 1.5x the
    model's size: the clients resize without antialiasing (MediaPipe: an affine warp, the Task Library:
    OpenCV's bilinear resize) and edgetl with it (Pillow), which a random-weight net notices on a large
    downscale; at 1.5x the methods differ a little, as on a camera frame near the model size."""
    from PIL import Image, ImageOps

    out_dir.mkdir(parents=True, exist_ok=True)
    sources = []
    if FLOWERS.is_dir():
        for cls in sorted(p for p in FLOWERS.iterdir() if p.is_dir()):
            sources += sorted(cls.glob("*.jpg"))[:2]
    if len(sources) >= 6:
        arrays = []
        for src in sources:
            with Image.open(src) as im:
                arrays.append(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))
    else:
        arrays = list(_synthetic(8, seed=5, h=150, w=200))
    paths = []
    for i, arr in enumerate(arrays):
        im = Image.fromarray(arr)
        scale = SIZE * 3 / 2 / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
        paths.append(out_dir / f"photo_{i}.png")
        im.save(paths[-1])
    return paths


def _squash(path: Path) -> np.ndarray:
    """The model input edgetl builds from a photo (as edgetl.data.dataset.load_image): RGB, bilinear squash."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _build_keras_model():
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNet(
        alpha=0.25, weights=None, include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3)
    )
    # With random weights every image gets the same features: take BatchNorm statistics from one batch of
    # images (momentum 0, training mode) and raise beta so most ReLU6 units stay active.
    bns = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
        layer.beta.assign(np.full(layer.beta.shape, 2.0, np.float32))
    calib = _synthetic(32, seed=123).astype(np.float32) / 127.5 - 1.0
    backbone(calib, training=True)
    features = np.asarray(backbone(calib, training=False), np.float64)
    # A random head scaled so that answers are confident and vary from image to image.
    kernel = np.random.default_rng(7).normal(size=(features.shape[1], len(LABELS)))
    kernel = kernel / (features @ kernel).std(axis=0) * 3.0
    bias = -(features @ kernel).mean(axis=0)

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = backbone(x, training=False)
    dense = keras.layers.Dense(len(LABELS), activation="softmax")
    outputs = dense(x)
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return keras.Model(inputs, outputs)


def _zip_start(data: bytes) -> int:
    """Where the appended archive starts: its end record's directory size and offset count back to it."""
    eocd = data.rindex(b"PK\x05\x06")
    cd_size = int.from_bytes(data[eocd + 12 : eocd + 16], "little")
    cd_offset = int.from_bytes(data[eocd + 16 : eocd + 20], "little")
    return eocd - cd_size - cd_offset


def _run(interpreter_path: Path, pixels: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(interpreter_path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in pixels:
        interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from edgetl.export.tflite_metadata import with_standard_metadata

    out = tmp_path_factory.mktemp("client_metadata")
    model = _build_keras_model()
    bare = {}
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    bare["tflite-float32"] = bytes(converter.convert())

    def representative_dataset():
        for image in _synthetic(16, seed=42):
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    bare["tflite-int8"] = bytes(converter.convert())

    paths: dict[str, dict[str, Path]] = {}
    data: dict[str, bytes] = {}
    for fmt, flatbuffer in bare.items():
        data[fmt] = with_standard_metadata(flatbuffer, _info(fmt))
        paths[fmt] = {"bare": out / f"{fmt}.bare.tflite", "meta": out / f"{fmt}.tflite"}
        paths[fmt]["bare"].write_bytes(flatbuffer)
        paths[fmt]["meta"].write_bytes(data[fmt])
    photos = _photos(out / "photos")
    pixels = np.stack([_squash(p) for p in photos])
    top1 = {fmt: [LABELS[i] for i in _run(paths[fmt]["meta"], pixels).argmax(axis=1)] for fmt in FORMATS}
    return {"bare": bare, "data": data, "paths": paths, "photos": photos, "pixels": pixels, "top1": top1}


# ---------------------------------------------------------------------------------------------------------
# The file itself


@pytest.mark.parametrize("fmt", FORMATS)
def test_outputs_are_bit_identical_with_metadata(models, fmt):
    pixels = np.concatenate([models["pixels"], _synthetic(4, seed=9)])
    with_md = _run(models["paths"][fmt]["meta"], pixels)
    without = _run(models["paths"][fmt]["bare"], pixels)
    assert with_md.dtype == without.dtype
    assert np.array_equal(with_md, without)
    assert len(set(models["top1"][fmt])) > 1, "the test model answers the same for every photo"


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_only_adds_one_buffer_and_entry(models, fmt):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgetl.export.flatbuffer_repack import BUFFER_ALIGNMENT
    from edgetl.runtime.standard_metadata import METADATA_FIELD_NAME

    bare, data = models["bare"][fmt], models["data"][fmt]
    start = _zip_start(data)
    before = schema.ModelT.InitFromPackedBuf(bare, 0)
    after = schema.ModelT.InitFromPackedBuf(data[:start], 0)
    names = [m.name.decode() for m in after.metadata]
    assert names == [m.name.decode() for m in before.metadata] + [METADATA_FIELD_NAME]
    assert after.metadata[-1].buffer == len(after.buffers) - 1 == len(before.buffers)
    assert bytes(after.buffers[-1].data[4:8]) == b"M001"

    # Dropping the addition leaves the very same model: both pack to the same bytes.
    after.metadata.pop()
    after.buffers.pop()

    def pack(m) -> bytes:
        b = flatbuffers.Builder(len(bare) + 1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    assert pack(after) == pack(before)

    # Constant buffers honour the schema's force_align: 16.
    root = schema.Model.GetRootAs(data, 0)
    base = np.frombuffer(data, np.uint8).__array_interface__["data"][0]
    for i in range(root.BuffersLength()):
        buf = root.Buffers(i)
        if buf.DataLength():
            assert (buf.DataAsNumpy().__array_interface__["data"][0] - base) % BUFFER_ALIGNMENT == 0


def test_bytes_are_reproducible(models):
    from edgetl.export.tflite_metadata import with_standard_metadata

    for fmt in FORMATS:
        again = with_standard_metadata(models["bare"][fmt], _info(fmt))
        assert again == models["data"][fmt]
        # Re-populating a file that already has the metadata (archive cut off) replaces it: same bytes.
        data = models["data"][fmt]
        start = _zip_start(data)
        assert with_standard_metadata(data[:start], _info(fmt)) == data
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
        assert [i.filename for i in infos] == ["labels.txt", "edgetl.json"]
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)  # the C++ readers want them stored
    other = dict(_info("tflite-float32"), labels=["a", "b", "c"])
    assert with_standard_metadata(models["bare"]["tflite-float32"], other) != models["data"]["tflite-float32"]


def test_writer_refuses_bad_input(models):
    from edgetl.export.tflite_metadata import with_standard_metadata

    bare, data = models["bare"]["tflite-float32"], models["data"]["tflite-float32"]
    with pytest.raises(ValueError, match="appended"):
        with_standard_metadata(data, _info("tflite-float32"))
    with pytest.raises(ValueError, match="TFLite"):
        with_standard_metadata(b"\x00" * 64, _info("tflite-float32"))
    with pytest.raises(ValueError, match="labels"):
        with_standard_metadata(bare, dict(_info("tflite-float32"), labels=["a", "b"]))
    with pytest.raises(ValueError, match="lacks"):
        with_standard_metadata(bare, {k: v for k, v in _info("tflite-float32").items() if k != "mean"})


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_standard_metadata(models, fmt):
    from edgetl.runtime.standard_metadata import read_standard_metadata

    md = read_standard_metadata(models["paths"][fmt]["meta"])
    info = _info(fmt)
    assert md["labels"] == LABELS
    assert md["mean"] == [0.0, 0.0, 0.0] and md["std"] == [1.0, 1.0, 1.0]
    assert md["color_space"] == "RGB"
    assert (md["name"], md["version"], md["author"], md["license"]) == (
        info["name"],
        info["version"],
        info["author"],
        info["license"],
    )
    assert md["description"].startswith(info["description"])
    facts = md["description"].splitlines()[-1]
    assert facts.startswith("edgetl: ") and f"format={fmt}" in facts
    assert "backbone=v1" in facts and "alpha=0.25" in facts and f"resolution={SIZE}" in facts
    assert "edgetl_version=0.1.0" in facts
    assert ("calibration_manifest_sha256=" + "0" * 64 in facts) == (fmt == "tflite-int8")
    assert md["min_parser_version"] == "1.0.0"
    assert md["edgetl"] == info["edgetl_json"]
    assert md["packed_files"] == ["edgetl.json", "labels.txt"]
    assert md["output"]["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    if fmt == "tflite-int8":  # uint8 tensors: MediaPipe's writer records the full 0..255 range
        assert md["input"]["min"] == [0.0] and md["input"]["max"] == [255.0]
    else:
        assert md["input"]["min"] == [0.0] * 3 and md["input"]["max"] == [255.0] * 3
    assert read_standard_metadata(models["paths"][fmt]["bare"]) is None


def test_edgetl_appended_zip_reader_still_works(models):
    """edgetl's own reader (labels.txt and edgetl.json members of the ZIP ending the file) is unchanged."""
    from edgetl.runtime import read_metadata

    for fmt in FORMATS:
        path = models["paths"][fmt]["meta"]
        assert read_metadata(path) == _info(fmt)["edgetl_json"]
        data = path.read_bytes()
        # The archive's offsets count from its own start, as a reader that cuts it off expects.
        start = _zip_start(data)
        assert data[start : start + 4] == b"PK\x03\x04"
        with zipfile.ZipFile(io.BytesIO(data[start:])) as zf:
            assert zf.read("labels.txt").decode().splitlines() == LABELS


@pytest.mark.parametrize("venv", sorted(DEVICE_VENVS))
def test_reader_runs_in_device_venv(models, venv):
    python = DEVICE_VENVS[venv] / "bin" / "python"
    if not python.exists():
        _missing(f"{DEVICE_VENVS[venv].name} does not exist (tools/make_device_venvs.sh {venv})")
    script = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from edgetl.runtime.standard_metadata import read_standard_metadata\n"
        "out = [read_standard_metadata(p) for p in sys.argv[2:]]\n"
        "heavy = sorted(m for m in ('tensorflow', 'flatbuffers', 'mediapipe') if m in sys.modules)\n"
        "print(json.dumps({'metadata': out, 'imported': heavy}))\n"
    )
    paths = [str(models["paths"][fmt][kind]) for fmt in FORMATS for kind in ("meta", "bare")]
    proc = subprocess.run(
        [str(python), "-c", script, str(REPO), *paths], capture_output=True, text=True, timeout=60, env=CHILD_ENV
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["imported"] == []
    meta_f32, bare_f32, meta_i8, bare_i8 = doc["metadata"]
    assert bare_f32 is None and bare_i8 is None
    for md in (meta_f32, meta_i8):
        assert md["labels"] == LABELS and md["mean"] == [0.0] * 3 and md["std"] == [1.0] * 3


# ---------------------------------------------------------------------------------------------------------
# The stock clients


def _client(client: str, model_files: list[Path], images: list[Path]) -> dict:
    python = CLIENT_VENVS[client] / "bin" / "python"
    if not python.exists():
        _missing(f"{CLIENT_VENVS[client].name} does not exist (tools/make_client_venvs.sh {client.replace('_', '-')})")
    cmd = [
        str(python),
        str(CLIENT_CHECK),
        "--client",
        client,
        "--json",
        "--model_file",
        *map(str, model_files),
        "--",
        *map(str, images),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=CHILD_ENV, cwd=REPO)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"client_check printed no JSON (exit {proc.returncode}):\n{proc.stderr[-3000:]}") from None
    assert doc["client"] == client
    return doc


@pytest.mark.parametrize("client", sorted(CLIENT_VENVS))
def test_client_classifies_with_label_names(models, client):
    files = [models["paths"][fmt]["meta"] for fmt in FORMATS]
    doc = _client(client, files, models["photos"])
    for fmt, entry in zip(FORMATS, doc["models"]):
        assert "error" not in entry, f"{client} {fmt}: {entry['error']}"
        preds = entry["predictions"]
        assert len(preds) == len(models["photos"])
        names = [p["label"] for p in preds]
        assert set(names) <= set(LABELS), f"{client} {fmt}: category names {names}"
        assert all(p["index"] == LABELS.index(p["label"]) for p in preds)
        assert all(0.0 <= p["score"] <= 1.0 + 1e-6 for p in preds)
        # The client resizes with its own method, so a close call may flip; most photos must agree.
        agree = sum(a == b for a, b in zip(names, models["top1"][fmt]))
        assert agree >= 0.6 * len(names), (
            f"{client} {fmt}: top-1 agrees with the interpreter on {agree}/{len(names)} photos\n"
            f"client:      {names}\ninterpreter: {models['top1'][fmt]}"
        )


@pytest.mark.parametrize("client", sorted(CLIENT_VENVS))
def test_bare_files_show_the_problem_the_metadata_fixes(models, client):
    """Without standard metadata the float32 file is refused and the int8 one has no category names."""
    files = [models["paths"][fmt]["bare"] for fmt in FORMATS]
    doc = _client(client, files, models["photos"][:2])
    float_entry, int8_entry = doc["models"]
    assert "NormalizationOptions" in float_entry.get("error", ""), float_entry
    assert "error" not in int8_entry, int8_entry
    assert all(p["label"] == "" for p in int8_entry["predictions"])


def test_min_parser_version_matches_the_task_librarys(models):
    """The Task Library's C++ GetMinimumMetadataParserVersion (what MetadataPopulator stamps) agrees."""
    python = CLIENT_VENVS["task_library"] / "bin" / "python"
    if not python.exists():
        _missing(".venv-task-library does not exist (tools/make_client_venvs.sh task-library)")
    script = (
        "import json, sys\n"
        "from tflite_support import metadata\n"
        "from tensorflow_lite_support.metadata.cc.python import _pywrap_metadata_version as v\n"
        "out = []\n"
        "for p in sys.argv[1:]:\n"
        "    buf = metadata.get_metadata_buffer(open(p, 'rb').read())\n"
        "    d = metadata.MetadataDisplayer.with_model_file(p)\n"
        "    out.append({'min': v.GetMinimumMetadataParserVersion(bytes(buf)),\n"
        "                'packed': d.get_packed_associated_file_list(),\n"
        "                'json': json.loads(d.get_metadata_json())})\n"
        "print(json.dumps(out))\n"
    )
    files = [str(models["paths"][fmt]["meta"]) for fmt in FORMATS]
    proc = subprocess.run(
        [str(python), "-c", script, *files], capture_output=True, text=True, timeout=60, env=CHILD_ENV
    )
    assert proc.returncode == 0, proc.stderr
    for entry in json.loads(proc.stdout):
        assert entry["min"] == entry["json"]["min_parser_version"] == "1.0.0"
        assert sorted(entry["packed"]) == ["edgetl.json", "labels.txt"]
        units = entry["json"]["subgraph_metadata"][0]["input_tensor_metadata"][0]["process_units"]
        assert units[0]["options"] == {"mean": [0.0] * 3, "std": [1.0] * 3}
