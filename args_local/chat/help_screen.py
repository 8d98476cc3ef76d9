"""F1: every key the chat understands, with what it does and what the colours mean."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .dialogs import PANEL_CSS
from .messages import override_style, reward_style

SCREEN_KEYS = [
    ("Enter", "send the prompt"),
    ("↑ / ↓", "recall earlier prompts in the input"),
    ("History: Enter / r / d / x", "open / rename / delete / export a conversation"),
    ("History: /", "filter by a word in a title or a message (Esc clears it)"),
    ("Compare: Enter / Esc", "answer a prompt by greedy and by ARGS / cancel or close"),
    ("Knobs: Tab, Enter / Esc", "move between fields, apply / discard"),
    ("Ctrl+P", "command palette (themes, keys, screenshot)"),
]


def key_name(key: str) -> str:
    names = {"escape": "Esc", "pageup": "PgUp", "pagedown": "PgDn"}
    if key in names:
        return names[key]
    return "+".join(part.capitalize() if len(part) > 1 or part.startswith("f") else part.upper()
                    for part in key.split("+"))


def key_rows(bindings: list[Binding]) -> list[tuple[str, str]]:
    """One row per action (its parameters aside: PgUp and PgDn scroll, each its way): all its keys, and its
    tooltip (else its description)."""
    rows: dict[str, tuple[list[str], str]] = {}
    for b in bindings:
        keys, _ = rows.setdefault(b.action.split("(")[0], ([], b.tooltip or b.description))
        keys.extend(key_name(k) for k in b.key.split(","))
    return [(" / ".join(keys), what) for keys, what in rows.values()]


class HelpScreen(ModalScreen):
    DEFAULT_CSS = PANEL_CSS.format(name="HelpScreen")
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]  # F1: the app's action_help

    def __init__(self, bindings: list[Binding]):
        super().__init__()
        self.rows = key_rows(bindings) + SCREEN_KEYS

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column()
        for key, what in self.rows:
            keys.add_row(key, what)
        legend = Text("Token colours (F4): reward of the reply so far ")
        for value, label in ((-1.5, "low"), (-0.5, "below"), (0, "middling"), (0.5, "above"), (1.5, "high")):
            legend.append(f" {label} ", reward_style(value))
        legend.append("\n  or override: ")
        legend.append(" policy's top token ", override_style(0))
        legend.append(" ARGS chose the 2nd ", override_style(1))
        legend.append(" 3rd or lower ", override_style(3))
        legend.append(" not ARGS ", "dim")
        with VerticalScroll():
            yield Static(Text("Keys (Esc closes)", style="bold"))
            yield Static(keys)
            yield Static(legend)
