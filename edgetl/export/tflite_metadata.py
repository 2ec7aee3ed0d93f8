"""Standard TFLite Metadata for edgetl's .tflite files, so MediaPipe Tasks and the TFLite Task Library load
them as they are.

A .tflite file written by :func:`with_standard_metadata` carries, as the TFLite Metadata spec lays out:

1. a ``TFLITE_METADATA`` entry in the model's ``metadata`` list, naming a new buffer that holds a
   ``ModelMetadata`` flatbuffer (file identifier ``M001``, the schema MediaPipe ships as
   ``mediapipe/tasks/metadata/metadata_schema.fbs``): model name, description, version, author, license;
   the input tensor as an RGB image with NormalizationOptions and the pixel range (Stats); the output tensor
   as class scores with ``labels.txt`` as its ``TENSOR_AXIS_LABELS`` file; ``edgetl.json`` as a model-level
   associated file;
2. the associated files ``labels.txt`` and ``edgetl.json``, stored (not deflated: the C++ readers of
   MediaPipe and the Task Library hand out associated files in place) in a ZIP archive appended to the
   flatbuffer. That is also exactly what edgetl's own reader looks for (``labels.txt`` and ``edgetl.json``
   members of a ZIP ending the file), so it keeps working unchanged.

The metadata tables are built by MediaPipe's maintained metadata writer classes
(``mediapipe.tasks.python.metadata.metadata_writers.metadata_info``: ``GeneralMd``, ``InputImageTensorMd``,
``ClassificationTensorMd``, ``LabelFileMd``, ``AssociatedFileMd``: the ones ``image_classifier.MetadataWriter``
uses) and packed with MediaPipe's generated schema code (``mediapipe.tasks.metadata.
metadata_schema_py_generated``). The last step, putting the buffer into the model and appending the files,
follows ``MetadataPopulator.populate`` but is done here, because MediaPipe's ``metadata.py`` (the populator)
does not import from the PyPI wheels (checked: mediapipe 0.10.35, 1.0.1, 1.2.3; it imports
``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version``, which the wheels no longer ship), and
because three things the populator does are wrong for edgetl:

- it stamps the ZIP members with the current time: here they get a fixed date (reproducible bytes);
- it writes the archive with offsets counted from the start of the .tflite file; edgetl's reader (and any
  reader that locates "the ZIP at the end of the file" as a ZIP of its own) wants offsets counted from the
  start of the archive, which is how ``zipfile`` writes a ZIP to a fresh buffer. MediaPipe's and the Task
  Library's readers (minizip) accept both;
- it repacks the model with the generated Python ``Pack``, which aligns constant buffers to 1 byte; here
  every buffer keeps the schema's ``force_align: 16``.

The model itself is unpacked and packed again with the object API of the TFLite schema (as the populator and
the TFLite converter's own last step do): every tensor, operator and weight buffer comes out identical, and
the only additions are one buffer and one metadata entry, so the interpreter's outputs are bit-identical.

:func:`read_standard_metadata` reads all of it back with the standard library only (no TensorFlow, no
MediaPipe, no ``flatbuffers`` package: tflite-runtime device environments have none of them), walking the
flatbuffers by the field numbers of the published schemas.

``info`` keys used by :func:`with_standard_metadata` (nothing else in ``info`` is read):

=============  =========  =============================================================================
key            required   becomes
=============  =========  =============================================================================
name           yes        ``ModelMetadata.name``
labels         yes        ``labels.txt`` (one per line, index order): the output's TENSOR_AXIS_LABELS
mean           yes        ``NormalizationOptions.mean`` (one float, or one per RGB channel)
std            yes        ``NormalizationOptions.std`` (same); model input = (pixel - mean) / std
edgetl_json    yes        ``edgetl.json`` (``json.dumps(..., indent=1)``, key order kept), and the facts
                          listed in EDGETL_FACTS, appended to the description
description    no         ``ModelMetadata.description`` (before the facts line)
version        no         ``ModelMetadata.version``
author         no         ``ModelMetadata.author``
license        no         ``ModelMetadata.license``
=============  =========  =============================================================================

edgetl's own models take raw 0..255 RGB pixels whatever their input type: mean 0, std 1. For a float32
input MediaPipe and the Task Library require the NormalizationOptions (MediaPipe refuses the file
otherwise); for a uint8 input they feed the pixels unchanged and do not need them, but the file records
the same normalization (as MediaPipe's own image classifier writer does for quantized models) so it stays
self-describing, and Stats gives the tensor's value range (0..255 for uint8, as MediaPipe's writer sets it).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

METADATA_FIELD_NAME = "TFLITE_METADATA"  # the name MetadataPopulator and every reader use
METADATA_IDENTIFIER = b"M001"
TFLITE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
EDGETL_FILE = "edgetl.json"
# Everything written here is in the schema since 1.0.0 (no subgraph process units, tensor groups,
# associated-file versions or custom metadata; see the version history in metadata_schema.fbs), so 1.0.0 is
# what MetadataPopulator's GetMinimumMetadataParserVersion computes for it.
MIN_PARSER_VERSION = "1.0.0"
BUFFER_ALIGNMENT = 16  # TFLite schema: Buffer.data is [ubyte] (force_align: 16)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date ZIP can hold: fixed, so equal inputs give equal bytes

INPUT_NAME = "image"
INPUT_DESCRIPTION = "Input image to be classified: RGB pixels."
OUTPUT_NAME = "probability"
OUTPUT_DESCRIPTION = "Probabilities of the labels respectively."
LABELS_DESCRIPTION = "Labels for categories that the model can recognize."
EDGETL_DESCRIPTION = "edgetl's metadata for this artifact (JSON): format, labels, backbone, input."

# (label in the description, path in info["edgetl_json"]): the facts written on the description's last line,
# "edgetl: format=tflite-int8 backbone=v1 alpha=0.25 ...", for those present.
EDGETL_FACTS = (
    ("format", ("format",)),
    ("backbone", ("backbone", "version")),
    ("alpha", ("backbone", "alpha")),
    ("resolution", ("backbone", "resolution")),
    ("weights", ("backbone", "weights")),
    ("bias_correction", ("bias_correction",)),
    ("calibration_manifest_sha256", ("calibration_manifest_sha256",)),
    ("edgetl_version", ("edgetl_version",)),
)

REQUIRED_KEYS = ("name", "labels", "mean", "std", "edgetl_json")
OPTIONAL_KEYS = ("description", "version", "author", "license")


# ---------------------------------------------------------------------------------------------------------
# Writing (main environment: needs mediapipe for the schema and metadata classes)


def _mediapipe_metadata():
    """MediaPipe's generated metadata schema and metadata_info module (pure Python, no native library)."""
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_info
    except ImportError as e:
        raise ImportError(
            "edgetl.export.tflite_metadata needs MediaPipe's metadata schema: pip install 'mediapipe==1.2.3' "
            f"({e})"
        ) from e
    return metadata_fb, metadata_info


