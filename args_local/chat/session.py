"""The conversation being chatted: its turns for the model, its row in the history, its export.

Every turn is written to the history as soon as it exists (the prompt on send, the reply when
it finishes), so a crash loses at most the reply in progress. The writes are queued on the
history's writer thread (History.later), in order, so a database another program holds locked
is waited out there, never by the chat. History failures switch the history off for the session
and are reported through on_history_error (from the writer thread, too); the chat goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import home
from ..errors import UserError
from ..paths import write_text_atomically
from .history import History, HistoryError
from .messages import with_line_breaks
from .reply import Reply


@dataclass
class Turn:
    role: str  # user | assistant
    content: str
    reply: Reply | None = None  # assistant turns: rewards, settings, pieces


class ChatSession:
    def __init__(self, history: History | None, on_history_error: Callable[[str], None] = lambda message: None):
        self.history = history
        self.on_history_error = on_history_error
        self.conversation_id: int | None = None
        self.title: str | None = None
        self.system: str | None = None  # None: the chat template's default
        self.turns: list[Turn] = []

    def _read(self, read: Callable[[History], object]):
        if self.history is None:
            return None
        try:
            return read(self.history)
        except HistoryError as e:
            self._history_failed(e)
            return None

    def _save(self, write: Callable[[History], object]) -> None:
        """Queue one write (one transaction: see History.later). It runs only while history is still on: the
        writes queued behind one that failed (a reply whose prompt was not saved) are dropped with it."""
        def if_still_on(history: History) -> None:
            if self.history is not None:
                write(history)

        if self.history is not None:
            self.history.later(if_still_on, self._history_failed)

    def _history_failed(self, error: HistoryError) -> None:
        if self.history is not None:  # said once
            self.history = None
            self.on_history_error(str(error))

    # --- the conversation ------------------------------------------------------------------
    def model_turns(self) -> list[Turn]:
        """The turns for the engine's next reply to a new prompt (see model_turns_of)."""
        return model_turns_of(self.turns)

    def model_messages(self) -> list[dict]:
        return messages_of(self.model_turns())

    def regenerate_turns(self) -> list[Turn] | None:
        """The turns for answering the last prompt again (Ctrl+R): those up to it, the replies after it left out
        (the new reply follows them, and so replaces them); None if there is no prompt yet."""
        last_prompt = next((i for i in reversed(range(len(self.turns))) if self.turns[i].role == "user"), None)
        return None if last_prompt is None else model_turns_of(self.turns[: last_prompt + 1])

    def add_prompt(self, text: str) -> None:
        self.turns.append(Turn("user", text))
        if self.title is None:  # the first prompt of a new conversation (an opened one has its title)
            self.title = title_from(text)
            held = self.history.held if self.history is not None else None
            self._save(lambda h: self._create(h, held))
        # the writes below run after _create, on the writer thread: conversation_id is set by then
        self._save(lambda h: h.add_message(self.conversation_id, "user", text))

    def _create(self, history: History, held: int | None) -> None:
        """held: the conversation held when the prompt was sent. A write delayed by a locked database may run
        after the user opened another conversation (a session of its own, holding it): that hold is kept."""
        self.conversation_id = history.create_conversation(self.title, self.system)
        if history.held == held:
            history.hold(self.conversation_id)

    def add_reply(self, reply: Reply) -> None:
        content = reply.text
        self.turns.append(Turn("assistant", content, reply))
        self._save(lambda h: h.add_message(
            self.conversation_id, "assistant", content, reward=reply.reward, judge_reward=reply.judge_reward,
            stop_reason=reply.stop_reason or "error", settings=reply.settings_json(), pieces=reply.pieces_json()))

    def set_system(self, system: str | None) -> None:
        self.system = system or None
        if self.title is not None:  # else the conversation is made with it, at the first prompt
            self._save(lambda h: h.set_system(self.conversation_id, self.system))

    def open(self, conversation_id: int, to_continue: bool = True) -> bool:
        """Load a stored conversation into this session; False if it is gone or history is off.
        to_continue: hold it for this chat's turns (UserError if another chat holds it)."""
        row = self._read(lambda h: h.conversation(conversation_id))
        messages = self._read(lambda h: h.messages(conversation_id))
        if row is None or messages is None:
            return False
        if to_continue and not self.history.hold(row.id):
            raise UserError(f"“{row.title}” is open in another args-local chat: continue it there, or close "
                            "that chat first (two chats would interleave their turns in it)")
        self.conversation_id, self.title, self.system = row.id, row.title, row.system
        self.turns = [Turn(m.role, m.content, None if m.role == "user" else Reply.from_stored(
            m.content, m.reward, m.judge_reward, m.stop_reason, m.settings, m.pieces)) for m in messages]
        return True

    # --- export ------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        lines = [f"# {self.title or 'Conversation'}", ""]
        if self.system:
            lines += [f"*System prompt:* {with_line_breaks(self.system)}", ""]
        for turn, old in zip(self.turns, replaced_marks(self.turns)):
            heading = "## You" if turn.role == "user" else f"## Assistant — {describe(turn.reply)}"
            if old:
                heading += " · replaced"
            lines += [heading, "", with_line_breaks(turn.content), ""]
        return "\n".join(lines)

    def export(self, directory: Path | None = None) -> Path:
        """Write the conversation as Markdown to directory (default: the current directory, else the
        data directory's exports/ when that is not writable) and return the file's path."""
        name = f"args-local-chat-{self.conversation_id or 'unsaved'}-{slug(self.title or 'conversation')}.md"
        text = self.to_markdown()
        for folder in ([directory] if directory else [Path.cwd(), home.home() / "exports"]):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / name
                write_text_atomically(path, text)  # a full disk keeps an earlier export of it whole
                return path.resolve()
            except OSError as error:
                last = error
        raise UserError(f"cannot write the export {name}: {last}")


