"""Small modal dialogs: ask for a line of text, or a yes/no."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from .prompt_input import PromptInput

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 72; max-width: 100%; height: auto; max-height: 100%; overflow-y: auto;
    padding: 1 2; border: thick $accent; background: $surface;
}}
{name} > Vertical > Label {{ width: 100%; }}  /* wraps: a Label is as wide as its text, cut off at the frame */
{name} .hint {{ color: $text-muted; }}
"""

PANEL_CSS = """
{name} {{ align: center middle; }}
{name} > VerticalScroll {{
    width: 78; max-width: 100%; height: auto; max-height: 100%;
    border: thick $accent; background: $surface; padding: 0 1;
}}
"""


class TextPromptScreen(ModalScreen[str | None]):
    """A line of text (a paste keeps its line breaks); Enter gives it back, Esc gives None."""

    DEFAULT_CSS = DIALOG_CSS.format(name="TextPromptScreen")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, question: str, value: str = "", hint: str = "Enter to accept, Esc to cancel"):
        super().__init__()
        self.question, self.value, self.hint = question, value, hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield PromptInput(value=self.value, id="answer")
            yield Label(self.hint, classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.input.prompt)


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS = [Binding("y", "dismiss(True)", "Yes"), Binding("n,escape", "dismiss(False)", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Label("y: yes   n / Esc: no", classes="hint")
