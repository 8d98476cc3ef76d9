"""The prompt line: Enter sends, ↑/↓ walk through earlier prompts (like a shell).

A pasted paragraph keeps all its lines (Textual's Input keeps only the first): the input is one
line, so each line break shows as LINE_BREAK there, and `prompt` gives the text with them back.
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.widgets import Input

LINE_BREAK = "⏎"


class PromptInput(Input):
    BINDINGS = [
        Binding("up", "recall(-1)", "Earlier prompt", show=False),
        Binding("down", "recall(1)", "Later prompt", show=False),
    ]

    def __init__(self, past: list[str] | None = None, **kwargs):
        """past: the earlier prompts, oldest first; a list shared with another input (compare's) recalls both's."""
        super().__init__(**kwargs)
        self.past = [] if past is None else past
        self._position: int | None = None  # index into past while recalling; None: editing a new prompt
        self._draft = ""

    @property
    def prompt(self) -> str:
        """The text as typed or pasted, line breaks included."""
        return self.value.replace(LINE_BREAK, "\n")

    def validate_value(self, value: str) -> str:
        return value.replace("\n", LINE_BREAK)  # a pasted or recalled prompt of several lines

    def _on_paste(self, event: events.Paste) -> None:
        event.prevent_default()  # Input's own handler would keep the first line only
        self.replace("\n".join(event.text.splitlines()), *self.selection)

    def remember(self, prompt: str) -> None:
        if not self.past or self.past[-1] != prompt:
            self.past.append(prompt)
        self._position = None

    def action_recall(self, direction: int) -> None:
        if not self.past:
            return
        if self._position is None:
            if direction > 0:
                return
            self._draft = self.value
            self._position = len(self.past) - 1
        else:
            self._position += direction
        if self._position < 0:
            self._position = 0
        if self._position >= len(self.past):
            self._position = None
            self.value = self._draft
        else:
            self.value = self.past[self._position]
        self.cursor_position = len(self.value)
