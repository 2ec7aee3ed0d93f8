"""Text from strangers (labels, class folder names, file names, model metadata) made safe to show.

A label is whatever a model file or a dataset folder says it is, so printing it raw lets the file drive the
terminal (``ESC ] 0 ;`` sets the window title, ``ESC [ 2 J`` clears the screen) or reorder what a reader
sees (Unicode bidi overrides). `visible` writes every such character as a Python-style escape (``\\x1b``,
``\\n``, ``\\u202e``) and leaves all other text alone. Stdlib only: the device imports it.
"""

from __future__ import annotations

import unicodedata

# Format characters that are part of ordinary text: zero-width (non-)joiners build emoji and Indic scripts.
_KEPT_FORMAT = frozenset("\u200c\u200d")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Control (C0, DEL, C1), format (bidi overrides, zero-width marks), line/paragraph separators, surrogates
# (undecodable bytes of a file name under surrogateescape).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def is_hidden(ch: str) -> bool:
    """True for a character `visible` escapes: controls, format and separator characters, surrogates."""
    return unicodedata.category(ch) in _HIDDEN and ch not in _KEPT_FORMAT


def has_hidden(text: str) -> bool:
    """True when `text` holds a character that `visible` would escape."""
    return not str(text).isprintable() and any(is_hidden(ch) for ch in str(text))


def visible(text: object) -> str:
    """`text` (str() of anything) with control, escape and other invisible characters written as escapes.

    ``visible("\\x1b[2Jcats") == "\\\\x1b[2Jcats"``; printable text, spaces and non-Latin scripts are unchanged.
    """
    s = str(text)
    if s.isprintable():  # the common case, at C speed
        return s
    return "".join(_escape(ch) if is_hidden(ch) else ch for ch in s)


def visible_lines(text: str) -> str:
    """`visible` applied to each line of a document (report.md, a model card): its line breaks are kept."""
    return "\n".join(visible(line) for line in text.split("\n"))
