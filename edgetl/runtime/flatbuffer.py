"""A bounds check of a TFLite flatbuffer, before any interpreter sees it.

tflite_runtime 2.14 does not verify models and segfaults on a truncated file (ai_edge_litert verifies);
walking the Model's tables, vectors and buffers catches that with a message instead of a crash.
"""

from __future__ import annotations

import struct


class FlatbufferError(ValueError):
    pass


class _Flatbuffer:
    def __init__(self, buf, size: int):
        self.buf, self.size = buf, size
        self.end = 0  # furthest byte any checked object reaches

    def _need(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise FlatbufferError(f"{what} at byte {pos} (+{length}) lies outside the {self.size}-byte file")
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
            raise FlatbufferError(f"{what} at byte {pos} has a malformed vtable")
        self._need(vtable, vsize, f"{what} vtable")
        self._need(pos, tsize, what)
        fields = {}
        for i in range((vsize - 4) // 2):
            off = self.u16(vtable + 4 + 2 * i)
            if off:
                if off >= tsize:
                    raise FlatbufferError(f"{what} at byte {pos}: field {i} lies outside the table")
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
            raise FlatbufferError(f"{what} at byte {start} is not NUL-terminated")

    def tables(self, fields: dict[int, int], i: int, what: str) -> list[dict[int, int]]:
        start, n = self.vector(fields, i, 4, f"{what} vector")
        return [self.table(self.ref(start + 4 * k), what) for k in range(n)]

    def ints(self, fields: dict[int, int], i: int, what: str) -> list[int]:
        start, n = self.vector(fields, i, 4, what)
        return [struct.unpack_from("<i", self.buf, start + 4 * k)[0] for k in range(n)]


def check_tflite_structure(buf, size: int) -> None:
    """Raise FlatbufferError when the Model's tables, vectors or buffers reach past the end of the file."""
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
        raise FlatbufferError("the model has no subgraph")
    codes = [max(fb.u8(oc[0]) if 0 in oc else 0, fb.u32(oc[3]) if 3 in oc else 0) for oc in opcodes]
    for g, sg in enumerate(subgraphs):
        tensors = fb.tables(sg, 0, "Tensor")
        for t in tensors:
            fb.ints(t, 0, "tensor shape")
            fb.ints(t, 7, "tensor shape signature")
            fb.string(t, 3, "tensor name string")
            if 2 in t and fb.u32(t[2]) >= max(len(buffers), 1):
                raise FlatbufferError(f"subgraph {g}: a tensor refers to buffer {fb.u32(t[2])} of {len(buffers)}")
            if 4 in t:
                q = fb.table(fb.ref(t[4]), "QuantizationParameters")
                for i, size_of in ((0, 4), (1, 4), (2, 4), (3, 8)):
                    fb.vector(q, i, size_of, "quantization vector")
        for what, i in (("subgraph inputs", 1), ("subgraph outputs", 2)):
            for idx in fb.ints(sg, i, what):
                if not 0 <= idx < len(tensors):
                    raise FlatbufferError(f"subgraph {g}: {what} refer to tensor {idx} of {len(tensors)}")
        for k, op in enumerate(fb.tables(sg, 3, "Operator")):
            if (fb.u32(op[0]) if 0 in op else 0) >= len(opcodes):
                raise FlatbufferError(f"subgraph {g}: an operator refers to an unknown operator code")
            for i in (1, 2, 8):
                for idx in fb.ints(op, i, "operator tensor list"):
                    if not -1 <= idx < len(tensors):
                        raise FlatbufferError(f"subgraph {g}: an operator refers to tensor {idx} of {len(tensors)}")
            # After the tensor indices are known to be in range.
            _check_requantization(fb, tensors, op, codes[fb.u32(op[0]) if 0 in op else 0], f"subgraph {g} op {k}")
            if 4 in op:
                fb.table(fb.ref(op[4]), "operator options")
            fb.vector(op, 5, 1, "custom options")
        fb.string(sg, 4, "subgraph name string")
    for m in fb.tables(model, 6, "Metadata"):
        fb.string(m, 0, "metadata name string")
    fb.ints(model, 5, "metadata buffer list")


# Builtin operators whose quantized kernels rescale input x filter into the output: CONV_2D, DEPTHWISE_CONV_2D,
# FULLY_CONNECTED. XNNPACK refuses a requantization scale (input scale x filter scale / output scale) of 256 or
# more, and LiteRT 2.x then aborts the process (double free) instead of falling back: checked here.
_REQUANTIZING = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED"}
_INT8_TYPES = (3, 9)  # TensorType UINT8, INT8
MAX_REQUANTIZATION_SCALE = 256.0


def _scales(fb: _Flatbuffer, tensor: dict[int, int]) -> list[float] | None:
    """The quantization scales of an (u)int8 tensor, None for any other tensor."""
    if (fb.u8(tensor[1]) if 1 in tensor else 0) not in _INT8_TYPES or 4 not in tensor:
        return None
    start, n = fb.vector(fb.table(fb.ref(tensor[4]), "QuantizationParameters"), 2, 4, "quantization scales")
    return [struct.unpack_from("<f", fb.buf, start + 4 * i)[0] for i in range(n)] or None


def _check_requantization(fb: _Flatbuffer, tensors: list, op: dict[int, int], code: int, where: str) -> None:
    if code not in _REQUANTIZING:
        return
    ins, outs = fb.ints(op, 1, "operator inputs"), fb.ints(op, 2, "operator outputs")
    if len(ins) < 2 or not outs or min(ins[0], ins[1], outs[0]) < 0:
        return
    scales = [_scales(fb, tensors[i]) for i in (ins[0], ins[1], outs[0])]
    if any(s is None for s in scales) or scales[2][0] <= 0:
        return
    worst = max(scales[0][0] * f / scales[2][0] for f in scales[1])
    if not worst < MAX_REQUANTIZATION_SCALE:  # also NaN
        raise FlatbufferError(
            f"{where} ({_REQUANTIZING[code]}): requantization scale {worst:.3g} (input x filter / output scale) "
            f"is not below {MAX_REQUANTIZATION_SCALE:g}; the quantization parameters are damaged"
        )
