"""The widgets of the conversation: the user's prompt, a reply (streaming, then final), a note."""

from __future__ import annotations

from markdown_it import MarkdownIt
from rich.markdown import Markdown
from rich.text import Text
from textual import events
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from .reply import Reply

COLOURINGS = ("off", "reward", "override")


def parse_markdown(text: str) -> list:
    """markdown-it's tokens for text as the chat reads it: CommonMark with tables and strikethrough, HTML as text."""
    return MarkdownIt("commonmark", {"html": False}).enable("strikethrough").enable("table").parse(text)


def with_line_breaks(text: str) -> str:
    """text with each line break inside a paragraph made a hard one (two spaces at the line's end), so that
    Markdown read elsewhere (an export) keeps the lines the chat shows; code and tables are left as they are."""
    lines = text.split("\n")
    for token in parse_markdown(text):
        if token.type == "paragraph_open" and token.map:
            for i in range(token.map[0], token.map[1] - 1):
                if not lines[i].endswith(("  ", "\\")):
                    lines[i] += "  "
    return "\n".join(lines)


def reward_style(reward: float | None) -> str:
    """Rewards are normalised (mean 0, std 1 on sample replies): five bands from red to green."""
    if reward is None:
        return "dim"
    for limit, style in ((-1.0, "bold red"), (-0.25, "red"), (0.25, ""), (1.0, "green")):
        if reward < limit:
            return style
    return "bold green"


def override_style(chosen_index: int | None) -> str:
    if chosen_index is None:
        return "dim"
    return "" if chosen_index == 0 else ("black on yellow" if chosen_index == 1 else "black on dark_orange")


