"""F5: one prompt answered side by side by plain greedy decoding and by ARGS, each with its reward.

Same model, same prompt, same system prompt; the two run one after the other in one worker
(the engine decodes one reply at a time). A line below the columns keeps each side's refusal rate
over the prompts compared so far: a reward model that buys "alignment" with refusals shows there.
"""

from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label

from ..engine import ARGS_MODES
from ..evaluation.refusals import is_refusal
from ..settings import DecodingSettings
from .generation import run_reply
from .messages import FollowingScroll, ReplyView
from .prompt_input import PromptInput
from .reply import Reply


def compared_settings(settings: DecodingSettings) -> tuple[DecodingSettings, DecodingSettings]:
    """(plain greedy, ARGS) with the user's knobs; ARGS-greedy unless an ARGS mode is chosen."""
    args = settings if settings.mode in ARGS_MODES else settings.with_(mode="args-greedy")
    return settings.with_(mode="greedy"), args


class CompareScreen(ModalScreen):
    DEFAULT_CSS = """
    CompareScreen { background: $background; }
    CompareScreen > Label { padding: 0 1; color: $text-muted; width: 100%; }  /* wraps in a narrow terminal */
    CompareScreen Horizontal { height: 1fr; }
    CompareScreen VerticalScroll { width: 1fr; }
    """
    BINDINGS = [Binding("escape", "cancel_or_close", "Cancel / close")]
    AUTO_FOCUS = "#compare-prompt"  # the default would focus the first (scrollable) column

    def __init__(self, engine, settings: DecodingSettings, system: str | None, judge, colouring: str,
                 prompt: str = "", past: list[str] | None = None):
        """past: the chat's earlier prompts, for ↑; each prompt compared joins them (so ↑ in the chat gives back
        the prompt F5 took out of its input)."""
        super().__init__()
        self.past = past
        self.engine, self.settings, self.system, self.judge = engine, settings, system, judge
        self.colouring = colouring
        self.prompt = prompt
        self.cancel = threading.Event()
        self.running = False
        self.results: list[Reply] = []
        self.refusals: dict[str, list[int]] = {}  # mode → [replies that opened by refusing, replies compared]

    def compose(self) -> ComposeResult:
        yield Label("Compare: plain greedy vs ARGS on the same prompt. Enter runs, Esc cancels/closes.")
        with Horizontal():
            yield FollowingScroll(id="greedy-side")
            yield FollowingScroll(id="args-side")
        yield Label("", id="compare-refusals")
        yield PromptInput(self.past, value=self.prompt, placeholder="prompt to compare", id="compare-prompt")
        yield Footer()

    def on_mount(self) -> None:
        if self.prompt.strip():
            self.start(self.prompt)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip() and not self.running:
            self.start(event.input.prompt)

    def start(self, prompt: str) -> None:
        self.query_one(PromptInput).remember(prompt)
        self.running = True
        self.cancel.clear()
        self.results = []
        if self.refusals:  # its "this prompt" was about the prompt before
            self.query_one("#compare-refusals", Label).update(refusal_line(self.refusals, []))
        views = []
        for side, settings in zip(("#greedy-side", "#args-side"), compared_settings(self.settings)):
            column = self.query_one(side, FollowingScroll)
            column.remove_children()
            column.follow()  # again, if the last reply was scrolled back in
            view = ReplyView(Reply(settings=settings.to_dict()), self.colouring, title=settings.mode)
            column.mount(view)
            views.append((view, settings))
        self.compare(prompt, views)

    @work(thread=True, exclusive=True, group="compare")
    def compare(self, prompt: str, views) -> None:
        conversation = [{"role": "user", "content": prompt}]
        for view, settings in views:
            reply = run_reply(self.engine, conversation, settings, system=self.system, cancel=self.cancel,
                              judge=self.judge, on_step=lambda r, v=view: self.app.call_from_thread(self.show, v, r))
            self.app.call_from_thread(self.show, view, reply)
            self.results.append(reply)  # after Esc, the side not yet run ends at once, shown cancelled
        self.app.call_from_thread(self.finished)

    def show(self, view: ReplyView, reply: Reply) -> None:
        view.reply = reply
        view.show()

    def finished(self) -> None:
        self.running = False
        if any(r.stop_reason == "cancelled" or r.error for r in self.results):
            return  # a cancelled comparison is not counted
        for reply in self.results:
            tally = self.refusals.setdefault(reply.settings.get("mode", "?"), [0, 0])
            tally[0] += is_refusal(reply.text)
            tally[1] += 1
        self.query_one("#compare-refusals", Label).update(refusal_line(self.refusals, self.results))

    def action_cancel_or_close(self) -> None:
        if self.running:
            self.cancel.set()
        else:
            self.dismiss()


def refusal_line(tally: dict[str, list[int]], last: list[Reply]) -> str:
    """'refusals so far: greedy 1/4 (25%), args-greedy 2/4 (50%) · this prompt: args-greedy opened by refusing';
    no 'this prompt' where last is empty (while the next prompt runs, or after it was cancelled)."""
    line = "refusals so far: " + ", ".join(f"{mode} {n}/{total} ({100 * n / total:.0f}%)"
                                           for mode, (n, total) in tally.items())
    if not last:
        return line
    refused = [r.settings.get("mode", "?") for r in last if is_refusal(r.text)]
    return line + " · this prompt: " + (f"{' and '.join(refused)} opened by refusing" if refused else "no refusal")
