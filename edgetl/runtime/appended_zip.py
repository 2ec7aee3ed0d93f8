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

# Limits on what a model file from anyone may make a reader hold (docs/interfaces.md). edgetl's own archives
# hold two members of a few KB; ImageNet-21k's 21,841 labels are 0.5 MB.
MAX_MEMBERS = 64
MAX_MEMBER_BYTES = 4 << 20  # uncompressed, per member
MAX_ARCHIVE_BYTES = 8 << 20  # uncompressed, all members together
MAX_LABELS = 100_000
MAX_LABEL_CHARS = 1_000
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what edgetl's writers use, now and before

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
    """The files of the metadata archive `blob` (cut from the end of the model at `path`), by name.

    Bounded: the sizes the headers declare are checked against the limits before anything is decompressed,
    and each member is read through a stream capped at its limit, so a header that lies gains nothing. Only
    the methods edgetl writes are accepted: stored (the standard metadata) and deflated (older edgetl files).
    Every failure is a ModelFileError naming the file, the member and the limit.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            infos = zf.infolist()
            _check_headers(path, infos)
            members = {}
            for info in infos:
                data = _read_capped(zf, info)
                if len(data) > MAX_MEMBER_BYTES:
                    raise ModelFileError(
                        f"{path}: metadata member {info.filename!r} holds more than its header's "
                        f"{info.file_size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte limit per member"
                    )
                members[info.filename] = data
            return members
    except ModelFileError:
        raise
    except Exception as e:  # zipfile raises BadZipFile, NotImplementedError, zlib.error, EOFError, struct.error...
        raise ModelFileError(
            f"{path}: the metadata archive appended to the model is corrupt ({type(e).__name__}: {_one_line(e)})"
        ) from e


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, never more than the limit plus one, whatever its header said; in chunks, so that
    inflating holds about as much as the member really has (zipfile inflates up to the size asked for)."""
    chunks, total = [], 0
    with zf.open(info) as stream:
        while total <= MAX_MEMBER_BYTES and (chunk := stream.read(1 << 16)):
            chunks.append(chunk)
            total += len(chunk)
    return b"".join(chunks)


def _check_headers(path, infos: list[zipfile.ZipInfo]) -> None:
    """The limits, from what the archive's central directory declares (before any member is read)."""
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(
            f"{path}: the metadata archive has {len(infos):,} members, over the limit of {MAX_MEMBERS}"
        )
    total = 0
    for info in infos:
        if info.compress_type not in _METHODS:
            raise ModelFileError(
                f"{path}: metadata member {info.filename!r} uses ZIP compression method {info.compress_type}; "
                "edgetl reads stored (0) and deflated (8) members only"
            )
        if info.file_size > MAX_MEMBER_BYTES:
            raise ModelFileError(
                f"{path}: metadata member {info.filename!r} is {info.file_size:,} bytes uncompressed, over the "
                f"{MAX_MEMBER_BYTES:,}-byte limit per member"
            )
        total += info.file_size
        if total > MAX_ARCHIVE_BYTES:
            raise ModelFileError(
                f"{path}: the metadata archive holds more than {MAX_ARCHIVE_BYTES:,} bytes uncompressed "
                f"(the limit; reached at member {info.filename!r})"
            )


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_labels(text: str, path, source: str) -> list[str]:
    """The labels of a labels file's `text` (one per line, whitespace stripped, empty lines skipped), or a
    ModelFileError naming `path`, `source` and the limit when there are too many or one is too long."""
    labels = []
    for line in io.StringIO(text, newline=None):  # lazily: 4 MB of newlines must not become 4 M strings
        if line.strip():
            labels.append(line.strip())
            if len(labels) > MAX_LABELS:
                raise ModelFileError(f"{path}: {source} has more than {MAX_LABELS:,} labels (the limit)")
    return check_labels(labels, path, source)


def check_labels(labels: list, path, source: str) -> list[str]:
    """`labels` as strings, within MAX_LABELS and MAX_LABEL_CHARS (ModelFileError naming the limit)."""
    if len(labels) > MAX_LABELS:
        raise ModelFileError(f"{path}: {source} has {len(labels):,} labels, over the limit of {MAX_LABELS:,}")
    out = [label if isinstance(label, str) else str(label) for label in labels]
    for i, label in enumerate(out):
        if len(label) > MAX_LABEL_CHARS:
            raise ModelFileError(
                f"{path}: {source}: label {i} is {len(label):,} characters long, over the limit of {MAX_LABEL_CHARS}"
            )
    return out
