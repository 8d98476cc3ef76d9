"""F6: the saved conversations. Enter opens one, r renames, d deletes, x exports to Markdown."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from ..errors import UserError
from .dialogs import ConfirmScreen, TextPromptScreen
from .history import History, HistoryError
from .session import ChatSession


class HistoryScreen(ModalScreen[int | None]):
    DEFAULT_CSS = """
    HistoryScreen { align: center middle; }
    HistoryScreen > Vertical {
        width: 78; max-width: 100%; height: 100%; border: thick $accent; background: $surface;
    }
    HistoryScreen OptionList { height: 1fr; border: none; }
    HistoryScreen .hint { color: $text-muted; padding: 0 1; width: 100%; }  /* wraps in a narrow terminal */
    """
    BINDINGS = [
        Binding("escape,f6", "dismiss(None)", "Close"),
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
        Binding("x", "export", "Export"),
    ]

    def __init__(self, history: History):
        super().__init__()
        self.history = history

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Conversations — Enter open · r rename · d delete · x export · Esc close", classes="hint")
            yield OptionList(id="conversations")
            yield Label("", id="history-status", classes="hint", markup=False)  # paths, titles

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        try:
            rows = self.history.conversations()
        except HistoryError as e:
            self.say(str(e))
            return
        for row in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.updated))
            # a Text, not markup: a first prompt "What does [/b] mean?" made every F6 after it exit the app
            options.add_option(Option(Text(f"{when}  {row.title}  ({row.n_messages} msgs)"), id=str(row.id)))
        if rows:
            options.highlighted = min(highlighted or 0, len(rows) - 1)
        else:
            self.say("no saved conversations yet")

    def say(self, text: str) -> None:
        self.query_one("#history-status", Label).update(text)

    def selected(self) -> int | None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return None
        return int(options.get_option_at_index(options.highlighted).id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id))

    def action_rename(self) -> None:
        conversation_id = self.selected()
        row = None if conversation_id is None else self.history.conversation(conversation_id)
        if row is None:
            return

        def rename(title: str | None) -> None:
            if title and title.strip():  # one line, as the list shows it
                self.run_safely(lambda: self.history.rename(conversation_id, " ".join(title.split())))

        self.app.push_screen(TextPromptScreen("New title:", row.title), rename)

    def action_delete(self) -> None:
        conversation_id = self.selected()
        if conversation_id is None:
            return

        def delete(yes: bool | None) -> None:
            if yes:
                self.run_safely(lambda: self.history.delete(conversation_id))

        self.app.push_screen(ConfirmScreen("Delete this conversation for good?"), delete)

    def action_export(self) -> None:
        conversation_id = self.selected()
        if conversation_id is None:
            return
        session = ChatSession(self.history)
        try:
            if session.open(conversation_id, to_continue=False):
                self.say(f"exported to {session.export()}")
        except UserError as e:
            self.say(str(e))

    def run_safely(self, change) -> None:
        try:
            change()
        except UserError as e:  # a HistoryError, or a conversation another chat holds
            self.say(str(e))
        self.reload()
