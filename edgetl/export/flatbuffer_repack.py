"""A bare .tflite flatbuffer unpacked with the object API and packed again, its constant buffers aligned.

Shared by the two rewrites edgetl makes (`tflite.share_quantization_vectors`, `tflite_metadata.
with_standard_metadata`): both take the converter's bare flatbuffer, change a few tables and pack it.
"""

from __future__ import annotations

import numpy as np

from edgetl.runtime import TFLITE_IDENTIFIER, appended_zip_start, is_tflite

# Constant buffers start at a multiple of this: the schema's `data:[ubyte] (force_align: 16)`, which C++
# writers honour and the generated Python Pack ignores (it aligns to 1). The converter's last step is that
# Python Pack (flatbuffer_utils), so its buffers are only 4-aligned: 16 never lowers an alignment.
BUFFER_ALIGNMENT = 16


class AlignedBuffer:
    """Stands in for a BufferT: packs it with the data aligned to BUFFER_ALIGNMENT."""

    def __init__(self, schema, buffer):
        self.schema, self.buffer = schema, buffer

    def Pack(self, builder) -> int:  # the object API's name: ModelT.Pack calls it
        s, b = self.schema, self.buffer
        data = None
        if b.data is not None:
            raw = (
                bytes(b.data)
                if isinstance(b.data, (bytes, bytearray))
                else np.ascontiguousarray(b.data, dtype=np.uint8).tobytes()
            )
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT if raw else 1)
            builder.head -= len(raw)  # one copy, as Builder.CreateNumpyVector does
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data = builder.EndVector()
        s.BufferStart(builder)
        if data is not None:
            s.BufferAddData(builder, data)
        s.BufferAddOffset(builder, b.offset)
        s.BufferAddSize(builder, b.size)
        return s.BufferEnd(builder)


def check_bare(flatbuffer: bytes, who: str) -> bytes:
    """`flatbuffer` as bytes; ValueError unless it is a TFLite flatbuffer with no archive appended (a rewrite
    would silently drop the archive)."""
    flatbuffer = bytes(flatbuffer)
    if not is_tflite(flatbuffer):
        raise ValueError(f"{who}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    if appended_zip_start(flatbuffer) is not None:
        raise ValueError(f"{who}: metadata is appended (a ZIP archive); pass the bare flatbuffer")
    return flatbuffer


def repack(schema, model, size_hint: int) -> bytes:
    """The object-API `model` packed as a .tflite, every constant buffer aligned to BUFFER_ALIGNMENT."""
    import flatbuffers

    if model.buffers is not None:
        model.buffers = [AlignedBuffer(schema, b) for b in model.buffers]
    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())
