"""The ZIP archive appended to a .tflite (``labels.txt``, ``edgetl.json``, the standard metadata's associated
files): found from the file's tail and read. Interpreters ignore the trailing bytes.

Stdlib only: it runs on devices with nothing but numpy, Pillow and a TFLite runtime.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

TFLITE_IDENTIFIER = b"TFL3"
METADATA_FILE = "edgetl.json"
LABELS_FILE = "labels.txt"

_EOCD = b"PK\x05\x06"  # ZIP end-of-central-directory signature
_EOCD_SIZE = 22
_MAX_ZIP_COMMENT = 0xFFFF


def is_tflite(head: bytes) -> bool:
    """True when `head` (a file's first bytes, at least 8) carries the TFLite flatbuffer identifier."""
    return len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER


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


def read_appended_zip(path: Path) -> dict[str, bytes] | None:
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
