#!/usr/bin/env python3
"""Hostile model files made from a real edgetl artifact, for measuring and testing the readers (issue 28).

    python tools/hostile_models.py MODEL.tflite OUT_DIR [--bomb_mib 1024] [--onnx MODEL.onnx]

writes into OUT_DIR:
- ``bomb.tflite``: the model with its metadata archive's ``labels.txt`` replaced by ``--bomb_mib`` MiB of
  one repeated byte, deflate-compressed (1 GiB is about 1 MB in the file);
- ``liar.tflite``: a small stored ``labels.txt`` whose headers claim 9 bytes while 4 MiB follow;
- ``inject.tflite`` (and ``inject.onnx`` with ``--onnx``): a first label that sets the terminal title and
  clears the screen (``ESC ] 0 ; ... BEL ESC [ 2 J``), in ``labels.txt`` and in ``edgetl.json``.

Standard library only, so it runs in the device environments too. The tests import its builders.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import zipfile
from pathlib import Path

INJECTED_LABEL = "\x1b]0;edgetl was here\x07\x1b[2Jcats"
_EOCD = b"PK\x05\x06"


def split_model(data: bytes) -> tuple[bytes, dict[str, bytes]]:
    """(the flatbuffer before the appended archive, the archive's members by name); {} without one."""
    pos = data.rfind(_EOCD)
    if pos < 0 or pos + 22 > len(data):
        return data, {}
    cd_size, cd_offset = struct.unpack_from("<II", data, pos + 12)
    start = pos - cd_size - cd_offset
    with zipfile.ZipFile(io.BytesIO(data[start:])) as zf:
        return data[:start], {name: zf.read(name) for name in zf.namelist()}


def with_archive(flatbuffer: bytes, members: dict[str, bytes], deflated: tuple[str, ...] = ()) -> bytes:
    """`flatbuffer` with a fresh archive of `members` appended (stored, but deflated for `deflated`)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED
            zf.writestr(info, data)
    return flatbuffer + buf.getvalue()


def bomb(data: bytes, mib: int, member: str = "labels.txt") -> bytes:
    """The model with `member` replaced by `mib` MiB of b"A" (no newline: one huge label), deflated."""
    flatbuffer, members = split_model(data)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            if name != member:
                zf.writestr(info, content)
                continue
            info.compress_type = zipfile.ZIP_DEFLATED
            chunk = b"A" * (1 << 20)
            with zf.open(info, "w", force_zip64=mib >= 4096) as out:
                for _ in range(mib):
                    out.write(chunk)
    return flatbuffer + buf.getvalue()


def liar(data: bytes, member: str = "labels.txt", real_size: int = 4 << 20) -> bytes:
    """The model with a stored `member` of `real_size` bytes whose local and central headers claim 9 bytes.

    The entry's data runs on into the next member's place, so a reader that trusts the sizes reads garbage
    and one that trusts the stream reads `real_size` bytes: either way the reader must stay bounded."""
    flatbuffer, members = split_model(data)
    members[member] = b"B" * real_size
    archive = bytearray(with_archive(b"", members))
    claimed = 9
    for sig, size_at in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
        pos = archive.find(sig)
        while pos >= 0:
            name_len = struct.unpack_from("<H", archive, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
            name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
            if bytes(archive[name_at : name_at + name_len]).decode() == member:
                struct.pack_into("<II", archive, size_at + pos, claimed, claimed)
            pos = archive.find(sig, pos + 4)
    return flatbuffer + bytes(archive)


def inject_tflite(data: bytes, label: str = INJECTED_LABEL) -> bytes:
    """The model with its first label replaced by `label`, in labels.txt and edgetl.json."""
    flatbuffer, members = split_model(data)
    labels = members["labels.txt"].decode().splitlines()
    labels[0] = label
    members["labels.txt"] = "".join(f"{x}\n" for x in labels).encode()
    if "edgetl.json" in members:
        meta = json.loads(members["edgetl.json"])
        meta["labels"] = labels
        members["edgetl.json"] = json.dumps(meta).encode()
    return with_archive(flatbuffer, members)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _string_field(field: int, raw: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


def onnx_with_props(data: bytes, props: dict[str, str]) -> bytes:
    """The ONNX file with metadata_props entries appended (a later entry wins in edgetl's reader)."""
    for key, value in props.items():
        entry = _string_field(1, key.encode()) + _string_field(2, value.encode())
        data += _string_field(14, entry)
    return data


def inject_onnx(path: Path, label: str = INJECTED_LABEL) -> bytes:
    """The ONNX model with its first label replaced by `label`, in ``labels`` and in the ``edgetl`` JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from edgetl.runtime.metadata import read_embedded

    meta, labels = read_embedded(path)
    labels = [label, *labels[1:]]
    props = {"labels": "\n".join(labels), "edgetl": json.dumps({**(meta or {}), "labels": labels})}
    return onnx_with_props(path.read_bytes(), props)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="a real edgetl .tflite (with its metadata archive)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--bomb_mib", type=int, default=1024, help="uncompressed size of the bomb's labels.txt")
    p.add_argument("--onnx", type=Path, default=None, help="a real edgetl .onnx for inject.onnx")
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data = args.model.read_bytes()
    outputs = {
        "bomb.tflite": bomb(data, args.bomb_mib),
        "liar.tflite": liar(data),
        "inject.tflite": inject_tflite(data),
    }
    if args.onnx is not None:
        outputs["inject.onnx"] = inject_onnx(args.onnx)
    for name, blob in outputs.items():
        (args.out_dir / name).write_bytes(blob)
        print(f"{args.out_dir / name}: {len(blob):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
