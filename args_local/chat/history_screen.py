"""F6: the saved conversations. Enter opens one, r renames, d deletes, x exports to Markdown; / filters
them by a word in a title or a message (hundreds of them are otherwise found only by scrolling)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
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
    AUTO_FOCUS = "#conversations"  # Enter opens the newest at once, as before there was a filter
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("f6", "dismiss(None)", "Close"),
        Binding("slash", "focus('#filter')", "Filter"),  # in the filter, / is typed as text
        Binding("down", "focus('#conversations')", "List", show=False),  # from the filter: the list has its own
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
        Binding("x", "export", "Export"),
    ]

    def __init__(self, history: History):
        super().__init__()
        self.history = history

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Conversations — Enter open · / filter · ↓ list · r rename · d delete · x export · Esc close",
                        classes="hint")
            yield Input(placeholder="filter: a word in a title or a message", id="filter")
            yield OptionList(id="conversations")
            yield Label("", id="history-count", classes="hint")
            yield Label("", id="history-status", classes="hint", markup=False)  # paths, titles

    def on_mount(self) -> None:
        self.reload()

    def reload(self, highlighted: int | None = None) -> None:
        """List the conversations the filter finds, highlighting the one at index highlighted (default: as before)."""
        options = self.query_one(OptionList)
        highlighted = options.highlighted if highlighted is None else highlighted
        options.clear_options()
        containing = self.query_one("#filter", Input).value
        try:
            rows = self.history.conversations(containing)
            total = self.history.n_conversations()
        except HistoryError as e:
            self.say(str(e))
            return
        self.query_one("#history-count", Label).update(
            (f"{len(rows)} of " if containing else "") + f"{total} conversation{'' if total == 1 else 's'}")
        for row in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.updated))
            # a Text, not markup: a first prompt "What does [/b] mean?" made every F6 after it exit the app
            options.add_option(Option(Text(f"{when}  {row.title}  ({row.n_messages} msgs)"), id=str(row.id)))
        if rows:
            options.highlighted = min(highlighted or 0, len(rows) - 1)
        elif not total:
            self.say("no saved conversations yet")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.reload(highlighted=0)  # the newest conversation the filter finds, for Enter to open

    def on_input_submitted(self, event: Input.Submitted) -> None:
        conversation_id = self.selected()
        if conversation_id is not None:
            self.dismiss(conversation_id)

    def action_close(self) -> None:
        """Esc in the filter clears it first; Esc again (or anywhere else) closes."""
        search = self.query_one("#filter", Input)
        if search.has_focus and search.value:
            search.value = ""
        else:
            self.dismiss(None)

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
