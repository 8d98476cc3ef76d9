"""Paths the user names on the command line: one message for each way they can be wrong."""

from __future__ import annotations

import os
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
