"""Where the chat puts the traceback of a bug, so the terminal gets one line instead of a screenful."""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path

from .. import home


def write_crash_log(error: BaseException) -> Path:
    """Write error's traceback to DATA_DIR/logs/chat-crash-TIME.log (else the temp folder); return the path."""
    text = "".join(traceback.format_exception(error))
    name = f"chat-crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
    for folder in (home.home() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text, encoding="utf-8", errors="backslashreplace")
            return path
        except OSError:
            continue
    raise error
