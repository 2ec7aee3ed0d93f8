"""Metadata inside an edgetl artifact: written at export, read by every runtime and on the device.

- TFLite: the standard TFLite Metadata (`standard_metadata`) with ``labels.txt`` and ``edgetl.json`` as
  associated files in a ZIP appended to the flatbuffer (`appended_zip`).
- ONNX: ``metadata_props`` entries ``edgetl`` (the JSON) and ``labels`` (newline-joined), read here
  straight from the protobuf wire format so that reading them needs neither onnx nor onnxruntime.

Stdlib only: it runs on devices with nothing but numpy, Pillow and a TFLite runtime.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from edgetl.runtime.appended_zip import (
    LABELS_FILE,
    MAX_ARCHIVE_BYTES,
    MAX_MEMBER_BYTES,
    MAX_MEMBERS,
    METADATA_FILE,
    ModelFileError,
    appended_zip_start,
    check_labels,
    is_tflite,
    read_appended_zip,
    split_labels,
)
from edgetl.runtime.standard_metadata import read_standard_metadata

ONNX_METADATA_KEY = "edgetl"
ONNX_LABELS_KEY = "labels"
# Documented metadata_props keys any ONNX client can read (docs/interfaces.md): the input is
# (pixel - mean) / std per RGB channel, comma-separated; pixels are 0..255 RGB, resized to the input.
ONNX_MEAN_KEY = "normalization_mean"
ONNX_STD_KEY = "normalization_std"
ONNX_COLOR_KEY = "color_space"
ONNX_RANGE_KEY = "pixel_range"
SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}


def check_tflite_identifier(path: Path) -> None:
    """Raise ModelFileError naming the file when it is not a TFLite flatbuffer (says what it looks like)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not is_tflite(head):
        raise ModelFileError(f"{path}: not a TFLite model ({sniff(path)}no 'TFL3' flatbuffer identifier at byte 4)")


# ---------------------------------------------------------------------------------------------------------
# ONNX metadata_props without onnx/onnxruntime: a tiny reader for ModelProto's top-level protobuf fields


