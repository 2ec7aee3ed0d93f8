"""Handing freed memory back to the operating system.

glibc's malloc keeps what Python, numpy and TensorFlow free in its arenas for reuse, and a long sweep's
process then stays at the resident size of its largest point; `malloc_trim(0)` returns the free pages.
Stdlib only, and a no-op where there is no glibc (macOS, musl): their allocators have no such call.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library: glibc's has it, musl's does not
    except (OSError, AttributeError):
        return None


def trim_malloc() -> bool:
    """Return the C heap's free pages to the OS (glibc's malloc_trim); False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
