"""`args-local chat`: the Textual app. The engine streams each reply in a thread worker; the UI
follows the stream of events and never waits on the model.

Tests hand in an already-loaded Engine (engine=...) so they share one; the CLI hands in a
loader callable, run in a worker so the window appears at once and a model that fails to
load becomes a message in the chat instead of a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from pathlib import Path
from typing import Callable

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Input

from .. import home
from ..errors import UserError
from ..settings import MODES, DecodingSettings, check_reply_room
from .compare_screen import CompareScreen
from .crash_log import write_crash_log
from .dialogs import TextPromptScreen
from .generation import run_reply
from .help_screen import HelpScreen
from .history import RETRY_FOR, History, HistoryError
from .history_screen import HistoryScreen
from .knobs_screen import KnobsScreen
from .judge import Judge
from .messages import COLOURINGS, FollowingScroll, Note, ReplyView, UserMessage
from .model_info_screen import ModelInfoScreen, model_table
from .prompt_input import PromptInput
from .reply import Reply
from .session import ChatSession, Turn, messages_of, replaced_marks
from .status_bar import StatusBar, gated_objectives

SETUP_HINT = "To fix: run tools/setup.sh to build the default models, or pass --policy FILE.gguf / --reward DIR."

# Actions that only make sense on the chat itself, not while a dialog is open.
CHAT_ACTIONS = {"scroll_conversation", "cycle_mode", "knobs", "cycle_colouring", "compare", "history", "system_prompt",
                "model_info", "export", "new_conversation", "cancel_reply", "regenerate",
                "copy_reply"}


def default_db_path() -> Path:
    return home.home() / "history.sqlite"


class ChatApp(App):
    TITLE = "args-local chat"
    CSS = """
    #conversation { height: 1fr; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "cancel_reply", "Cancel", tooltip="cancel the reply in progress (keeps its text)"),
        Binding("pageup", "scroll_conversation(-1)", "Scroll", show=False,
                tooltip="scroll the conversation (a reply streams on below; at the end, it follows it again)"),
        Binding("pagedown", "scroll_conversation(1)", "Scroll", show=False),
        # F1 as a priority key reaches the app from every dialog, as the footer under them says it does. Not ?:
        # the prompt, which always has the focus, takes it as text, so the help listed a key that never opened it
        Binding("f1", "help", "Help", priority=True, tooltip="this list of keys"),
        Binding("f2", "cycle_mode", "Mode", tooltip="next decoding mode: " + " → ".join(MODES)),
        Binding("f3", "knobs", "Knobs", tooltip="edit mode, k, w, temperature, top-p, n, max new tokens, repetition, adaptive, min-p, seed, "
                                               "objective weights"),
        Binding("f4", "cycle_colouring", "Colour",
                tooltip="colour tokens: off → by reward of the reply so far → by ARGS overriding the policy"),
        Binding("f5", "compare", "Compare", tooltip="greedy vs ARGS side by side on one prompt (the input's text)"),
        Binding("f6", "history", "History", tooltip="saved conversations: find, open, rename, delete, export"),
        Binding("f7", "system_prompt", "System prompt", show=False, tooltip="set this conversation's system prompt"),
        Binding("f8", "model_info", "Models", show=False, tooltip="policy and reward models: files, size, CPU/GPU"),
        Binding("f9", "export", "Export", show=False,
                tooltip="export this conversation to Markdown (current directory)"),
        Binding("ctrl+r", "regenerate", "Again", show=False,
                tooltip="answer the last prompt again, with the knobs as they are now (the reply before stays, "
                        "marked replaced; the model sees only the new one)"),
        Binding("ctrl+y", "copy_reply", "Copy", show=False,
                tooltip="copy the last reply's text to the clipboard (by the terminal, OSC 52: over SSH too in most)"),
        Binding("ctrl+n", "new_conversation", "New", show=False, tooltip="start a new conversation"),
        Binding("ctrl+t", "change_theme", "Theme", show=False, tooltip="pick a colour theme"),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="quit (every finished turn is already saved)"),
    ]

    def __init__(self, engine=None, load_engine: Callable[[], object] | None = None,
                 db_path: str | Path | None = None, judge_path: str | Path | None = None,
                 rm_threads: int | None = None, settings: DecodingSettings | None = None, system: str | None = None):
        """rm_threads: the judge's, as the reward model's (--rm-threads); system: the system prompt of every new
        conversation (None: the chat template's default)."""
        super().__init__()
        self.engine = engine
        self.load_engine = load_engine
        self.load_error: str | None = None
        self.db_path = Path(db_path) if db_path else default_db_path()
        self.judge = Judge(home.default_judge() if judge_path is None else judge_path, rm_threads)
        self.settings = settings or DecodingSettings()
        self.colouring = "off"
        self.cancel = threading.Event()
        self.busy = False
        self.system = system
        self.session = self.new_session(None)
        self.crash_log: Path | None = None  # set when a bug stopped the app

    def _handle_exception(self, error: Exception) -> None:
        """A bug. Textual would print the whole traceback on the terminal and exit with code 0;
        the traceback goes to a log file and the app exits with code 1 (`args-local chat` then says
        where the log is). Every finished turn is already in the history; a reply in progress stops."""
        self.cancel.set()
        if self.crash_log is None:
            self.crash_log = write_crash_log(error)
        self.exit(return_code=1)

    def compose(self) -> ComposeResult:
        yield FollowingScroll(id="conversation")
        yield PromptInput(placeholder="Ask something… (Enter sends, ↑ recalls, F1 help)", id="prompt")
        yield StatusBar()
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        # kill PID (or kill -INT) quits as Ctrl+Q does; it ended the process on the spot (SIGINT: with a traceback),
        # leaving the terminal in the app's screen and mouse mode, and the reply in progress unsaved
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows; a loop outside the main thread
                asyncio.get_running_loop().add_signal_handler(signum, self.call_next, self.action_quit, 128 + signum)
        try:
            self.session.history = History(self.db_path)
            self.query_one(PromptInput).past = self.session.history.prompts()
        except HistoryError as e:
            self.add_note(str(e), "warning")
        if self.engine is None:
            if self.load_engine is None:
                self.model_failed("no model given")
            else:
                self.add_note("loading models…")
                self.load_models()
        self.update_status()
        self.query_one(PromptInput).focus()

    # --- models --------------------------------------------------------------------------------
    @work(thread=True, group="load")
    def load_models(self) -> None:
        try:
            engine = self.load_engine()
        except UserError as e:
            self.call_from_thread(self.model_failed, str(e))
        except Exception as e:  # a broken file can fail in ways no one anticipated; say so, keep running
            self.call_from_thread(self.model_failed, f"{type(e).__name__}: {e}")
        else:
            self.call_from_thread(self.model_ready, engine)

    def model_ready(self, engine) -> None:
        self.engine = engine
        info = engine.policy.info
        rm = engine.reward
        self.add_note(f"ready: {Path(info.path).name}" + (f" + reward model {rm.name} ({rm.provider})" if rm else ""))
        self.update_status()

    def model_failed(self, message: str) -> None:
        self.load_error = message if "tools/setup.sh" in message else f"{message}\n{SETUP_HINT}"
        self.add_note(f"The models could not be loaded:\n{self.load_error}\nHistory (F6) still works.", "error")

    # --- the conversation ---------------------------------------------------------------------
    def add_note(self, text: str, kind: str = "info", before: ReplyView | None = None) -> None:
        """A note at the end of the conversation (scrolled to), or above `before`: the reply it is about."""
        self.query_one("#conversation").mount(Note(text, kind), before=before)
        if before is None:
            self.scroll_down()

    def scroll_down(self) -> None:
        self.query_one("#conversation", FollowingScroll).follow()

    def history_failed(self, message: str) -> None:
        self.add_note(message, "warning")
        self.update_status()

    def update_status(self) -> None:
        rm = self.engine.reward if self.engine is not None else None
        self.query_one(StatusBar).show(self.settings, self.colouring, self.session.history is not None, self.busy,
                                       self.objective_weights(), gated_objectives(rm) if rm else set())

    def objective_weights(self) -> dict[str, float] | None:
        """What the reward model will weigh its objectives by: as set, or its defaults."""
        if self.engine is not None and self.engine.reward is not None:
            try:
                return self.engine.objective_weights(self.settings)
            except UserError as e:  # set on the command line for another reward model: say so once loaded
                self.settings = self.settings.with_(objectives=())
                self.add_note(f"{e}; using the reward model's default weights", "warning")
                return self.engine.objective_weights(self.settings)
        return dict(self.settings.objectives) or None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt" or not event.value.strip():
            return
        prompt = event.input.prompt.strip()
        if not self.can_reply():
            return
        event.input.value = ""
        event.input.remember(prompt)
        self.session.add_prompt(prompt)
        self.query_one("#conversation").mount(UserMessage(prompt, self.session.turns[-1]))
        self.start_reply(self.session.model_turns())

    def can_reply(self) -> bool:
        """Whether a reply can start now; if not, the user is told why."""
        if self.busy:
            self.notify("A reply is still coming; Esc cancels it.", severity="warning")
            return False
        if self.engine is None:
            self.add_note(self.load_error and f"No model loaded: {self.load_error}"
                          or "The models are still loading…", "error" if self.load_error else "info")
            return False
        return True

    def start_reply(self, turns: list[Turn]) -> None:
        """A reply to turns (the last a prompt), with the knobs as they are now, in a new view at the end."""
        view = ReplyView(Reply(settings=self.settings.to_dict()), self.colouring)
        self.query_one("#conversation").mount(view)
        self.scroll_down()
        self.busy = True
        self.cancel = threading.Event()
        self.update_status()
        self.generate(view, turns, self.settings, self.session.system, self.cancel)

    @work(thread=True, exclusive=True, group="reply")
    def generate(self, view: ReplyView, turns: list[Turn], settings: DecodingSettings,
                 system: str | None, cancel: threading.Event) -> None:
        reply = run_reply(self.engine, messages_of(turns), settings, system=system, cancel=cancel, judge=self.judge,
                          on_step=lambda r: self.call_from_thread(self.show_reply, view, r),
                          on_notice=lambda message: self.call_from_thread(self.add_note, message, "warning", view))
        self.call_from_thread(self.reply_finished, view, reply, turns)

    def show_reply(self, view: ReplyView, reply: Reply) -> None:
        view.reply = reply
        view.show()

    def reply_finished(self, view: ReplyView, reply: Reply, turns: list[Turn]) -> None:
        self.show_reply(view, reply)
        if reply.error is None:
            self.session.add_reply(reply)
            self.dim_left_out(turns[reply.dropped_turns])  # the engine drops whole turns, never the prompt
            self.mark_replaced()
        self.busy = False
        self.update_status()

    def dim_left_out(self, first_seen: Turn) -> None:
        """Dim the turns above first_seen, the oldest the model saw (a user's: the engine drops a prompt with
        its replies): they no longer fit the context. A later, shorter prompt may fit them again."""
        seen = False
        for widget in self.query("#conversation > UserMessage, #conversation > ReplyView"):
            seen = seen or getattr(widget, "turn", None) is first_seen
            widget.set_class(not seen, "-left-out")

    def mark_replaced(self) -> None:
        """Mark each reply answered again (Ctrl+R) as the session's rule tells, live as in a reopened conversation."""
        turns = self.session.turns
        old = [turn.reply for turn, replaced in zip(turns, replaced_marks(turns)) if replaced]
        for view in self.query("#conversation > ReplyView").results(ReplyView):
            view.set_replaced(any(view.reply is reply for reply in old))

    def show_session(self) -> None:
        """Redraw the conversation area from self.session (after opening or starting one)."""
        conversation = self.query_one("#conversation")
        conversation.remove_children()
        if self.session.system:
            conversation.mount(Note(f"system prompt: {self.session.system}"))
        for turn in self.session.turns:
            conversation.mount(UserMessage(turn.content, turn) if turn.role == "user"
                               else ReplyView(turn.reply, self.colouring))
        self.mark_replaced()
        self.scroll_down()

    # --- actions ----------------------------------------------------------------------------------
    async def action_quit(self, return_code: int = 0) -> None:
        if self.busy:  # the reply stops at its next token and is saved, marked cancelled
            self.cancel.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.workers.wait_for_complete(), timeout=5)
        history = self.session.history
        if history is not None and not await asyncio.to_thread(history.wait, 0.5):
            self.notify("Saving the last turn: another program holds the history database locked…")
            await asyncio.to_thread(history.wait, RETRY_FOR + 5)  # the app goes on drawing meanwhile
        self.exit(return_code=return_code)

    def on_unmount(self) -> None:
        """However the app ends (a bug included), the turns queued for the history are saved first."""
        if self.session.history is not None:
            self.session.history.wait(RETRY_FOR + 5)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in CHAT_ACTIONS and len(self.screen_stack) > 1:
            return False  # a dialog is open: its own keys apply
        if action in {"compare", "history", "new_conversation"} and self.busy:
            return None  # shown disabled while a reply streams
        return True

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
        else:
            self.push_screen(HelpScreen(self.BINDINGS))

    def action_scroll_conversation(self, pages: int) -> None:
        """From the prompt, which has the focus (the conversation's own keys need Shift+Tab to it first)."""
        conversation = self.query_one("#conversation", VerticalScroll)
        if pages < 0:
            conversation.scroll_page_up(animate=False)
        else:
            conversation.scroll_page_down(animate=False)

    def action_cancel_reply(self) -> None:
        if self.busy:
            self.cancel.set()

    def action_regenerate(self) -> None:
        """The last prompt answered again with the knobs as they are now; the replies to it stay, marked replaced."""
        turns = self.session.regenerate_turns()
        if turns is None:
            self.notify("No reply to regenerate yet: send a prompt first.")
        elif self.can_reply():
            self.start_reply(turns)

    def action_copy_reply(self) -> None:
        if self.busy:
            self.notify("A reply is still coming: Ctrl+Y copies it once done (Esc cancels it).", severity="warning")
            return
        text = next((t.content for t in reversed(self.session.turns) if t.role == "assistant" and t.content.strip()),
                    None)
        if text is None:
            self.notify("No reply to copy yet.")
            return
        self.copy_to_clipboard(text)
        self.notify(f"reply copied ({len(text)} characters)")

    def action_cycle_mode(self) -> None:
        self.settings = self.settings.with_(mode=MODES[(MODES.index(self.settings.mode) + 1) % len(MODES)])
        self.update_status()

    def action_knobs(self) -> None:
        def apply(settings: DecodingSettings | None) -> None:
            if settings is not None:
                self.settings = settings
                self.update_status()

        vocab = self.engine.policy.n_vocab if self.engine else None
        rm = self.engine.reward if self.engine else None
        self.push_screen(KnobsScreen(self.settings, vocab, self.check_knobs if self.engine else None,
                                     rm.default_objectives if rm else None), apply)

    def check_knobs(self, settings: DecodingSettings) -> None:
        """What the loaded models refuse: an objective the reward model lacks, or a reply as long as the
        context (every prompt would then fail to fit, however short)."""
        check_reply_room(settings.max_new_tokens, self.engine.policy.n_ctx)
        self.engine.objective_weights(settings)

    def action_cycle_colouring(self) -> None:
        self.colouring = COLOURINGS[(COLOURINGS.index(self.colouring) + 1) % len(COLOURINGS)]
        for view in self.query(ReplyView):
            view.set_colouring(self.colouring)
        self.update_status()

    def action_compare(self) -> None:
        if self.engine is None:
            self.add_note(f"No model loaded: {self.load_error or 'still loading'}", "error")
            return
        prompt_input = self.query_one(PromptInput)
        prompt, prompt_input.value = prompt_input.prompt.strip(), ""
        self.push_screen(CompareScreen(self.engine, self.settings, self.session.system, self.judge,
                                       self.colouring, prompt, prompt_input.past))

    def action_history(self) -> None:
        if self.session.history is None:
            self.notify("History is off for this session (see the message in the chat).", severity="warning")
            return

        def open_conversation(conversation_id: int | None) -> None:
            if conversation_id is None:
                if self.session.conversation_id is not None and self.session.history is not None:
                    row = self.session.history.conversation(self.session.conversation_id)
                    if row is None:
                        self.action_new_conversation()  # the open conversation was deleted
                    else:
                        self.session.title = row.title  # or renamed: F9 exports it under its new title
                return
            session = self.new_session(self.session.history)
            try:
                opened = session.open(conversation_id)
            except UserError as e:  # another chat holds it
                self.add_note(str(e), "warning")
                return
            if opened:
                self.session = session
                self.show_session()

        self.push_screen(HistoryScreen(self.session.history), open_conversation)

    def new_session(self, history: History | None) -> ChatSession:
        # call_later, thread-safe: a failed save is reported from the history's writer thread
        session = ChatSession(history, lambda message: self.call_later(self.history_failed, message))
        session.system = self.system
        return session

    def action_new_conversation(self) -> None:
        if self.session.history is not None:
            self.session.history.hold(None)  # another chat may continue the conversation left
        self.session = self.new_session(self.session.history)
        self.show_session()
        self.add_note("new conversation")

    def action_system_prompt(self) -> None:
        def apply(text: str | None) -> None:
            if text is None:
                return
            self.session.set_system(text.strip() or None)
            self.add_note(f"system prompt: {self.session.system}" if self.session.system
                          else "system prompt: the chat template's default")

        self.push_screen(TextPromptScreen("System prompt (empty: the chat template's default):",
                                          self.session.system or ""), apply)

    def action_model_info(self) -> None:
        self.push_screen(ModelInfoScreen(model_table(self.engine, self.judge, self.db_path,
                                                     self.session.history is not None, self.load_error)))

    def action_export(self) -> None:
        if not self.session.turns:
            self.notify("Nothing to export yet.")
            return
        try:
            path = self.session.export()
        except UserError as e:
            self.add_note(str(e), "error")
            return
        self.add_note(f"exported to {path}")
