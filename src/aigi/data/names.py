"""A lossless, UTF-8-safe text form of any file-system name, and its inverse.

A POSIX file name is a string of bytes; Python hands the bytes that are not UTF-8 over as
lone surrogates (``surrogateescape``: byte 0xff becomes ``"\\udcff"``). Such a ``str``
cannot be written to a UTF-8 file, a JSON body or a terminal: that is how a single odd
name used to stop ``detect`` and ``eval`` half-way. Every place that writes a name (CSV,
JSONL, the console, the server) writes :func:`name_to_text` instead, and every place that
reads one back (``--resume``, manifests) reads it with :func:`text_to_name`.

The text form is the name itself except for three escapes:

* a byte that is not UTF-8 becomes ``\\xHH`` (two lower-case hex digits, ``80``..``ff``);
* another lone surrogate (possible in Windows names) becomes ``\\uDXXX``;
* a backslash that is followed by ``\\``, ``x``, ``u`` or an escaped character is doubled,
  so a real name containing ``\\xff`` does not read back as the byte 0xff.

Every name that is valid UTF-8 and has no backslash is unchanged, and
``text_to_name(name_to_text(n)) == n`` for every ``str`` name ``n``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

__all__ = ["markup_name", "name_to_text", "text_to_name", "text_to_path"]

_NEEDS_ESCAPE: Final = re.compile(r"[\ud800-\udfff]|\\(?=[\\xu\ud800-\udfff])")
_ESCAPED: Final = re.compile(r"\\(\\|x[89a-f][0-9a-f]|u[dD][89a-fA-F][0-9a-fA-F]{2})")


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: one raw byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def _unescape(match: re.Match[str]) -> str:
    body = match.group(1)
    if body == "\\":
        return "\\"
    if body[0] == "x":
        return chr(0xDC00 + int(body[1:], 16))
    return chr(int(body[1:], 16))


def name_to_text(name: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """The printable, UTF-8-encodable text form of a file name or path (see the module doc)."""
    if isinstance(name, (bytes, bytearray)):
        text = bytes(name).decode("utf-8", "surrogateescape")
    else:
        raw = os.fspath(name)
        text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    if not isinstance(text, str):
        raise TypeError(f"a file name must be str, bytes or a path, got {type(name).__name__}")
    return _NEEDS_ESCAPE.sub(_escape, text)


def text_to_name(text: str) -> str:
    """The file name (a ``str``, non-UTF-8 bytes as surrogates) that :func:`name_to_text` gave ``text``."""
    if not isinstance(text, str):
        raise TypeError(f"text_to_name needs a str, got {type(text).__name__}")
    return _ESCAPED.sub(_unescape, text)


def text_to_path(text: str) -> Path:
    """:func:`text_to_name` as a :class:`~pathlib.Path`."""
    return Path(text_to_name(text))


def markup_name(name: str | bytes | os.PathLike[str]) -> str:
    """A name ready for a rich markup string: its text form with ``[`` escaped.

    ``console.print(f"skipped {markup_name(path)}")`` prints the name as it is, never as
    markup (``[edited] photo.jpg`` stays visible, ``d/[/b].jpg`` cannot raise).
    """
    from rich.markup import escape

    return escape(name_to_text(name))