def _read_varint(f) -> int | None:
    result = shift = 0
    while True:
        b = f.read(1)
        if not b:
            if shift == 0:
                return None
            raise EOFError("truncated varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _parse_string_pair(blob: bytes) -> tuple[str, str]:
    f = io.BytesIO(blob)
    key = value = ""
    while (tag := _read_varint(f)) is not None:
        field, wire = tag >> 3, tag & 7
        if wire != 2:
            raise ValueError(f"unexpected wire type {wire} in StringStringEntryProto")
        n = _read_varint(f)
        raw = f.read(n)
        if len(raw) != n:
            raise EOFError("truncated string")
        if field == 1:
            key = raw.decode("utf-8")
        elif field == 2:
            value = raw.decode("utf-8")
    return key, value


def _onnx_fields(f, size: int):
    """(field number, position, length) of each length-delimited top-level field of a ModelProto."""
    while (tag := _read_varint(f)) is not None:
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            _read_varint(f)
        elif wire == 1:
            f.seek(8, io.SEEK_CUR)
        elif wire == 5:
            f.seek(4, io.SEEK_CUR)
        elif wire == 2:
            n = _read_varint(f)
            if n is None or f.tell() + n > size:
                raise EOFError("truncated field")
            pos = f.tell()
            yield field, pos, n
            f.seek(pos + n)  # absolute: the caller may have read elsewhere meanwhile
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if f.tell() > size:
            raise EOFError("truncated field")


def _onnx_metadata_props(path: Path) -> dict[str, str]:
    """ModelProto.metadata_props (field 14) read straight from the protobuf wire format, within the limits
    of the TFLite metadata archive (entries, bytes per entry, bytes in all), checked before reading."""
    props: dict[str, str] = {}
    count = total = 0
    with open(path, "rb") as f:
        for field, pos, n in _onnx_fields(f, path.stat().st_size):
            if field != 14:
                continue
            count, total = count + 1, total + n
            if count > MAX_MEMBERS * 16:
                raise ModelFileError(f"{path}: more than {MAX_MEMBERS * 16} metadata_props entries (the limit)")
            if n > MAX_MEMBER_BYTES or total > MAX_ARCHIVE_BYTES:
                raise ModelFileError(
                    f"{path}: metadata_props entry {count} is {n:,} bytes ({total:,} in all), over the limit of "
                    f"{MAX_MEMBER_BYTES:,} per entry and {MAX_ARCHIVE_BYTES:,} in all"
                )
            f.seek(pos)
            key, value = _parse_string_pair(f.read(n))
            props[key] = value
    return props


def model_sha256(path: str | Path) -> str:
    """SHA-256 of a model's own bytes, the part its metadata cannot contain: a .tflite's flatbuffer (the file
    before the appended archive), an .onnx's graph (ModelProto field 7). ModelFileError when it cannot."""
    path = Path(path)
    try:
        return _model_sha256(path)
    except ModelFileError:
        raise
    except Exception as e:  # EOFError, ValueError from the protobuf walk; OSError
        raise ModelFileError(f"{path}: damaged: its model bytes cannot be read ({_one_line(e)})") from e


def _model_sha256(path: Path) -> str:
    if model_kind(path) == "tflite":
        data = path.read_bytes()
        return hashlib.sha256(data[: appended_zip_start(data) or len(data)]).hexdigest()
    with open(path, "rb") as f:
        graph = [(pos, n) for field, pos, n in _onnx_fields(f, path.stat().st_size) if field == 7]
        if not graph:
            raise ModelFileError(f"{path}: not a valid ONNX model (no graph)")
        f.seek(graph[0][0])
        return hashlib.sha256(f.read(graph[0][1])).hexdigest()


def verify_model(path: str | Path) -> None:
    """ModelFileError unless the model's bytes hash to the SHA-256 its own metadata records."""
    path = Path(path)
    recorded = (read_embedded(path)[0] or {}).get("model_sha256")
    if not recorded:
        raise ModelFileError(
            f"{path}: no SHA-256 of its model bytes is recorded in its metadata "
            "(exported before edgetl recorded one, or not by edgetl): cannot verify it"
        )
    actual = model_sha256(path)
    if actual != recorded:
        raise ModelFileError(
            f"{path}: damaged: its model bytes hash to {actual[:16]}..., its metadata records "
            f"{recorded[:16]}...; copy or export it again"
        )


# ---------------------------------------------------------------------------------------------------------
# Public metadata helpers


def model_kind(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ModelFileError(
            f"{path}: unknown model file type {path.suffix or '(no suffix)'!r}; expected .tflite or .onnx"
        )
    return kind


def check_exists(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")


def _parse_json(path: Path, raw: bytes | str, what: str) -> dict:
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: [[[[...]]]] nested deep
        raise ModelFileError(f"{path}: the embedded {what} is not valid JSON ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the embedded {what} is not a JSON object")
    return _check_meta(path, meta, what)


# The fields of edgetl.json that the runtime, `edgetl bench` and the device use, with their types: a file
# from anyone may hold anything, and a wrong type is caught here rather than deep inside a caller.
_META_TYPES = {"labels": list, "input": dict, "backbone": dict, "format": str, "model_sha256": str}
_INPUT_TYPES = {"size": int, "mean": (int, float), "std": (int, float)}
_BACKBONE_TYPES = {"version": str, "alpha": (int, float), "resolution": int, "weights": str}


def _check_meta(path: Path, meta: dict, what: str) -> dict:
    for table, types, where in (
        (meta, _META_TYPES, ""),
        (meta.get("input") or {}, _INPUT_TYPES, "input."),
        (meta.get("backbone") or {}, _BACKBONE_TYPES, "backbone."),
    ):
        if not isinstance(table, dict):
            raise ModelFileError(f"{path}: the embedded {what}'s {where[:-1]} is not an object")
        for key, kind in types.items():
            value = table.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise ModelFileError(
                    f"{path}: the embedded {what}'s {where}{key} has the wrong type ({type(value).__name__})"
                )
    size = (meta.get("input") or {}).get("size")
    if size is not None and not 1 <= size <= 1 << 16:
        raise ModelFileError(f"{path}: the embedded {what}'s input.size {size} is not in [1, 65536]")
    return meta


def read_embedded(path: Path) -> tuple[dict | None, list[str] | None]:
    """(edgetl.json dict, labels) embedded in a model file; either may be None.

    Every failure to read or parse the file is a ModelFileError with a one-line message (a file from anyone
    can break a parser in ways no list of exceptions foresees)."""
    path = Path(path)
    try:
        return _read_embedded(path)
    except ModelFileError:
        raise
    except OSError as e:
        raise ModelFileError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from e
    except Exception as e:
        raise ModelFileError(f"{path}: its metadata cannot be read ({type(e).__name__}: {_one_line(e)})") from e


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_embedded(path: Path) -> tuple[dict | None, list[str] | None]:
    check_exists(path)
    kind = model_kind(path)
    meta = labels = None
    if kind == "tflite":
        check_tflite_identifier(path)
        members = read_appended_zip(path) or {}
        if METADATA_FILE in members:
            meta = _parse_json(path, members[METADATA_FILE], METADATA_FILE)
        if LABELS_FILE in members:
            labels = split_labels(members[LABELS_FILE].decode("utf-8", errors="replace"), path, LABELS_FILE)
    else:
        try:
            props = _onnx_metadata_props(path)
        except (ValueError, EOFError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{path}: not a valid ONNX model ({sniff(path)}protobuf: {e})") from e
        meta, labels = _from_onnx_props(path, props)
    if meta is not None and isinstance(meta.get("labels"), list):
        labels = check_labels(meta["labels"], path, "the embedded labels")
    if kind == "tflite":  # the standard TFLite Metadata, where present, is what every client reads: it wins
        meta, labels = _prefer_standard_metadata(path, meta, labels)
    return meta, labels


def _prefer_standard_metadata(path: Path, meta: dict | None, labels: list[str] | None):
    try:
        standard = read_standard_metadata(path)
    except ValueError as e:
        raise ModelFileError(f"{path}: the standard TFLite Metadata is corrupt ({e})") from e
    if standard is None:  # written before edgetl wrote standard metadata, or by another tool without it
        return meta, labels
    meta = dict(meta or {})
    if standard.get("mean") and standard.get("std"):
        meta["input"] = {
            **(meta.get("input") or {}),
            "mean": _uniform(path, standard["mean"], "mean"),
            "std": _uniform(path, standard["std"], "std"),
        }
    return meta, standard.get("labels") or labels


def _uniform(path: Path, values: list[float], what: str) -> float:
    if len(set(values)) != 1:
        raise ModelFileError(f"{path}: per-channel normalization {what} {values} is not supported")
    return float(values[0])


def _from_onnx_props(path: Path, props: dict[str, str]) -> tuple[dict | None, list[str] | None]:
    meta = _parse_json(path, props[ONNX_METADATA_KEY], "'edgetl' metadata") if ONNX_METADATA_KEY in props else None
    labels = split_labels(props[ONNX_LABELS_KEY], path, "metadata_props labels") if ONNX_LABELS_KEY in props else None
    if ONNX_MEAN_KEY in props and ONNX_STD_KEY in props:  # the documented keys win over edgetl's JSON
        try:
            mean = [float(v) for v in props[ONNX_MEAN_KEY].split(",")]
            std = [float(v) for v in props[ONNX_STD_KEY].split(",")]
        except ValueError as e:
            raise ModelFileError(f"{path}: metadata_props {ONNX_MEAN_KEY}/{ONNX_STD_KEY} are not numbers ({e})") from e
        meta = dict(meta or {})
        meta["input"] = {
            **(meta.get("input") or {}),
            "mean": _uniform(path, mean, "mean"),
            "std": _uniform(path, std, "std"),
        }
    return meta, labels


def read_metadata(path) -> dict | None:
    """The ``edgetl.json`` dict embedded in a .tflite (appended zip) or .onnx (metadata_props), else None."""
    return read_embedded(Path(path))[0]


def read_labels(path) -> list[str]:
    """Labels from a labels.txt file: one per line, whitespace stripped, empty lines skipped; within the limits
    of embedded labels (ModelFileError)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block the read until someone writes to it
        raise ModelFileError(f"{path}: not a regular file")
    with open(path, "rb") as f:
        raw = f.read(MAX_MEMBER_BYTES + 1)
    if len(raw) > MAX_MEMBER_BYTES:
        raise ModelFileError(f"{path}: a label file larger than {MAX_MEMBER_BYTES:,} bytes (the limit)")
    return split_labels(raw.decode("utf-8"), path, "the label file")


_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)


def sniff(path: Path) -> str:
    """'it looks like X; ' for a few common non-model files, else ''."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return ""
    if not head:
        return "the file is empty; "
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return f"it looks like {what}; "
    text = head.decode("utf-8", errors="replace")
    if b"\0" not in head and sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
        return "it looks like a text file; "
    return ""
