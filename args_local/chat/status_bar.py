"""The state at all times: history on or off, whether a reply is coming, the mode and the knobs it decodes with,
token colouring."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ..settings import DecodingSettings

# The knobs each mode decodes with, besides max new tokens and the repetition knobs, which all use.
MODE_KNOBS = {
    "args-greedy": ("k", "w"),
    "args-stochastic": ("k", "w", "temperature", "seed"),
    "greedy": (),
    "top-k": ("k", "temperature", "seed"),
    "nucleus": ("top_p", "temperature", "seed"),
    "best-of-n": ("n", "k", "temperature", "seed"),  # each sample drawn from the top k
}
SHORT_NAMES = {"temperature": "T", "top_p": "top-p"}


def gated_objectives(reward_model) -> set[str]:
    """The objectives whose weight a gate switches on or off by the last user message (reward/gates.py),
    named as the reward model names them (MODEL.OBJECTIVE in a combination)."""
    parts = getattr(reward_model, "parts", None)
    if parts is not None:
        return {f"{part.name}.{name}" for part in parts for name in part.gates}
    return set(reward_model.gates)


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar {
        height: auto;  /* wraps where the terminal is narrow; what is past max-height is cut */
        max-height: 3;
        padding: 0 1;
        background: $panel;
        color: $text;
    }
    """

    def show(self, settings: DecodingSettings, colouring: str, history_on: bool, busy: bool,
             objectives: dict[str, float] | None = None, gated: set[str] = frozenset()) -> None:
        """objectives: the weights the reward model will use (its defaults unless the knobs set them); gated: those
        of them a gate may switch off for the next prompt, marked so (the reply's footer says what it used). Shown
        bare, harmless=2 read as the weight of every reply, where an ordinary question's reply had 0."""
        # History and generating first: at the end, two reward models' weights wrapped them out of sight at 60 columns
        text = Text("history:" + ("on" if history_on else "OFF"), "" if history_on else "bold red")
        if busy:
            text.append(" │ ").append("generating", "bold")
        text.append(" │ ").append(settings.mode, "bold")
        for knob in MODE_KNOBS[settings.mode]:
            value = getattr(settings, knob)
            text.append(f" {SHORT_NAMES.get(knob, knob)}={value:g}" if isinstance(value, float) else f" {knob}={value}")
        text.append(f" max={settings.max_new_tokens}")
        if settings.repeat_penalty != 1:
            text.append(f" rep={settings.repeat_penalty:g}")
        if settings.no_repeat_ngram:
            text.append(f" no-repeat={settings.no_repeat_ngram}")
        if settings.presence_penalty:
            text.append(f" presence={settings.presence_penalty:g}")
        if settings.frequency_penalty:
            text.append(f" frequency={settings.frequency_penalty:g}")
        if settings.adaptive:
            text.append(f" adaptive={settings.adaptive:g}")
        if settings.min_p:
            text.append(f" min-p={settings.min_p:g}")
        if objectives and settings.uses_reward:
            text.append(" " + " ".join(f"{name}={weight:g}" + (" (gated)" if weight and name in gated else "")
                                       for name, weight in objectives.items()))
        text.append(f" │ colour:{colouring}")
        self.update(text)
