"""One small interface over LiteRT (TFLite) and onnxruntime: everything that executes an artifact uses it.

Runs on a device with only numpy, Pillow and a TFLite runtime, so TensorFlow is never imported at module
level. TFLite interpreters are tried in this order: ``ai_edge_litert``, ``tflite_runtime``, and only as a
last resort ``tensorflow.lite``. onnxruntime is imported only when an ``.onnx`` file is loaded.

Models take raw RGB pixels 0..255 (see docs/interfaces.md); :meth:`LoadedModel.predict` takes the uint8
images from :func:`edgetl.data.load_image` and returns float32 probabilities, whatever the model's input and
output types (float32, uint8, int8).

Metadata travels inside the artifact:

- TFLite: a ZIP archive appended to the flatbuffer (``labels.txt`` and ``edgetl.json``), the way TFLite
  Metadata appends associated files. Interpreters ignore the trailing bytes.
- ONNX: ``metadata_props`` entries ``edgetl`` (the JSON) and ``labels`` (newline-joined).
"""

from __future__ import annotations

import io
import json
import mmap
import struct
import zipfile
from pathlib import Path

import numpy as np

METADATA_FILE = "edgetl.json"
LABELS_FILE = "labels.txt"
ONNX_METADATA_KEY = "edgetl"
ONNX_LABELS_KEY = "labels"
TFLITE_IDENTIFIER = b"TFL3"
SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}

