"""Golden inputs: a few real test photos carried inside every artifact, with the artifact's own answers on them.

An app that feeds the model differently from how it was trained (BGR, [0, 1] pixels, a center crop, an
unapplied EXIF rotation) still gets answers, just worse ones. The golden inputs let the app (or
`edgetl.runtime.self_check`) run the model on the same photos with its own pipeline and compare with the
reference answers the file carries. TensorFlow-free: numpy and Pillow only.

Where they live (docs/interfaces.md, "Golden inputs"):

- .tflite: associated files of the standard TFLite Metadata (model level, next to ``edgetl.json``):
  ``golden.json`` (the record, UTF-8 JSON) and ``golden_0.jpg`` ... (the encoded photos);
- .onnx: ``metadata_props`` with the same names; each photo's value is its bytes in standard base64.

The photos are JPEGs smaller than the model input (the long side is GOLDEN_SCALE x the resolution), so a
correct pipeline upscales them: the one regime where every bilinear resize agrees (with or without
antialiasing), while nearest-neighbour resizing and a center crop visibly do not. Their pixels are stored
rotated a quarter turn with EXIF orientation 6, so a decoder that ignores EXIF sees them sideways.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from edgetl.runtime.appended_zip import ModelFileError, read_appended_zip
from edgetl.runtime.images import open_rgb, resized
from edgetl.runtime.metadata import _onnx_metadata_props, model_kind

RECORD_FILE = "golden.json"
RECORD_KIND = "edgetl-golden-inputs"
RECORD_VERSION = 1
IMAGE_PATTERN = "golden_{}.jpg"
EXIF_ORIENTATION_TAG = 0x0112
STORED_ORIENTATION = 6  # "rotate 90 degrees clockwise to display": the stored pixels are turned the other way
GOLDEN_SCALE = 0.75  # long side of a stored photo / model resolution (< 1: a correct pipeline upscales)
MIN_IMAGES, MAX_IMAGES = 4, 8
# All golden bytes of one file (photos, base64 for ONNX, the record) stay under this; about a tenth of the
# smallest int8 file (V1 0.25 @128). The photos share it: JPEG quality steps down until they fit.
BUDGET_BYTES = 32 * 1024
JPEG_QUALITIES = (90, 85, 80, 75, 70, 65, 60, 50, 40, 30)
DEFAULT_TOLERANCE = 0.2  # largest |probability difference| on a reference top-k class that still matches
TOP_K = 5

# The preprocessing every edgetl model expects, as an app reads it (golden.json "preprocessing").
CONTRACT = {
    "color_order": "RGB",
    "value_range": [0, 255],
    "layout": "NHWC",
    "resize": {"method": "bilinear", "antialias": True},
    "crop": "none",
    "aspect_ratio": "not kept: the whole image is squashed to the model's square input",
    "orientation": "apply the EXIF orientation tag first",
    "alpha": "composited on white",
}


class GoldenError(ValueError):
    """A model's golden inputs are missing or unreadable."""


def encode_photo(upright: Image.Image, resolution: int, quality: int) -> bytes:
    """An upright RGB photo as a golden JPEG: long side GOLDEN_SCALE x `resolution`, pixels turned a quarter
    turn counter-clockwise and tagged with EXIF orientation 6, which turns them back."""
    scale = GOLDEN_SCALE * resolution / max(upright.size)
    size = (max(8, round(upright.width * scale)), max(8, round(upright.height * scale)))
    small = upright.convert("RGB").resize(size, Image.BILINEAR, reducing_gap=None)
    stored = small.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = STORED_ORIENTATION
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=quality, optimize=True, exif=exif.tobytes())
    return buf.getvalue()


def encode_photos(uprights: list[Image.Image], resolution: int, budget: int) -> tuple[list[bytes], int]:
    """The photos as golden JPEGs at the highest quality of JPEG_QUALITIES whose total fits `budget` bytes
    (the lowest quality when none does); returns (encoded photos, quality)."""
    for quality in JPEG_QUALITIES:
        encoded = [encode_photo(im, resolution, quality) for im in uprights]
        if sum(map(len, encoded)) <= budget:
            break
    return encoded, quality


def decode(data: bytes) -> Image.Image:
    """A golden JPEG decoded as edgetl decodes any photo: EXIF orientation applied, RGB."""
    return open_rgb(io.BytesIO(data))


def reference_inputs(images: list[bytes], resolution: int) -> np.ndarray:
    """The model inputs edgetl's own pipeline makes from golden photos: uint8 (N, R, R, 3)."""
    return np.stack([resized(decode(b), resolution) for b in images])