def _tflite_schema():
    """The TFLite model schema (object API): LiteRT's copy, the newest one edgetl depends on."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # same file as TensorFlow's (mediapipe 1.2.3 ships TF 2.21's, byte for byte)
        from mediapipe.tasks.metadata import schema_py_generated as schema
    return schema


def _channels(value, what: str) -> list[float]:
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"with_standard_metadata: info[{what!r}] must be one float or three, got {value!r}")
    if what == "std" and any(v == 0 for v in values):
        raise ValueError("with_standard_metadata: info['std'] must not be 0")
    return values


def _lookup(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _fmt_fact(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def edgetl_facts_line(edgetl_json: dict) -> str:
    """The description's last line: "edgetl: format=... backbone=... ..." (the EDGETL_FACTS present)."""
    facts = [(label, _lookup(edgetl_json, path)) for label, path in EDGETL_FACTS]
    return "edgetl: " + " ".join(f"{label}={_fmt_fact(v)}" for label, v in facts if v is not None)


def _check_info(info: dict) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in info]
    if missing:
        raise ValueError(f"with_standard_metadata: info lacks {', '.join(missing)}")
    labels = info["labels"]
    if not isinstance(labels, (list, tuple)) or not labels:
        raise ValueError("with_standard_metadata: info['labels'] must be a non-empty list of strings")
    for label in labels:
        if not isinstance(label, str) or not label.strip() or "\n" in label or "\r" in label:
            raise ValueError(f"with_standard_metadata: label {label!r} is empty or spans lines")
    if not isinstance(info["edgetl_json"], dict):
        raise ValueError("with_standard_metadata: info['edgetl_json'] must be a dict")


