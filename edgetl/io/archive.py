"""The one ZIP writer: the same members give the same bytes, on any machine.

Used for a .tflite's associated files (stored: TFLite clients read members in place by offset) and for the
device bundle (deflated). Every entry gets a fixed date, Unix as the creating system and mode 0644, so
nothing about the writing machine or the time reaches the bytes.
"""

from __future__ import annotations

import io
import zipfile

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date ZIP can hold
UNIX = 3  # ZipInfo.create_system; Python writes 0 on Windows, which changes the bytes


def deterministic_zip(members: list[tuple[str, bytes]], compress: bool) -> bytes:
    """A ZIP of `members` (name, bytes) in the order given; deflated when `compress`, else stored."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = method
            info.create_system = UNIX
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buffer.getvalue()