def top_k(probs: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """The k largest classes of one probability vector (ties by lower index) and their probabilities."""
    order = np.argsort(-np.asarray(probs, np.float64), kind="stable")[:k]
    return [int(i) for i in order], [round(float(probs[i]), 6) for i in order]


def make_record(
    images: list[bytes],
    labels: list[str],
    truth: list[int],
    probs: np.ndarray,
    model_input: dict,
    computed_by: dict,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict:
    """golden.json: the preprocessing contract, the tolerance and the reference answers (docs/interfaces.md).

    `probs` are the artifact's probabilities on `reference_inputs(images)`; `model_input` describes its
    input tensor (size, dtype, mean, std); `computed_by` names the runtime that computed them."""
    k = min(TOP_K, len(labels))
    entries = []
    for i, (data, p) in enumerate(zip(images, probs)):
        width, height = Image.open(io.BytesIO(data)).size
        indices, values = top_k(p, k)
        entries.append(
            {
                "file": IMAGE_PATTERN.format(i),
                "bytes": len(data),
                "stored_width": width,
                "stored_height": height,
                "exif_orientation": STORED_ORIENTATION,
                "label": labels[truth[i]],
                "label_index": int(truth[i]),
                "top_k": {"indices": indices, "probabilities": values, "labels": [labels[j] for j in indices]},
            }
        )
    size = int(model_input["size"])
    mean, std = float(model_input.get("mean", 0.0)), float(model_input.get("std", 1.0))
    return {
        "kind": RECORD_KIND,
        "format_version": RECORD_VERSION,
        "preprocessing": {
            **CONTRACT,
            "size": [size, size],
            "input_dtype": model_input.get("dtype", "float32"),
            "normalization": {"mean": [mean] * 3, "std": [std] * 3, "formula": "(pixel - mean) / std"},
        },
        "tolerance": {
            "max_abs_probability_diff": tolerance,
            "over": "every golden image, on each class of its reference top_k",
        },
        "images": entries,
        "computed_by": computed_by,
    }


def golden_members(images: list[bytes], record: dict | None) -> list[tuple[str, bytes]]:
    """(name, bytes) of the golden files in the order they are stored: the record, then the photos."""
    members = [(RECORD_FILE, json.dumps(record or {}, indent=1).encode("utf-8"))]
    return members + [(IMAGE_PATTERN.format(i), data) for i, data in enumerate(images)]


def onnx_props(images: list[bytes], record: dict | None) -> list[tuple[str, str]]:
    """The golden metadata_props of an .onnx file: the record as JSON, each photo as base64."""
    props = [(RECORD_FILE, json.dumps(record or {}, indent=1))]
    return props + [(IMAGE_PATTERN.format(i), base64.b64encode(d).decode("ascii")) for i, d in enumerate(images)]


def read_golden(path: str | Path) -> tuple[dict, list[bytes]]:
    """(record, photos) embedded in a .tflite or .onnx file; GoldenError when it carries none, or a one-line
    GoldenError or ModelFileError for whatever else a file from anyone holds."""
    path = Path(path)
    try:
        return _read_golden(path)
    except (GoldenError, ModelFileError):
        raise
    except Exception as e:  # a record of the wrong shape: lists where objects belong, a nesting too deep...
        raise GoldenError(
            f"{path}: {RECORD_FILE} cannot be read ({type(e).__name__}: {' '.join(str(e).split())})"
        ) from e


def _read_golden(path: Path) -> tuple[dict, list[bytes]]:
    if model_kind(path) == "tflite":
        members = read_appended_zip(path) or {}
        raw = {k: v for k, v in members.items() if k == RECORD_FILE or k.startswith("golden_")}
    else:
        props = _onnx_metadata_props(path)
        raw = {}
        for key, value in props.items():
            if key == RECORD_FILE:
                raw[key] = value.encode("utf-8")
            elif key.startswith("golden_"):
                try:
                    raw[key] = base64.b64decode(value, validate=True)
                except ValueError as e:
                    raise GoldenError(f"{path}: metadata_props {key!r} is not base64 ({e})") from e
    if RECORD_FILE not in raw:
        raise GoldenError(
            f"{path} carries no golden inputs (no {RECORD_FILE}): it was exported before edgetl embedded them, "
            "or not by edgetl; export it again"
        )
    try:
        record = json.loads(raw[RECORD_FILE])
    except (ValueError, UnicodeDecodeError) as e:
        raise GoldenError(f"{path}: {RECORD_FILE} is not valid JSON ({e})") from e
    if not isinstance(record, dict) or record.get("kind") != RECORD_KIND or not record.get("images"):
        raise GoldenError(f"{path}: {RECORD_FILE} is not an edgetl golden record with reference answers")
    photos = []
    for entry in record["images"]:
        if entry.get("file") not in raw:
            raise GoldenError(f"{path}: {RECORD_FILE} names {entry.get('file')!r}, which the file does not carry")
        photos.append(raw[entry["file"]])
    return record, photos


def reference_probabilities(record: dict, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices (N, k), probabilities (N, k)) of the record's reference top-k, checked against the model."""
    idx = np.array([e["top_k"]["indices"] for e in record["images"]], np.int64)
    val = np.array([e["top_k"]["probabilities"] for e in record["images"]], np.float64)
    if idx.shape != val.shape or idx.ndim != 2 or idx.size == 0 or idx.min() < 0 or idx.max() >= num_classes:
        raise GoldenError(f"{RECORD_FILE}: reference top_k do not fit a model of {num_classes} classes")
    return idx, val
