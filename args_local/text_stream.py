"""Turning a stream of token bytes into text a user may see.

Two rules: a UTF-8 character split across tokens is never shown half, and text that might
be the start of a stop string is held back until it is clear that it is not.
"""

from __future__ import annotations

import codecs


class TextStream:
    """Feed token bytes, get printable text; `stopped` turns True at a stop string."""

    def __init__(self, stop: tuple[str, ...] = ()):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._pending = ""  # decoded but held back: may begin a stop string
        self.text = ""  # everything emitted so far
        self.stopped = False

    def feed(self, data: bytes) -> str:
        """Return the new text that is safe to show."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        return self._release(final=False)

    def flush(self) -> str:
        """End of generation: release what was held back (unless a stop string ended it). A character
        the last token left half is dropped, as llama.cpp's own servers do: decoded, it is a U+FFFD."""
        if self.stopped:
            return ""
        self._decoder.reset()
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        cut = len(self._pending)
        for s in self._stop:
            at = self._pending.find(s)
            if at != -1:
                self.stopped = True
                cut = min(cut, at)
        if not self.stopped and not final:
            cut -= _longest_stop_prefix_suffix(self._pending, self._stop)
        out, self._pending = self._pending[:cut], ("" if self.stopped else self._pending[cut:])
        self.text += out
        return out


def whole_characters(data: bytes) -> str:
    """data as text without a character cut off at its end (its next token brings the rest); bytes that can
    never be UTF-8 are U+FFFD, as the reply shows them."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data)


def _longest_stop_prefix_suffix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