def _tensor_types(schema, model):
    sg = model.subgraphs[0]
    return [sg.tensors[i].type for i in sg.inputs], [sg.tensors[i].type for i in sg.outputs]


def _metadata_buffer(model, info: dict) -> bytes:
    """The ModelMetadata flatbuffer (identifier M001) for an image classifier with one input and output."""
    import flatbuffers

    metadata_fb, mi = _mediapipe_metadata()
    schema = _tflite_schema()
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise ValueError(f"with_standard_metadata: TFLite Metadata describes one subgraph, the model has "
                         f"{len(model.subgraphs or [])}")
    in_types, out_types = _tensor_types(schema, model)
    if len(in_types) != 1 or len(out_types) != 1:
        raise ValueError(f"with_standard_metadata: an image classifier has one input and one output tensor, "
                         f"the model has {len(in_types)} and {len(out_types)}")
    n_classes = model.subgraphs[0].tensors[model.subgraphs[0].outputs[0]].shape
    if n_classes is not None and len(n_classes) and int(n_classes[-1]) != len(info["labels"]):
        raise ValueError(f"with_standard_metadata: {len(info['labels'])} labels for an output of "
                         f"{int(n_classes[-1])} classes")

    description = "\n\n".join(
        part for part in (str(info.get("description") or "").strip(), edgetl_facts_line(info["edgetl_json"])) if part)
    general = mi.GeneralMd(
        name=str(info["name"]),
        version=None if info.get("version") is None else str(info["version"]),
        description=description,
        author=None if info.get("author") is None else str(info["author"]),
        licenses=None if info.get("license") is None else str(info["license"]),
    )
    # `is` comparisons inside metadata_info want the schema's ints, which small ints are.
    image = mi.InputImageTensorMd(
        name=INPUT_NAME,
        description=INPUT_DESCRIPTION,
        norm_mean=_channels(info["mean"], "mean"),
        norm_std=_channels(info["std"], "std"),
        color_space_type=metadata_fb.ColorSpaceType.RGB,
        tensor_type=in_types[0],
    )
    scores = mi.ClassificationTensorMd(
        name=OUTPUT_NAME,
        description=OUTPUT_DESCRIPTION,
        label_files=[mi.LabelFileMd(file_path=LABELS_FILE)],  # only the base name is recorded
        tensor_type=out_types[0],
    )
    labels_md = scores.create_metadata()
    for f in labels_md.associatedFiles or []:
        f.description = LABELS_DESCRIPTION
    subgraph = metadata_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image.create_metadata()]
    subgraph.outputTensorMetadata = [labels_md]
    model_md = general.create_metadata()
    model_md.subgraphMetadata = [subgraph]
    model_md.associatedFiles = [
        mi.AssociatedFileMd(file_path=EDGETL_FILE, description=EDGETL_DESCRIPTION,
                            file_type=metadata_fb.AssociatedFileType.DESCRIPTIONS).create_metadata()
    ]
    model_md.minParserVersion = MIN_PARSER_VERSION
    b = flatbuffers.Builder(1024)
    b.Finish(model_md.Pack(b), METADATA_IDENTIFIER)
    return bytes(b.Output())


class _AlignedBuffer:
    """Stands in for a BufferT when the model is packed: its data aligned to BUFFER_ALIGNMENT."""

    def __init__(self, schema, data, offset: int = 0, size: int = 0):
        self.schema, self.data, self.offset, self.size = schema, data, offset, size

    def Pack(self, builder) -> int:  # the object API's name: ModelT.Pack calls it
        s = self.schema
        data = None
        if self.data is not None:
            import numpy as np

            raw = self.data if isinstance(self.data, (bytes, bytearray)) else \
                np.ascontiguousarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT if raw else 1)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data = builder.EndVector()
        s.BufferStart(builder)
        if data is not None:
            s.BufferAddData(builder, data)
        s.BufferAddOffset(builder, self.offset)
        s.BufferAddSize(builder, self.size)
        return s.BufferEnd(builder)