class ReplyMarkdown(Markdown):
    """Rich's Markdown, with HTML kept as the text it is (Rich drops it: "use the <br> tag" showed
    "use the  tag") and each line break kept, as chats keep them (Markdown joins the lines of a
    paragraph: a poem streamed line by line became one run-on line once finished)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.parsed = parse_markdown(text)
        for block in self.parsed:
            for token in block.children or ():
                if token.type == "softbreak":
                    token.type = "hardbreak"


class FollowingScroll(VerticalScroll):
    """Keeps its end in sight as it grows (a streamed reply, a narrower terminal) while the user is at the end;
    scrolled back, it stays where the user reads until scrolled to the end again. Scrolling to the end on each
    token made earlier turns unreadable while a reply came; Textual's anchor() pushes content shorter than the
    screen to its bottom and, scrolled back, seldom takes up following again (textual#6652, #6677)."""

    following = True

    def watch_scroll_target_y(self, target: float) -> None:
        # where a scroll (the user's or follow's) was asked to go, when asked: an animated one to the end may
        # arrive short of it, the end having moved on meanwhile; growth alone sets no target
        self.following = target >= self.max_scroll_y

    def watch_virtual_size(self) -> None:  # its content grew or shrank
        self.call_next(self.keep_end)  # once its layout is done: its container's size is set after this

    def on_resize(self, event: events.Resize) -> None:  # the terminal's size changed
        self.keep_end()

    def keep_end(self) -> None:
        if self.following:
            self.scroll_end(animate=False, immediate=True)

    def follow(self) -> None:
        """To the end, and following it again (the user sent a prompt, opened a conversation, asked for a note)."""
        self.following = True
        self.scroll_end(animate=False)


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage {
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: thick $primary;
        background: $boost;
    }
    UserMessage.-left-out { text-opacity: 50%; }  /* no longer in the model's view */
    """

    def __init__(self, text: str, turn=None):
        """turn: the session's Turn it shows (the app finds where the turns the model still sees begin)."""
        super().__init__(Text(text), markup=False)
        self.turn = turn


class Note(Static):
    """A line from the app itself: notices, errors, how to fix them."""

    DEFAULT_CSS = """
    Note { margin: 1 0 0 0; padding: 0 1; color: $text-muted; }
    Note.-error { color: $text-error; border-left: thick $error; }
    Note.-warning { color: $text-warning; border-left: thick $warning; }
    """

    def __init__(self, text: str, kind: str = "info"):
        super().__init__(Text(text), markup=False, classes=f"-{kind}")


class ReplyView(Vertical):
    """A reply: plain text while streaming, Markdown when done, or tokens coloured by reward/override."""

    DEFAULT_CSS = """
    ReplyView {
        height: auto;
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: thick $success;
    }
    ReplyView.-streaming { border-left: thick $accent; }
    ReplyView.-cancelled { border-left: thick $warning; }
    ReplyView.-error { border-left: thick $error; }
    ReplyView.-left-out { text-opacity: 50%; }
    ReplyView.-replaced { text-opacity: 50%; border-left: thick $panel-lighten-2; }  /* answered again: Ctrl+R */
    ReplyView > .reply-title { color: $text-accent; text-style: bold; }
    ReplyView > .reply-body { height: auto; }
    ReplyView > .reply-meta { height: auto; color: $text-muted; }
    ReplyView.-error > .reply-meta { color: $text-error; }
    """

    def __init__(self, reply: Reply, colouring: str = "off", title: str | None = None):
        super().__init__()
        self.reply = reply
        self.colouring = colouring
        self.title = title
        self.replaced = False  # another reply to its prompt followed it (Ctrl+R): the model no longer sees it

    def compose(self):
        if self.title:
            yield Static(self.title, classes="reply-title", markup=False)
        yield Static(classes="reply-body")
        yield Static(classes="reply-meta")

    def on_mount(self) -> None:
        self.show()

    def set_replaced(self, replaced: bool) -> None:
        if replaced != self.replaced:
            self.replaced = replaced
            if self.is_mounted:  # else on_mount shows it
                self.show()

    def set_colouring(self, colouring: str) -> None:
        self.colouring = colouring
        self.show()

    def show(self) -> None:
        """Render the reply as it is now (called for every streamed piece and once when done)."""
        reply = self.reply
        self.set_class(not reply.done, "-streaming")
        self.set_class(reply.stop_reason == "cancelled", "-cancelled")
        self.set_class(reply.error is not None, "-error")
        self.set_class(self.replaced, "-replaced")
        self.query_one(".reply-body", Static).update(self.body())
        self.query_one(".reply-meta", Static).update(Text(self.meta()))

    def body(self):
        reply = self.reply
        if self.colouring == "off":
            if reply.done and reply.text.strip():
                return ReplyMarkdown(reply.text)
            return Text(reply.text or ("…" if not reply.done else ""))
        style = reward_style if self.colouring == "reward" else override_style
        text = Text()
        for piece in reply.pieces:
            text.append(piece.text, style(piece.reward if self.colouring == "reward" else piece.chosen_index))
        return text

    def meta(self) -> str:
        reply = self.reply
        if reply.error:
            return f"error: {reply.error}"
        if not reply.done:
            return "generating…  (Esc cancels)"
        parts = ["↻ REPLACED"] if self.replaced else []
        if reply.stop_reason == "cancelled":
            parts.append("⏹ CANCELLED")
        parts.append("reward " + ("n/a" if reply.reward is None else f"{reply.reward:+.2f}"))
        if reply.objective_rewards and len(reply.objective_rewards) > 1:
            parts[-1] += " (" + ", ".join(f"{n} {r:+.2f}" for n, r in reply.objective_rewards.items()) + ")"
        if reply.objective_weights and len(reply.objective_weights) > 1:
            parts.append("weights " + ", ".join(f"{n} {w:.2g}" for n, w in reply.objective_weights.items()))
        if reply.judge_reward is not None:
            parts.append(f"judge {reply.judge_reward:+.2f}")
        overrides = reply.override_rate
        if overrides is not None:
            n, total = overrides
            parts.append(f"ARGS overrode {n}/{total} ({100 * n / total:.0f}%)")
        s = reply.settings
        if s:
            knobs = f"k={s.get('k')} w={s.get('w')}" if str(s.get("mode", "")).startswith("args") else ""
            parts.append(f"{s.get('mode')} {knobs}".strip())
        if reply.tokens_per_s:
            parts.append(f"{reply.tokens_per_s:.0f} tok/s")
        if reply.stop_reason not in ("end_of_turn", "cancelled", None):
            parts.append(f"stopped: {reply.stop_reason}")
        return " · ".join(parts)
