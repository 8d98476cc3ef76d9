"""Text the user hands in is UTF-8; text that is not is refused, never repaired.

Python hands over command-line bytes that are not UTF-8 as lone surrogates (surrogateescape),
and files are read with strict UTF-8. Either way the text is refused with a UserError that
says where it came from: replacing bytes would send the model a prompt the user never wrote.
(Paths are not text: a file name with such bytes is a valid name and is left alone.)
"""

from __future__ import annotations

from .errors import UserError


def checked_text(text: str, where: str) -> str:
    """text, if it is valid Unicode (no lone surrogates); else a UserError naming `where`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
        raise UserError(f"{where} is not valid UTF-8 text ({what} at character {e.start + 1}); "
                        "args-local reads text as UTF-8: check your terminal's or the file's encoding") from None
    return text