def _zip_files(files: list[tuple[str, bytes]]) -> bytes:
    """The associated files as a stored ZIP with fixed dates: offsets count from the archive's own start."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files:
            zi = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            zi.compress_type = zipfile.ZIP_STORED
            zi.create_system = 3  # Unix, whatever the writing machine is
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return buf.getvalue()


def _ends_with_zip(data: bytes) -> bool:
    tail = data[-(22 + 0xFFFF):]
    pos = tail.rfind(b"PK\x05\x06")
    while pos >= 0:
        if pos + 22 <= len(tail) and pos + 22 + struct.unpack_from("<H", tail, pos + 20)[0] == len(tail):
            return True
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    return False


def with_standard_metadata(model_bytes: bytes, info: dict) -> bytes:
    """The bare TFLite flatbuffer `model_bytes` with standard TFLite Metadata and its associated files.

    `info`: see the module docstring (name, labels, mean, std, edgetl_json; optional description, version,
    author, license). A TFLITE_METADATA entry already in the model is replaced. Deterministic: equal inputs
    give equal bytes. Raises ValueError for bytes that are not a bare TFLite flatbuffer (an archive already
    appended, weights in external buffers, not one subgraph with one input and one output) or a bad `info`.
    """
    model_bytes = bytes(model_bytes)
    if len(model_bytes) < 8 or model_bytes[4:8] != TFLITE_IDENTIFIER:
        raise ValueError("with_standard_metadata: not a TFLite flatbuffer (no 'TFL3' identifier)")
    if _ends_with_zip(model_bytes):
        raise ValueError("with_standard_metadata: a ZIP archive is appended; pass the bare flatbuffer")
    _check_info(info)
    import flatbuffers

    schema = _tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    buffers = list(model.buffers or [])
    if any(b.offset or b.size for b in buffers):
        raise ValueError("with_standard_metadata: the model keeps its weights outside the flatbuffer (> 2 GB); "
                         "repacking it would move them")
    metadata_buf = _metadata_buffer(model, info)

    entries = list(model.metadata or [])
    ours = [m for m in entries if (m.name or b"").decode("utf-8", "replace") == METADATA_FIELD_NAME]
    if ours:  # replace, as MetadataPopulator does
        buffers[ours[0].buffer].data = metadata_buf
    else:
        entry = schema.MetadataT()
        entry.name = METADATA_FIELD_NAME
        entry.buffer = len(buffers)
        buffer = schema.BufferT()
        buffer.data = metadata_buf
        buffers.append(buffer)
        entries.append(entry)
    model.metadata = entries
    model.buffers = [_AlignedBuffer(schema, b.data, b.offset, b.size) for b in buffers]
    builder = flatbuffers.Builder(len(model_bytes) + len(metadata_buf) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    flatbuffer = bytes(builder.Output())

    labels_txt = "\n".join(info["labels"]).encode("utf-8")  # as MediaPipe's writer exports labels
    edgetl_json = json.dumps(info["edgetl_json"], indent=1, sort_keys=False).encode("utf-8")
    return flatbuffer + _zip_files([(LABELS_FILE, labels_txt), (EDGETL_FILE, edgetl_json)])


# ---------------------------------------------------------------------------------------------------------
# Reading (stdlib only: runs on device environments)


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
_FILE_TYPES = {0: "UNKNOWN", 1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS", 3: "TENSOR_VALUE_LABELS",
               4: "TENSOR_AXIS_SCORE_CALIBRATION", 5: "VOCABULARY", 6: "SCANN_INDEX_FILE"}


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
        out.append({"name": fb.string(f, _AF_NAME), "description": fb.string(f, _AF_DESCRIPTION),
                    "type": _FILE_TYPES.get(fb.scalar(f, _AF_TYPE, "<b"), "UNKNOWN"),
                    "locale": fb.string(f, _AF_LOCALE)})
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
    if not _ends_with_zip(data):
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {name: zf.read(name) for name in zf.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"{what}: the associated files appended to the model are corrupt ({e})") from e


def read_standard_metadata(path) -> dict | None:
    """The standard TFLite Metadata of the .tflite at `path`, None when the file has none.

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
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
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
            labels = [line.strip() for line in text.splitlines() if line.strip()]
    edgetl = None
    if EDGETL_FILE in packed:
        try:
            edgetl = json.loads(packed[EDGETL_FILE])
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{what}: {EDGETL_FILE} is not valid JSON ({e})") from e
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
