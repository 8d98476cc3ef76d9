"""The knobs at all times: mode, k, w, temperature, max new tokens, token colouring, history state."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..settings import DecodingSettings


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar {
        height: auto;  /* wraps where the terminal is narrow: history OFF and generating stay in sight */
        max-height: 3;
        padding: 0 1;
        background: $panel;
        color: $text;
    }
    """

    def show(self, settings: DecodingSettings, colouring: str, history_on: bool, busy: bool,
             objectives: dict[str, float] | None = None) -> None:
        """objectives: the weights the reward model will use (its defaults unless the knobs set them)."""
        text = Text()
        text.append(settings.mode, "bold")
        text.append(f" k={settings.k} w={settings.w:g} T={settings.temperature:g} max={settings.max_new_tokens}")
        if settings.repeat_penalty != 1:
            text.append(f" rep={settings.repeat_penalty:g}")
        if settings.no_repeat_ngram:
            text.append(f" no-repeat={settings.no_repeat_ngram}")
        if settings.adaptive:
            text.append(f" adaptive={settings.adaptive:g}")
        if settings.min_p:
            text.append(f" min-p={settings.min_p:g}")
        if objectives and settings.uses_reward:
            text.append(" " + " ".join(f"{name}={weight:g}" for name, weight in objectives.items()))
        text.append(f" │ colour:{colouring}")
        text.append(" │ history:" + ("on" if history_on else "OFF"), "" if history_on else "bold red")
        if busy:
            text.append(" │ generating", "bold")
        self.update(text)
