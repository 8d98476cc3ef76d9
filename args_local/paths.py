"""Paths the user names on the command line: one message for each way they can be wrong."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import UserError


def input_file(path: str | Path, what: str, hint: str = "") -> Path:
    """PATH as a readable file, or a UserError saying whether it is missing, a folder or unreadable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give the file itself{hint}")
    if not path.is_file():
        raise UserError(f"{what} not found: {path}{hint}")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} {path} is not readable (permission denied)")
    return path


def input_dir(path: str | Path, what: str, hint: str = "") -> Path:
    """PATH as a directory, or a UserError saying whether it is missing or a file."""
    path = Path(path).expanduser()
    if path.is_file():
        raise UserError(f"{what} {path} is a file, not a directory{hint}")
    if not path.is_dir():
        raise UserError(f"{what} not found: {path}{hint}")
    return path


def write_text_atomically(path: str | Path, text: str) -> None:
    """PATH's new text, all or nothing: a kill or a full disk mid-write leaves the old file as it was, and
    two writers at once each write a temporary file of their own (the last to finish wins)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:  # "x": the usual permissions, as open(path, "w") gives
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
