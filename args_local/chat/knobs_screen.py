"""F3: edit the decoding knobs. Enter applies (after validation), Esc keeps the old ones."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select

from typing import Callable

from ..errors import UserError
from ..settings import MODES, DecodingSettings, parse_objectives
from .dialogs import DIALOG_CSS

FIELDS = [  # (field, label, type)
    ("k", "k (candidates per step)", int),
    ("w", "w (reward weight)", float),
    ("temperature", "temperature", float),
    ("top_p", "top-p (nucleus)", float),
    ("n", "n (best-of-n samples)", int),
    ("max_new_tokens", "max new tokens", int),
    ("repeat_penalty", "repeat penalty (1 = off)", float),
    ("no_repeat_ngram", "no-repeat n-gram (0 = off)", int),
    ("presence_penalty", "presence penalty (0 = off)", float),
    ("frequency_penalty", "frequency penalty (0 = off)", float),
    ("adaptive", "adaptive: skip RM at p >=", float),
    ("min_p", "min-p (of top token; 0 = off)", float),
    ("seed", "seed", int),
]


class KnobsScreen(ModalScreen[DecodingSettings | None]):
    DEFAULT_CSS = DIALOG_CSS.format(name="KnobsScreen") + """
    KnobsScreen Grid {
        grid-size: 2; grid-columns: auto 1fr; grid-rows: 1; height: auto; grid-gutter: 0 1; margin: 1 0;
    }
    KnobsScreen Input, KnobsScreen Select { width: 1fr; }
    KnobsScreen #knobs-error { color: $text-error; width: 100%; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Discard")]

    def __init__(self, settings: DecodingSettings, vocab_size: int | None = None,
                 check: Callable[[DecodingSettings], object] | None = None, default_objectives: dict | None = None):
        """check: raises UserError for settings the loaded models cannot use (an unknown objective, a reply as long as the context)."""
        super().__init__()
        self.settings = settings
        self.vocab_size = vocab_size
        self.check = check
        self.default_objectives = default_objectives

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Decoding knobs — Tab moves, Enter applies, Esc discards")
            with Grid():
                yield Label("mode")
                yield Select([(m, m) for m in MODES], value=self.settings.mode, allow_blank=False, id="mode", compact=True)
                for name, label, _ in FIELDS:
                    yield Label(label)
                    yield Input(str(getattr(self.settings, name)), id=name, compact=True)
                yield Label("objectives (name=weight,…)")
                defaults = ",".join(f"{n}={w:g}" for n, w in (self.default_objectives or {}).items())
                yield Input(",".join(f"{n}={w:g}" for n, w in self.settings.objectives), id="objectives",
                            placeholder=f"defaults: {defaults}" if defaults else "the reward model's defaults",
                            compact=True)
            yield Label("", id="knobs-error", markup=False)  # quotes what was typed: [/x] is no markup

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            changes = {"mode": self.query_one("#mode", Select).value}
            for name, label, kind in FIELDS:
                raw = self.query_one(f"#{name}", Input).value.strip()
                try:
                    changes[name] = kind(raw)
                except ValueError:
                    raise UserError(f"{label}: {raw!r} is not a{'n integer' if kind is int else ' number'}") from None
            changes["objectives"] = parse_objectives(self.query_one("#objectives", Input).value.strip() or None)
            settings = self.settings.with_(**changes).validated(self.vocab_size)
            if self.check is not None:
                self.check(settings)
        except UserError as e:
            error = self.query_one("#knobs-error", Label)
            error.update(str(e))
            # below the fields: out of sight in a short terminal (scrolled to once it has its new height)
            self.call_after_refresh(error.scroll_visible, animate=False)
            return
        self.dismiss(settings)