def replaced_marks(turns: list[Turn]) -> list[bool]:
    """Whether each turn is a reply answered again (Ctrl+R): one with a later reply to the same prompt that has
    text (one cancelled before any text replaces nothing). The history keeps all, in order, so a reopened
    conversation is marked by this same rule."""
    marks, answered = [False] * len(turns), False  # answered: a reply with text follows, before the next prompt
    for i in reversed(range(len(turns))):
        if turns[i].role == "user":
            answered = False
        else:
            marks[i] = answered
            answered = answered or bool(turns[i].content.strip())
    return marks


def model_turns_of(turns: list[Turn]) -> list[Turn]:
    """The turns the engine is sent. A replaced reply is left out (the model sees only the last answer to a
    prompt), and so is a reply that produced no text, and an earlier prompt left without a reply (its reply
    failed, was cancelled before any text, or was lost when the app was killed): the model would otherwise see
    two prompts in a row and answer the first, and a prompt too long for the context would push out every turn
    before it."""
    turns = [t for t, old in zip(turns, replaced_marks(turns)) if not old and t.content.strip()]
    return [t for i, t in enumerate(turns) if t.role != "user" or i == len(turns) - 1 or turns[i + 1].role != "user"]


def messages_of(turns: list[Turn]) -> list[dict]:
    """user/assistant messages, as the engine takes them."""
    return [{"role": t.role, "content": t.content} for t in turns]


def title_from(prompt: str, width: int = 48) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "conversation"


def describe(reply: Reply | None) -> str:
    """One line about a reply: mode and knobs, rewards, how it stopped."""
    if reply is None:
        return ""
    s = reply.settings or {}
    parts = [s.get("mode", "?")]
    if s.get("mode", "").startswith("args"):
        parts.append(f"k={s.get('k')} w={s.get('w')}")
    if reply.reward is not None:
        parts.append(f"reward {reply.reward:+.2f}")
    if reply.judge_reward is not None:
        parts.append(f"judge {reply.judge_reward:+.2f}")
    if reply.stop_reason and reply.stop_reason != "end_of_turn":
        parts.append(reply.stop_reason)
    return " · ".join(parts)