_EOCD = b"PK\x05\x06"  # ZIP end-of-central-directory signature
_EOCD_SIZE = 22
_MAX_ZIP_COMMENT = 0xFFFF


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
    if len(model_bytes) < 8 or model_bytes[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError("embed_tflite_metadata: the bytes are not a TFLite flatbuffer (no 'TFL3' identifier)")
    members: dict[str, bytes] = {}
    start = appended_zip_start(model_bytes)
    if start is not None:
        with zipfile.ZipFile(io.BytesIO(model_bytes[start:])) as zf:
            members = {name: zf.read(name) for name in zf.namelist()}
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


def _onnx_metadata_props(path: Path) -> dict[str, str]:
    """ModelProto.metadata_props (field 14) read straight from the protobuf wire format."""
    props: dict[str, str] = {}
    size = path.stat().st_size
    with open(path, "rb") as f:
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
                if field == 14:
                    key, value = _parse_string_pair(f.read(n))
                    props[key] = value
                else:
                    f.seek(n, io.SEEK_CUR)
            else:
                raise ValueError(f"unsupported wire type {wire}")
            if f.tell() > size:
                raise EOFError("truncated field")
    return props


# ---------------------------------------------------------------------------------------------------------
# A bounds check of the TFLite flatbuffer. tflite_runtime 2.14 does not verify models and segfaults on a
# truncated file (ai_edge_litert verifies); walking the Model's tables, vectors and buffers catches that.


class _FlatbufferError(ValueError):
    pass


class _Flatbuffer:
    def __init__(self, buf, size: int):
        self.buf, self.size = buf, size
        self.end = 0  # furthest byte any checked object reaches

    def _need(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise _FlatbufferError(f"{what} at byte {pos} (+{length}) lies outside the {self.size}-byte file")
        self.end = max(self.end, pos + length)

    def u8(self, pos: int) -> int:
        self._need(pos, 1, "byte")
        return self.buf[pos]

    def u16(self, pos: int) -> int:
        self._need(pos, 2, "vtable entry")
        return struct.unpack_from("<H", self.buf, pos)[0]

    def u32(self, pos: int) -> int:
        self._need(pos, 4, "offset")
        return struct.unpack_from("<I", self.buf, pos)[0]

    def i32(self, pos: int) -> int:
        self._need(pos, 4, "offset")
        return struct.unpack_from("<i", self.buf, pos)[0]

    def u64(self, pos: int) -> int:
        self._need(pos, 8, "value")
        return struct.unpack_from("<Q", self.buf, pos)[0]

    def table(self, pos: int, what: str) -> dict[int, int]:
        """Field index -> absolute position of the field, for the fields present in the table at pos."""
        self._need(pos, 4, what)
        vtable = pos - self.i32(pos)
        vsize = self.u16(vtable)
        tsize = self.u16(vtable + 2)
        if vsize < 4 or vsize % 2:
            raise _FlatbufferError(f"{what} at byte {pos} has a malformed vtable")
        self._need(vtable, vsize, f"{what} vtable")
        self._need(pos, tsize, what)
        fields = {}
        for i in range((vsize - 4) // 2):
            off = self.u16(vtable + 4 + 2 * i)
            if off:
                if off >= tsize:
                    raise _FlatbufferError(f"{what} at byte {pos}: field {i} lies outside the table")
                fields[i] = pos + off
        return fields

    def ref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, fields: dict[int, int], i: int, elem_size: int, what: str) -> tuple[int, int]:
        """(position of the first element, length) of vector field i; (0, 0) when absent."""
        if i not in fields:
            return 0, 0
        v = self.ref(fields[i])
        n = self.u32(v)
        self._need(v + 4, n * elem_size, what)
        return v + 4, n

    def string(self, fields: dict[int, int], i: int, what: str) -> None:
        start, n = self.vector(fields, i, 1, what)
        if i in fields and self.u8(start + n) != 0:
            raise _FlatbufferError(f"{what} at byte {start} is not NUL-terminated")

    def tables(self, fields: dict[int, int], i: int, what: str) -> list[dict[int, int]]:
        start, n = self.vector(fields, i, 4, f"{what} vector")
        return [self.table(self.ref(start + 4 * k), what) for k in range(n)]

    def ints(self, fields: dict[int, int], i: int, what: str) -> list[int]:
        start, n = self.vector(fields, i, 4, what)
        return [struct.unpack_from("<i", self.buf, start + 4 * k)[0] for k in range(n)]


def _check_tflite_structure(buf, size: int) -> None:
    """Raise _FlatbufferError when the Model's tables, vectors or buffers reach past the end of the file."""
    fb = _Flatbuffer(buf, size)
    model = fb.table(fb.u32(0), "Model")
    opcodes = fb.tables(model, 1, "OperatorCode")
    for oc in opcodes:
        fb.string(oc, 1, "custom op name string")
    buffers = fb.tables(model, 4, "Buffer")
    for i, b in enumerate(buffers):
        fb.vector(b, 0, 1, f"buffer {i} data")
        if 1 in b and 2 in b and fb.u64(b[1]) > 1:  # large models keep buffers after the flatbuffer
            fb._need(fb.u64(b[1]), fb.u64(b[2]), f"buffer {i} data")
    subgraphs = fb.tables(model, 2, "SubGraph")
    if not subgraphs:
        raise _FlatbufferError("the model has no subgraph")
    for g, sg in enumerate(subgraphs):
        tensors = fb.tables(sg, 0, "Tensor")
        for t in tensors:
            fb.ints(t, 0, "tensor shape")
            fb.ints(t, 7, "tensor shape signature")
            fb.string(t, 3, "tensor name string")
            if 2 in t and fb.u32(t[2]) >= max(len(buffers), 1):
                raise _FlatbufferError(f"subgraph {g}: a tensor refers to buffer {fb.u32(t[2])} of {len(buffers)}")
            if 4 in t:
                q = fb.table(fb.ref(t[4]), "QuantizationParameters")
                for i, size_of in ((0, 4), (1, 4), (2, 4), (3, 8)):
                    fb.vector(q, i, size_of, "quantization vector")
        for what, i in (("subgraph inputs", 1), ("subgraph outputs", 2)):
            for idx in fb.ints(sg, i, what):
                if not 0 <= idx < len(tensors):
                    raise _FlatbufferError(f"subgraph {g}: {what} refer to tensor {idx} of {len(tensors)}")
        for op in fb.tables(sg, 3, "Operator"):
            if (fb.u32(op[0]) if 0 in op else 0) >= len(opcodes):
                raise _FlatbufferError(f"subgraph {g}: an operator refers to an unknown operator code")
            for i in (1, 2, 8):
                for idx in fb.ints(op, i, "operator tensor list"):
                    if not -1 <= idx < len(tensors):
                        raise _FlatbufferError(f"subgraph {g}: an operator refers to tensor {idx} of {len(tensors)}")
            if 4 in op:
                fb.table(fb.ref(op[4]), "operator options")
            fb.vector(op, 5, 1, "custom options")
        fb.string(sg, 4, "subgraph name string")
    for m in fb.tables(model, 6, "Metadata"):
        fb.string(m, 0, "metadata name string")
    fb.ints(model, 5, "metadata buffer list")


def _check_tflite_file(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
            raise ModelFileError(f"{path}: not a TFLite model ({_sniff(path)}no 'TFL3' flatbuffer identifier at byte 4)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                _check_tflite_structure(buf, len(buf))
            except _FlatbufferError as e:
                raise ModelFileError(f"{path}: not a valid TFLite model, the file is truncated or corrupt ({e})") from e


# ---------------------------------------------------------------------------------------------------------
# Public metadata helpers


def _kind(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ModelFileError(
            f"{path}: unknown model file type {path.suffix or '(no suffix)'!r}; expected .tflite or .onnx"
        )
    return kind


def _check_exists(path: Path) -> None:
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


def _embedded(path: Path) -> tuple[dict | None, list[str] | None]:
    """(edgetl.json dict, labels) embedded in a model file; either may be None."""
    _check_exists(path)
    kind = _kind(path)
    meta = labels = None
    if kind == "tflite":
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
            raise ModelFileError(f"{path}: not a TFLite model ({_sniff(path)}no 'TFL3' flatbuffer identifier at byte 4)")
        members = _read_appended_zip(path) or {}
        if METADATA_FILE in members:
            meta = _parse_json(path, members[METADATA_FILE], METADATA_FILE)
        if LABELS_FILE in members:
            labels = _split_labels(members[LABELS_FILE].decode("utf-8", errors="replace"))
    else:
        try:
            props = _onnx_metadata_props(path)
        except (ValueError, EOFError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{path}: not a valid ONNX model ({_sniff(path)}protobuf: {e})") from e
        meta, labels = _from_onnx_props(path, props)
    if meta is not None and isinstance(meta.get("labels"), list):
        labels = [str(label) for label in meta["labels"]]
    return meta, labels


def _from_onnx_props(path: Path, props: dict[str, str]) -> tuple[dict | None, list[str] | None]:
    meta = _parse_json(path, props[ONNX_METADATA_KEY], "'edgetl' metadata") if ONNX_METADATA_KEY in props else None
    labels = _split_labels(props[ONNX_LABELS_KEY]) if ONNX_LABELS_KEY in props else None
    if meta is not None and isinstance(meta.get("labels"), list):
        labels = [str(label) for label in meta["labels"]]
    return meta, labels


def read_metadata(path) -> dict | None:
    """The ``edgetl.json`` dict embedded in a .tflite (appended zip) or .onnx (metadata_props), else None."""
    return _embedded(Path(path))[0]


def _split_labels(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_labels(path) -> list[str]:
    """Labels from a labels.txt file: one per line, whitespace stripped, empty lines skipped."""
    return _split_labels(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------
# Loading and running


_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)


def _sniff(path: Path) -> str:
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


def _tflite_interpreter_class():
    """(Interpreter class, backend name): ai_edge_litert, then tflite_runtime, then tf.lite."""
    errors = []
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except Exception as e:  # ImportError, or a broken install (e.g. a numpy ABI mismatch)
        errors.append(f"ai_edge_litert: {e}")
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except Exception as e:
        errors.append(f"tflite_runtime: {e}")
    try:
        import tensorflow as tf  # last resort: heavy, and absent on devices

        return tf.lite.Interpreter, "tf.lite"
    except Exception as e:
        errors.append(f"tensorflow: {e}")
    raise ImportError(
        "no TFLite interpreter available; install ai-edge-litert (or tflite-runtime). Tried: " + "; ".join(errors)
    )


_INT_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _quant_params(details: dict) -> tuple[float, int]:
    scale, zero_point = details.get("quantization", (0.0, 0))
    qp = details.get("quantization_parameters") or {}
    scales = qp.get("scales")
    if scales is not None and len(scales) > 1:
        raise ValueError(f"per-channel quantized tensor {details.get('name')!r} is not supported as input/output")
    return float(scale), int(zero_point)


class LoadedModel:
    """A loaded .tflite or .onnx image classifier: raw uint8 RGB images in, float32 probabilities out.

    Use :func:`load_model` to create one. ``predict`` is for accuracy; ``set_input``/``invoke``/``output``
    split one batch-1 inference so latency timing measures ``invoke`` only.
    """

    path: Path
    kind: str  # "tflite" | "onnx"
    backend: str  # "ai_edge_litert" | "tflite_runtime" | "tf.lite" | "onnxruntime"
    metadata: dict | None
    labels: list[str] | None
    input_size: int
    input_dtype: np.dtype
    output_dtype: np.dtype
    num_classes: int | None
    num_threads: int
    mean: float
    std: float

    def __init__(self, path: Path, kind: str, num_threads: int, mean: float | None, std: float | None):
        self.path = path
        self.kind = kind
        self.num_threads = int(num_threads)
        self._last_output = None
        self._prepared = None
        if kind == "tflite":
            self._init_tflite()
        else:
            self._init_onnx()
        inp = (self.metadata or {}).get("input") or {}
        self.mean = float(mean if mean is not None else inp.get("mean", 0.0))
        self.std = float(std if std is not None else inp.get("std", 1.0))
        if self.std == 0:
            raise ValueError("std must not be 0")

    def __repr__(self) -> str:
        return (
            f"LoadedModel({str(self.path)!r}, kind={self.kind!r}, backend={self.backend!r}, "
            f"input={self.input_dtype.name}[{self.input_size}x{self.input_size}x3], classes={self.num_classes})"
        )

    # -- construction -----------------------------------------------------------------------------------

    def _init_tflite(self) -> None:
        path = self.path
        _check_tflite_file(path)
        self.metadata, self.labels = _embedded(path)
        interpreter_class, self.backend = _tflite_interpreter_class()
        try:
            self._interpreter = interpreter_class(model_path=str(path), num_threads=self.num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            why = _one_line(e)
            if "not a valid flatbuffer" in why.lower():
                raise ModelFileError(f"{path}: not a valid TFLite model, the file is truncated or corrupt ({why})") from e
            raise ModelFileError(f"{path}: {self.backend} cannot load this model: {why}") from e
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelFileError(
                f"{path}: expected one image input and an output, found {len(inputs)} input(s), "
                f"{len(outputs)} output(s)"
            )
        self._in, self._out = inputs[0], outputs[0]
        try:
            self._in_q = _quant_params(self._in)
            self._out_q = _quant_params(self._out)
        except ValueError as e:
            raise ModelFileError(f"{path}: {e}") from e
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self._set_input_geometry(list(self._in["shape"]))
        out_shape = list(self._out["shape"])
        self.num_classes = int(out_shape[-1]) if out_shape and out_shape[-1] > 0 else None
        self._batch = int(self._in["shape"][0])
        self._resizable = True

    def _init_onnx(self) -> None:
        path = self.path
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(f"running {path} needs onnxruntime: pip install onnxruntime ({e})") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        # On x86 CPUs without VNNI, onnxruntime's default u8s8 int8 kernels saturate in int16 and flip
        # answers of full-range int8 models; this makes them exact at a small speed cost.
        options.add_session_config_entry("session.x64quantprecision", "1")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's pybind errors (InvalidProtobuf, Fail, ...) share no useful base
            raise ModelFileError(f"{path}: not a valid ONNX model ({_sniff(path)}onnxruntime: {_one_line(e)})") from e
        self.backend = "onnxruntime"
        props = dict(self._session.get_modelmeta().custom_metadata_map)
        self.metadata, self.labels = _from_onnx_props(path, props)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelFileError(
                f"{path}: expected one image input and an output, found {len(inputs)} input(s), "
                f"{len(outputs)} output(s)"
            )
        self._in_name, self._out_name = inputs[0].name, outputs[0].name
        if inputs[0].type not in _ONNX_TYPES:
            raise ModelFileError(f"{path}: unsupported input type {inputs[0].type}")
        self.input_dtype = np.dtype(_ONNX_TYPES[inputs[0].type])
        self.output_dtype = np.dtype(_ONNX_TYPES.get(outputs[0].type, np.float32))
        self._in_q = self._out_q = (0.0, 0)
        self._set_input_geometry(list(inputs[0].shape))
        last = outputs[0].shape[-1] if outputs[0].shape else None
        self.num_classes = int(last) if isinstance(last, int) and last > 0 else None

    def _set_input_geometry(self, shape: list) -> None:
        meta_size = ((self.metadata or {}).get("input") or {}).get("size")
        if len(shape) != 4 or (isinstance(shape[3], int) and shape[3] != 3):
            raise ModelFileError(f"{self.path}: expected an NHWC RGB image input [N, R, R, 3], got shape {shape}")
        h, w = shape[1], shape[2]
        if isinstance(h, (int, np.integer)) and h > 0:
            if h != w:
                raise ModelFileError(f"{self.path}: non-square input {h}x{w} is not supported")
            self.input_size = int(h)
        elif meta_size:
            self.input_size = int(meta_size)
        else:
            raise ModelFileError(f"{self.path}: the input resolution is dynamic and no metadata gives it")

    # -- input/output conversion --------------------------------------------------------------------------

    def _check_images(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        expected = (self.input_size, self.input_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, expected))}), got {images.shape}")
        return images

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels (N, R, R, 3) -> the model's input tensor (normalized, quantized as needed)."""
        x = images.astype(np.float32)
        if self.mean != 0.0 or self.std != 1.0:
            x = (x - np.float32(self.mean)) / np.float32(self.std)
        if self.input_dtype == np.float32:
            return x
        lo, hi = _INT_RANGES.get(self.input_dtype, (None, None))
        if lo is None:
            raise ModelFileError(f"{self.path}: unsupported input type {self.input_dtype}")
        scale, zero_point = self._in_q
        if scale > 0:
            x = x / np.float32(scale) + np.float32(zero_point)
        return np.clip(np.round(x), lo, hi).astype(self.input_dtype)

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        scale, zero_point = self._out_q
        if raw.dtype in (np.uint8, np.int8) and scale > 0:
            out = (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        else:
            out = raw.astype(np.float32)
        return out.reshape(out.shape[0], -1)

    # -- TFLite batching ------------------------------------------------------------------------------------

    def _resize(self, n: int) -> bool:
        """Make the TFLite input batch n; False when the model cannot be resized (it is left at batch 1)."""
        if self._batch == n:
            return True
        if n != 1 and not self._resizable:
            return False
        interp = self._interpreter
        shape = [n, self.input_size, self.input_size, 3]
        try:
            interp.resize_tensor_input(self._in["index"], shape, strict=False)
            interp.allocate_tensors()
            self._batch = n
            return True
        except (ValueError, RuntimeError):
            if n == 1:
                raise
            self._resizable = False
            interp.resize_tensor_input(self._in["index"], [1, *shape[1:]], strict=False)
            interp.allocate_tensors()
            self._batch = 1
            return False

    def _run_tflite(self, x: np.ndarray) -> np.ndarray:
        interp = self._interpreter
        interp.set_tensor(self._in["index"], x)
        interp.invoke()
        return interp.get_tensor(self._out["index"])

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "onnx":
            return self._session.run([self._out_name], {self._in_name: x})[0]
        if self._resize(len(x)):
            return self._run_tflite(x)
        self._resize(1)
        return np.concatenate([self._run_tflite(x[i : i + 1]) for i in range(len(x))])

    # -- public API -----------------------------------------------------------------------------------------

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 images (N, R, R, 3) raw RGB 0..255 -> float32 probabilities (N, C)."""
        images = self._check_images(images)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        results = []
        for start in range(0, len(images), batch_size):
            chunk = self._prepare(images[start : start + batch_size])
            results.append(self._dequantize(self._run(chunk)))
        if not results:
            return np.zeros((0, self.num_classes or 0), np.float32)
        return np.concatenate(results)

    def set_input(self, image: np.ndarray) -> None:
        """Prepare a batch-1 input from one uint8 image (R, R, 3) or (1, R, R, 3); nothing runs yet."""
        images = self._check_images(image)
        if len(images) != 1:
            raise ValueError(f"set_input takes one image, got {len(images)}")
        x = self._prepare(images)
        if self.kind == "tflite":
            self._resize(1)
            self._interpreter.set_tensor(self._in["index"], x)
        self._prepared = x
        self._last_output = None

    def invoke(self) -> None:
        """Run once on the prepared input. This, and only this, is what latency timing measures."""
        if self._prepared is None:
            raise RuntimeError("invoke() before set_input()")
        if self.kind == "tflite":
            self._interpreter.invoke()
            self._last_output = True  # read lazily from the interpreter by output()
        else:
            self._last_output = self._session.run([self._out_name], {self._in_name: self._prepared})[0]

    def output(self) -> np.ndarray:
        """Dequantized float32 output of the last invoke, shape (1, C)."""
        if self._last_output is None:
            raise RuntimeError("output() before set_input() and invoke()")
        if self.kind == "tflite":
            return self._dequantize(self._interpreter.get_tensor(self._out["index"]))
        return self._dequantize(self._last_output)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def load_model(path, num_threads: int = 1, mean: float | None = None, std: float | None = None) -> LoadedModel:
    """Load a .tflite or .onnx model for inference.

    ``mean``/``std`` override the metadata's (the float input is ``(pixel - mean) / std``; without metadata
    mean 0 and std 1, i.e. raw 0..255 pixels as edgetl models expect). Raises :class:`ModelFileError` for a
    missing, truncated, corrupt or unsupported file, and ImportError when no runtime for it is installed.
    """
    path = Path(path)
    _check_exists(path)
    kind = _kind(path)
    if num_threads < 1:
        raise ValueError("num_threads must be >= 1")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the file is empty")
    return LoadedModel(path, kind, num_threads, mean, std)
