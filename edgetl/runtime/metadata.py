"""Metadata inside an edgetl artifact: written at export, read by every runtime and on the device.

- TFLite: a ZIP archive appended to the flatbuffer (``labels.txt`` and ``edgetl.json``), the way TFLite
  Metadata appends associated files. Interpreters ignore the trailing bytes.
- ONNX: ``metadata_props`` entries ``edgetl`` (the JSON) and ``labels`` (newline-joined), read here
  straight from the protobuf wire format so that reading them needs neither onnx nor onnxruntime.

Stdlib only: it runs on devices with nothing but numpy, Pillow and a TFLite runtime.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path

METADATA_FILE = "edgetl.json"
LABELS_FILE = "labels.txt"
ONNX_METADATA_KEY = "edgetl"
ONNX_LABELS_KEY = "labels"
# Documented metadata_props keys any ONNX client can read (docs/interfaces.md): the input is
# (pixel - mean) / std per RGB channel, comma-separated; pixels are 0..255 RGB, resized to the input.
ONNX_MEAN_KEY = "normalization_mean"
ONNX_STD_KEY = "normalization_std"
ONNX_COLOR_KEY = "color_space"
ONNX_RANGE_KEY = "pixel_range"
TFLITE_IDENTIFIER = b"TFL3"
SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}

_EOCD = b"PK\x05\x06"  # ZIP end-of-central-directory signature
_EOCD_SIZE = 22
_MAX_ZIP_COMMENT = 0xFFFF


def is_tflite(head: bytes) -> bool:
    """True when `head` (a file's first bytes, at least 8) carries the TFLite flatbuffer identifier."""
    return len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER


def check_tflite_identifier(path: Path) -> None:
    """Raise ModelFileError naming the file when it is not a TFLite flatbuffer (says what it looks like)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not is_tflite(head):
        raise ModelFileError(f"{path}: not a TFLite model ({sniff(path)}no 'TFL3' flatbuffer identifier at byte 4)")


class ModelFileError(ValueError):
    """The file is missing, corrupt, or not a model this runtime can execute (the message says which)."""


# ---------------------------------------------------------------------------------------------------------
# Appended-ZIP metadata (TFLite)


def _find_eocd(tail: bytes, tail_start: int, total_len: int) -> tuple[int, int, int] | None:
    """Locate a ZIP end-of-central-directory record that ends the file.

    ``tail`` is the last bytes of a file of ``total_len`` bytes, starting at absolute offset ``tail_start``.
    Returns (absolute start of the zip, central directory size, central directory offset within the zip).
    """
    end = len(tail)
    while True:
        pos = tail.rfind(_EOCD, 0, end)
        if pos < 0:
            return None
        end = pos + len(_EOCD) - 1
        if pos + _EOCD_SIZE > len(tail):
            continue
        (_sig, disk, cd_disk, n_here, n_total, cd_size, cd_offset, comment_len) = struct.unpack(
            "<IHHHHIIH", tail[pos : pos + _EOCD_SIZE]
        )
        if tail_start + pos + _EOCD_SIZE + comment_len != total_len:
            continue  # the record must end the file exactly: weights can contain the signature by chance
        if disk != 0 or cd_disk != 0 or n_here != n_total:
            continue
        start = tail_start + pos - cd_size - cd_offset
        if start < 0:
            continue
        return start, cd_size, cd_offset


def appended_zip_start(data: bytes) -> int | None:
    """Offset where a ZIP appended to ``data`` begins (None when there is none)."""
    tail_start = max(0, len(data) - _EOCD_SIZE - _MAX_ZIP_COMMENT)
    found = _find_eocd(data[tail_start:], tail_start, len(data))
    if found is None:
        return None
    start, _cd_size, cd_offset = found
    if data[start : start + 4] != b"PK\x03\x04" or data[start + cd_offset : start + cd_offset + 4] != b"PK\x01\x02":
        return None
    return start


def _read_appended_zip(path: Path) -> dict[str, bytes] | None:
    """The members of a ZIP appended to the file, reading only the file's tail. None when absent."""
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        tail_start = max(0, size - _EOCD_SIZE - _MAX_ZIP_COMMENT)
        f.seek(tail_start)
        found = _find_eocd(f.read(), tail_start, size)
        if found is None:
            return None
        start = found[0]
        f.seek(start)
        blob = f.read()
    if blob[:4] != b"PK\x03\x04":
        return None
    return zip_members(blob, path)


def zip_members(blob: bytes, path) -> dict[str, bytes]:
    """The files of the metadata archive `blob` (cut from the end of the model at `path`), by name."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            return {name: zf.read(name) for name in zf.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ModelFileError(f"{path}: the metadata archive appended to the model is corrupt ({e})") from e


def embed_tflite_metadata(model_bytes: bytes, meta: dict) -> bytes:
    """Return the TFLite flatbuffer with ``labels.txt`` and ``edgetl.json`` appended as a ZIP archive.

    An archive already appended to ``model_bytes`` is replaced (other files in it are kept), never stacked.
    ``labels.txt`` is written from ``meta["labels"]`` when present.
    """
    model_bytes = bytes(model_bytes)
    if not is_tflite(model_bytes):
        raise ModelFileError("embed_tflite_metadata: the bytes are not a TFLite flatbuffer (no 'TFL3' identifier)")
    members: dict[str, bytes] = {}
    start = appended_zip_start(model_bytes)
    if start is not None:
        members = zip_members(model_bytes[start:], "embed_tflite_metadata")
        model_bytes = model_bytes[:start]
    members[METADATA_FILE] = json.dumps(meta, indent=1, sort_keys=False).encode("utf-8")
    labels = meta.get("labels")
    if labels is not None:
        members[LABELS_FILE] = "".join(f"{label}\n" for label in labels).encode("utf-8")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        names = [n for n in (LABELS_FILE, METADATA_FILE) if n in members]  # stable order, ours first
        for name in names + [n for n in members if n not in names]:
            # Fixed timestamps and attributes: equal inputs give byte-identical files.
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[name])
    return model_bytes + buf.getvalue()


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
            yield field, f.tell(), n
            f.seek(n, io.SEEK_CUR)
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if f.tell() > size:
            raise EOFError("truncated field")


def _onnx_metadata_props(path: Path) -> dict[str, str]:
    """ModelProto.metadata_props (field 14) read straight from the protobuf wire format."""
    props: dict[str, str] = {}
    with open(path, "rb") as f:
        for field, pos, n in list(_onnx_fields(f, path.stat().st_size)):
            if field == 14:
                f.seek(pos)
                key, value = _parse_string_pair(f.read(n))
                props[key] = value
    return props


def model_sha256(path: str | Path) -> str:
    """SHA-256 of a model's own bytes, the part its metadata cannot contain: a .tflite's flatbuffer (the file
    before the appended archive), an .onnx's graph (ModelProto field 7)."""
    path = Path(path)
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
    try:
        actual = model_sha256(path)
    except (ValueError, EOFError) as e:
        raise ModelFileError(f"{path}: damaged: its model bytes cannot be read ({e})") from e
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
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: the embedded {what} is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the embedded {what} is not a JSON object")
    return meta


def read_embedded(path: Path) -> tuple[dict | None, list[str] | None]:
    """(edgetl.json dict, labels) embedded in a model file; either may be None."""
    check_exists(path)
    kind = model_kind(path)
    meta = labels = None
    if kind == "tflite":
        check_tflite_identifier(path)
        members = _read_appended_zip(path) or {}
        if METADATA_FILE in members:
            meta = _parse_json(path, members[METADATA_FILE], METADATA_FILE)
        if LABELS_FILE in members:
            labels = _split_labels(members[LABELS_FILE].decode("utf-8", errors="replace"))
    else:
        try:
            props = _onnx_metadata_props(path)
        except (ValueError, EOFError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{path}: not a valid ONNX model ({sniff(path)}protobuf: {e})") from e
        meta, labels = _from_onnx_props(path, props)
    if meta is not None and isinstance(meta.get("labels"), list):
        labels = [str(label) for label in meta["labels"]]
    if kind == "tflite":  # the standard TFLite Metadata, where present, is what every client reads: it wins
        meta, labels = _with_standard_metadata(path, meta, labels)
    return meta, labels


def _with_standard_metadata(path: Path, meta: dict | None, labels: list[str] | None):
    from edgetl.runtime.standard_metadata import read_standard_metadata

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
    labels = _split_labels(props[ONNX_LABELS_KEY]) if ONNX_LABELS_KEY in props else None
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


def _split_labels(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_labels(path) -> list[str]:
    """Labels from a labels.txt file: one per line, whitespace stripped, empty lines skipped."""
    return _split_labels(Path(path).read_text(encoding="utf-8"))


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
