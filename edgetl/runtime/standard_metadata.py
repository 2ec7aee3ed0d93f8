"""Standard TFLite Metadata read back with the standard library only (no TensorFlow, MediaPipe or flatbuffers
package: tflite-runtime device environments have none of them), by the field numbers of the published
schemas. The writer is `edgetl.export.tflite_metadata`; the layout it writes is described there.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from edgetl.runtime.appended_zip import METADATA_FILE as EDGETL_FILE
from edgetl.runtime.appended_zip import appended_zip_start, is_tflite, split_labels, zip_members

METADATA_FIELD_NAME = "TFLITE_METADATA"  # the name MetadataPopulator and every reader use
METADATA_IDENTIFIER = b"M001"


class _Flat:
    """Bounds-checked reads of FlatBuffers tables (little endian): just what the reader below needs."""

    def __init__(self, buf: bytes, what: str):
        self.buf, self.what = buf, what

    def _get(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.buf):
            raise ValueError(f"{self.what}: flatbuffer read out of bounds at {pos}")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def root(self) -> int:
        return self._get("<I", 0)

    def field(self, table: int, i: int) -> int | None:
        """Absolute position of field `i` of the table at `table`, None when absent."""
        vtable = table - self._get("<i", table)
        vt_size = self._get("<H", vtable)
        slot = 4 + 2 * i
        if slot + 2 > vt_size:
            return None
        off = self._get("<H", vtable + slot)
        return table + off if off else None

    def ref(self, pos: int) -> int:
        return pos + self._get("<I", pos)

    def scalar(self, table: int, i: int, fmt: str, default=0):
        pos = self.field(table, i)
        return default if pos is None else self._get(fmt, pos)

    def table(self, table: int, i: int) -> int | None:
        pos = self.field(table, i)
        return None if pos is None else self.ref(pos)

    def string(self, table: int, i: int) -> str | None:
        pos = self.field(table, i)
        if pos is None:
            return None
        start = self.ref(pos)
        n = self._get("<I", start)
        if start + 4 + n > len(self.buf):
            raise ValueError(f"{self.what}: string out of bounds")
        return self.buf[start + 4 : start + 4 + n].decode("utf-8", "replace")

    def _vector(self, table: int, i: int) -> tuple[int, int] | None:
        pos = self.field(table, i)
        if pos is None:
            return None
        start = self.ref(pos)
        return start + 4, self._get("<I", start)

    def tables(self, table: int, i: int) -> list[int]:
        vec = self._vector(table, i)
        if vec is None:
            return []
        start, n = vec
        return [self.ref(start + 4 * k) for k in range(n)]

    def floats(self, table: int, i: int) -> list[float] | None:
        vec = self._vector(table, i)
        if vec is None:
            return None
        start, n = vec
        return [self._get("<f", start + 4 * k) for k in range(n)]

    def bytes_(self, table: int, i: int) -> bytes | None:
        vec = self._vector(table, i)
        if vec is None:
            return None
        start, n = vec
        if start + n > len(self.buf):
            raise ValueError(f"{self.what}: vector out of bounds")
        return self.buf[start : start + n]


# Field numbers (declaration order, a union taking two) of the published schemas:
# tensorflow/lite/schema/schema.fbs and mediapipe/tasks/metadata/metadata_schema.fbs.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_MM_NAME, _MM_DESCRIPTION, _MM_VERSION, _MM_SUBGRAPHS, _MM_AUTHOR, _MM_LICENSE, _MM_FILES, _MM_MIN_PARSER = range(8)
_SG_INPUTS, _SG_OUTPUTS, _SG_FILES = 2, 3, 4
_TM_NAME, _TM_DESCRIPTION, _TM_CONTENT, _TM_PROCESS_UNITS, _TM_STATS, _TM_FILES = 0, 1, 3, 4, 5, 6
_CONTENT_PROPS_TYPE, _CONTENT_PROPS = 0, 1
_IMAGE_PROPERTIES = 2  # ContentProperties: NONE, FeatureProperties, ImageProperties, ...
_COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
_PU_OPTIONS_TYPE, _PU_OPTIONS = 0, 1
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions: NONE, NormalizationOptions, ...
_STATS_MAX, _STATS_MIN = 0, 1
_AF_NAME, _AF_DESCRIPTION, _AF_TYPE, _AF_LOCALE = 0, 1, 2, 3
_FILE_TYPES = {
    0: "UNKNOWN",
    1: "DESCRIPTIONS",
    2: "TENSOR_AXIS_LABELS",
    3: "TENSOR_VALUE_LABELS",
    4: "TENSOR_AXIS_SCORE_CALIBRATION",
    5: "VOCABULARY",
    6: "SCANN_INDEX_FILE",
}


def _metadata_flatbuffer(data: bytes, what: str) -> bytes | None:
    """The TFLITE_METADATA buffer of the model in `data`, None when there is none."""
    fb = _Flat(data, what)
    model = fb.root()
    buffers = fb.tables(model, _MODEL_BUFFERS)
    for entry in fb.tables(model, _MODEL_METADATA):
        if fb.string(entry, _METADATA_NAME) != METADATA_FIELD_NAME:
            continue
        index = fb.scalar(entry, _METADATA_BUFFER, "<I")
        if index >= len(buffers):
            raise ValueError(f"{what}: TFLITE_METADATA names buffer {index} of {len(buffers)}")
        buf = buffers[index]
        raw = fb.bytes_(buf, _BUFFER_DATA)
        offset, size = fb.scalar(buf, _BUFFER_OFFSET, "<Q"), fb.scalar(buf, _BUFFER_SIZE, "<Q")
        if (raw is None or not raw) and offset > 1:  # > 2 GB models keep buffers after the flatbuffer
            raw = data[offset : offset + size]
        return bytes(raw or b"")
    return None


def _files(fb: _Flat, table: int, i: int) -> list[dict]:
    out = []
    for f in fb.tables(table, i):
        out.append(
            {
                "name": fb.string(f, _AF_NAME),
                "description": fb.string(f, _AF_DESCRIPTION),
                "type": _FILE_TYPES.get(fb.scalar(f, _AF_TYPE, "<b"), "UNKNOWN"),
                "locale": fb.string(f, _AF_LOCALE),
            }
        )
    return out


def _tensor(fb: _Flat, t: int) -> dict:
    out: dict = {"name": fb.string(t, _TM_NAME), "description": fb.string(t, _TM_DESCRIPTION)}
    content = fb.table(t, _TM_CONTENT)
    if content is not None and fb.scalar(content, _CONTENT_PROPS_TYPE, "<B") == _IMAGE_PROPERTIES:
        props = fb.table(content, _CONTENT_PROPS)
        out["color_space"] = _COLOR_SPACES.get(fb.scalar(props, 0, "<b"), "UNKNOWN") if props is not None else None
    for unit in fb.tables(t, _TM_PROCESS_UNITS):
        if fb.scalar(unit, _PU_OPTIONS_TYPE, "<B") == _NORMALIZATION_OPTIONS:
            options = fb.table(unit, _PU_OPTIONS)
            if options is not None:
                out["mean"], out["std"] = fb.floats(options, 0), fb.floats(options, 1)
    stats = fb.table(t, _TM_STATS)
    if stats is not None:
        out["min"], out["max"] = fb.floats(stats, _STATS_MIN), fb.floats(stats, _STATS_MAX)
    out["associated_files"] = _files(fb, t, _TM_FILES)
    return out


def _appended_files(data: bytes, what: str) -> dict[str, bytes]:
    """The members of the ZIP appended to the model (either offset convention), {} when there is none."""
    start = appended_zip_start(data)
    return {} if start is None else zip_members(data[start:], what)


def read_standard_metadata(path) -> dict | None:
    """The standard TFLite Metadata of the .tflite at `path`, None when the file has none (one flat reading of
    the tables, and a dict literal for its answer: longer than 60 lines, shorter to read than pieces of it).

    Standard library only (no TensorFlow, MediaPipe or flatbuffers package). Returns::

        {"name", "description", "version", "author", "license", "min_parser_version": str | None,
         "labels": [...] | None,          # the output's TENSOR_AXIS_LABELS file (the first without a locale)
         "mean": [...], "std": [...],     # the input's NormalizationOptions (None when absent)
         "color_space": "RGB" | ...,
         "input": {...}, "output": {...}, # per tensor: name, description, mean, std, min, max,
                                          # color_space, associated_files
         "associated_files": [{"name", "description", "type", "locale"}, ...],  # model-level
         "packed_files": [names in the appended archive],
         "edgetl": dict | None}           # the edgetl.json associated file, parsed

    Raises ValueError when the file is not a TFLite model or its metadata is corrupt.
    """
    path = Path(path)
    data = path.read_bytes()
    what = str(path)
    if not is_tflite(data):
        raise ValueError(f"{what}: not a TFLite model (no 'TFL3' identifier)")
    meta_buf = _metadata_flatbuffer(data, what)
    if meta_buf is None:
        return None
    if len(meta_buf) < 8 or meta_buf[4:8] != METADATA_IDENTIFIER:
        raise ValueError(f"{what}: the TFLITE_METADATA buffer is not a metadata flatbuffer (no 'M001')")
    fb = _Flat(meta_buf, f"{what} (metadata)")
    root = fb.root()
    subgraphs = fb.tables(root, _MM_SUBGRAPHS)
    inputs = [_tensor(fb, t) for t in fb.tables(subgraphs[0], _SG_INPUTS)] if subgraphs else []
    outputs = [_tensor(fb, t) for t in fb.tables(subgraphs[0], _SG_OUTPUTS)] if subgraphs else []
    packed = _appended_files(data, what)

    labels = None
    if outputs:
        label_files = [f for f in outputs[0]["associated_files"] if f["type"] == "TENSOR_AXIS_LABELS"]
        label_files.sort(key=lambda f: f["locale"] is not None)  # the default (no locale) first
        if label_files and label_files[0]["name"] in packed:
            text = packed[label_files[0]["name"]].decode("utf-8", "replace")
            labels = split_labels(text, what, label_files[0]["name"])
    edgetl = None
    if EDGETL_FILE in packed:
        try:
            edgetl = json.loads(packed[EDGETL_FILE])
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested too deep
            raise ValueError(f"{what}: {EDGETL_FILE} is not valid JSON ({type(e).__name__}: {e})") from e
    first_in = inputs[0] if inputs else {}
    return {
        "name": fb.string(root, _MM_NAME),
        "description": fb.string(root, _MM_DESCRIPTION),
        "version": fb.string(root, _MM_VERSION),
        "author": fb.string(root, _MM_AUTHOR),
        "license": fb.string(root, _MM_LICENSE),
        "min_parser_version": fb.string(root, _MM_MIN_PARSER),
        "labels": labels,
        "mean": first_in.get("mean"),
        "std": first_in.get("std"),
        "color_space": first_in.get("color_space"),
        "input": first_in or None,
        "output": outputs[0] if outputs else None,
        "associated_files": _files(fb, root, _MM_FILES),
        "packed_files": sorted(packed),
        "edgetl": edgetl,
    }
