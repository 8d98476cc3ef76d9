"""The chat's history layer and session: commits per turn, rename/delete, damaged or locked files."""

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from args_local.chat.history import History, HistoryError
from args_local.chat.reply import Piece, Reply
from args_local.chat.session import ChatSession, replaced_marks
from args_local.errors import UserError


def reply(text="Paris.", reward=0.5):
    return Reply([Piece(text[:3], 0.1, 0), Piece(text[3:], reward, 2)], "end_of_turn", reward, None,
                 {"mode": "args-greedy", "k": 10, "w": 1.5})


def test_every_message_is_committed_when_written(tmp_path):
    db = tmp_path / "h.sqlite"
    history = History(db)
    conversation = history.create_conversation("capitals")
    history.add_message(conversation, "user", "Capital of France?")
    # A second connection sees the row while the first is still open: it was committed.
    other = sqlite3.connect(db)
    assert other.execute("SELECT role, content FROM messages").fetchall() == [("user", "Capital of France?")]
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    history.close()


def test_session_stores_reply_with_its_settings_and_reopens_it(tmp_path):
    history = History(tmp_path / "h.sqlite")
    session = ChatSession(history)
    session.set_system("Be brief.")
    session.add_prompt("Capital of France?")
    session.add_reply(reply())
    history.wait()

    reopened = ChatSession(History(tmp_path / "h.sqlite"))
    assert reopened.open(session.conversation_id)
    assert reopened.system == "Be brief."
    assert [(t.role, t.content) for t in reopened.turns] == [("user", "Capital of France?"), ("assistant", "Paris.")]
    stored = reopened.turns[1].reply
    assert stored.settings == {"mode": "args-greedy", "k": 10, "w": 1.5}
    assert stored.reward == 0.5 and stored.stop_reason == "end_of_turn"
    assert stored.override_rate == (1, 2)  # the pieces (per-token rewards, choices) came back too
    assert reopened.model_messages() == [{"role": "user", "content": "Capital of France?"},
                                         {"role": "assistant", "content": "Paris."}]


def test_the_footers_figures_come_back_and_a_reply_stored_without_them_still_opens(tmp_path):
    session = ChatSession(History(tmp_path / "h.sqlite"))
    session.add_prompt("Capital of France?")
    figures = {"tokens_per_s": 31.5, "objective_rewards": {"harmless": 0.25, "helpful": -0.5},
               "objective_weights": {"harmless": 0.0, "helpful": 1.0}}
    session.add_reply(Reply(**{**vars(reply()), **figures}))
    assert session.history.wait(10)  # saved on the history's writer thread
    # as an args-local from before the figures stored a reply: its settings alone
    session.history.add_message(session.conversation_id, "assistant", "Lyon.", settings={"mode": "greedy"})
    now = ChatSession(History(tmp_path / "h.sqlite"))
    assert now.open(session.conversation_id, to_continue=False)
    stored, older = now.turns[1].reply, now.turns[2].reply
    assert {name: getattr(stored, name) for name in figures} == figures
    assert stored.settings == {"mode": "args-greedy", "k": 10, "w": 1.5}  # the figures are not settings
    assert older.settings == {"mode": "greedy"} and older.tokens_per_s == 0.0 and older.objective_rewards is None


def test_a_prompt_left_without_a_reply_is_not_sent_to_the_model_again(tmp_path):
    history = History(tmp_path / "h.sqlite")
    session = ChatSession(history)
    session.add_prompt("Capital of France?")
    session.add_reply(reply())
    session.add_prompt("Write a very long story.")  # the app was killed before its reply was saved
    history.close()

    reopened = ChatSession(History(tmp_path / "h.sqlite"))
    assert reopened.open(session.conversation_id)
    assert [t.role for t in reopened.turns] == ["user", "assistant", "user"]  # the history keeps it
    reopened.add_prompt("Capital of Spain?")
    reopened.add_reply(Reply(stop_reason="cancelled"))  # Esc before any text
    reopened.add_prompt("Capital of Italy?")
    assert reopened.model_messages() == [{"role": "user", "content": "Capital of France?"},
                                         {"role": "assistant", "content": "Paris."},
                                         {"role": "user", "content": "Capital of Italy?"}]


def test_a_reply_answered_again_is_kept_and_marked_but_never_sent_to_the_model(tmp_path):
    session = ChatSession(History(tmp_path / "h.sqlite"))
    assert session.regenerate_turns() is None  # no prompt to answer again
    session.add_prompt("Capital of France?")
    session.add_reply(reply("Lyon."))
    assert [(t.role, t.content) for t in session.regenerate_turns()] == [("user", "Capital of France?")]
    session.add_reply(reply("Paris."))  # Ctrl+R: the new reply follows the one it replaces
    session.add_prompt("Capital of Spain?")  # its reply failed: Ctrl+R answers this prompt, with the turns before
    assert [t.content for t in session.regenerate_turns()] == ["Capital of France?", "Paris.", "Capital of Spain?"]
    session.add_reply(reply("Madrid."))
    session.add_reply(Reply(stop_reason="cancelled"))  # answered again, cancelled before any text
    assert session.history.wait(10)

    reopened = ChatSession(History(tmp_path / "h.sqlite"))
    assert reopened.open(session.conversation_id, to_continue=False)
    assert [t.content for t in reopened.turns] == ["Capital of France?", "Lyon.", "Paris.", "Capital of Spain?",
                                                   "Madrid.", ""]
    # a reply cancelled before any text replaces nothing: the model would be left without any answer to the prompt
    assert replaced_marks(reopened.turns) == [False, True, False, False, False, False]
    reopened.add_prompt("Capital of Italy?")
    assert reopened.model_messages() == [{"role": "user", "content": "Capital of France?"},
                                         {"role": "assistant", "content": "Paris."},
                                         {"role": "user", "content": "Capital of Spain?"},
                                         {"role": "assistant", "content": "Madrid."},
                                         {"role": "user", "content": "Capital of Italy?"}]
    assert "## Assistant — args-greedy · k=10 w=1.5 · reward +0.50 · replaced\n\nLyon." in reopened.to_markdown()


OTHER_CHAT = r"""
import sys
from args_local.chat.history import History
from args_local.chat.session import ChatSession

history = History(sys.argv[1])
for line in sys.stdin:  # each line: a new conversation, whose first prompt is the line
    session = ChatSession(history)
    session.add_prompt(line.strip())
    history.wait()  # saved (and held) on the history's writer thread
    print(session.conversation_id, flush=True)
"""


@contextlib.contextmanager
def other_chat(db: Path):
    """Another process chatting on db; yields start(prompt): the id of the conversation it starts with prompt."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    other = subprocess.Popen([sys.executable, "-c", OTHER_CHAT, str(db)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)

    def start(prompt: str) -> int:
        other.stdin.write(prompt + "\n")
        other.stdin.flush()
        return int(other.stdout.readline())

    try:
        yield start
    finally:
        other.kill()  # kill -9: no chance to let go of its conversation itself
        other.wait()


def test_a_conversation_another_chat_holds_is_refused_until_it_lets_go(tmp_path):
    """Two chats adding turns to one conversation would interleave them in the history."""
    db = tmp_path / "h.sqlite"
    with other_chat(db) as other_starts:
        first = other_starts("Capital of France?")
        mine = ChatSession(History(db))
        with pytest.raises(UserError, match="“Capital of France[?]” is open in another args-local chat"):
            mine.open(first)
        assert ChatSession(mine.history).open(first, to_continue=False)  # reading it (to export) is fine
        second = other_starts("Capital of Spain?")  # the other chat moved on: the first is free
        assert mine.open(first) and mine.turns[0].content == "Capital of France?"
        with pytest.raises(UserError, match="open in another args-local chat"):
            ChatSession(mine.history).open(second)
        with pytest.raises(UserError, match="open in another args-local chat"):
            mine.history.delete(second)  # it would write on into a deleted conversation, or a new one of its id
    assert ChatSession(mine.history).open(second)  # a chat killed lets go of its conversation


def test_rename_and_delete(tmp_path):
    history = History(tmp_path / "h.sqlite")
    keep, drop = history.create_conversation("keep"), history.create_conversation("drop")
    history.add_message(drop, "user", "bye")
    history.rename(keep, "kept")
    history.delete(drop)
    assert [(c.id, c.title) for c in history.conversations()] == [(keep, "kept")]
    assert history.messages(drop) == []  # its messages went with it


def test_conversations_are_found_by_their_title_or_any_message_in_any_case(tmp_path):
    """% and _ are themselves, not LIKE's wildcards (which would find '100%' in every conversation holding '100')."""
    history = History(tmp_path / "h.sqlite")
    ids = {}
    for title, body in (("Owls", "They hunt at NIGHT."), ("Sales", "Up 100 percent."), ("Sales again", "Up 100%."),
                        ("snake_case names", "a b"), ("Backslashes", "C:\\temp"), ("Ärger", "ΣΟΦΊΑ in der Straße")):
        ids[title] = history.create_conversation(title)
        history.add_message(ids[title], "user", body)

    def found(text):
        return {c.title for c in history.conversations(text)}

    assert found("night") == {"Owls"} and found("OWL") == {"Owls"}  # a reply's body, a title; any case
    assert found("100%") == {"Sales again"} and found("100") == {"Sales", "Sales again"}
    assert found("_") == {"snake_case names"} and found("\\t") == {"Backslashes"}
    assert found("ärg") == found("σοφία") == found("STRASSE") == {"Ärger"}  # SQLite's LIKE folded ASCII alone
    assert found("") == set(ids) and found("dragon") == set()
    assert history.n_conversations() == len(ids)


def test_damaged_file_is_refused_and_left_byte_for_byte(tmp_path):
    db = tmp_path / "h.sqlite"
    garbage = b"this is not a database\x00" * 200
    db.write_bytes(garbage)
    with pytest.raises(HistoryError, match="unreadable.*left untouched"):
        History(db)
    assert db.read_bytes() == garbage


def test_damaged_pages_in_a_real_database_are_refused_untouched(tmp_path):
    db = tmp_path / "h.sqlite"
    history = History(db)
    conversation = history.create_conversation("x")
    for i in range(300):
        history.add_message(conversation, "user", f"message {i} " * 20)
    history._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    history.close()
    data = bytearray(db.read_bytes())
    data[8192:12288] = b"\xff" * 4096  # scribble over a b-tree page
    db.write_bytes(bytes(data))
    with pytest.raises(HistoryError):
        History(db)
    assert db.read_bytes() == bytes(data)


@pytest.mark.parametrize("tables", [
    # a later args-local that added a column the turns need
    "CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL, system TEXT, created REAL NOT NULL, "
    "updated REAL NOT NULL, folder TEXT NOT NULL);",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",  # another program's database, named by --db
])
def test_a_database_of_other_tables_is_refused_at_once_and_left_byte_for_byte(tmp_path, tables):
    """It opened, was switched to WAL and given our tables, and the first turn then failed (unsaved)."""
    db = tmp_path / "h.sqlite"
    with contextlib.closing(sqlite3.connect(db)) as other:
        other.executescript(tables + "PRAGMA user_version = 7;")
    before = db.read_bytes()
    with pytest.raises(HistoryError, match="is not one this args-local made.*left untouched.*--db OTHER.sqlite"):
        History(db)
    assert db.read_bytes() == before and not Path(f"{db}-wal").exists()


def test_a_full_disk_is_called_full_not_unreadable(tmp_path):
    """SQLite's 'database or disk is full' was reported as an unreadable file, with advice to move it away."""
    history = History(tmp_path / "h.sqlite")
    conversation = history.create_conversation("x")
    history.add_message(conversation, "user", "kept")
    history._db.execute("PRAGMA max_page_count = 1")  # SQLite's own limit on the file: a disk that is full now
    with pytest.raises(HistoryError, match="disk holding the history database .* is full.*turns so far are kept.*"
                                           "Free some space") as refused:
        history.add_message(conversation, "user", "x" * 100_000)
    assert "Move it away" not in str(refused.value)
    history.close()
    assert [m.content for m in History(tmp_path / "h.sqlite").messages(conversation)] == ["kept"]


def test_a_database_that_cannot_be_opened_says_what_to_do(tmp_path):
    """--db naming a folder: 'cannot open … unable to open database file' said nothing of what to do."""
    with pytest.raises(HistoryError, match="unable to open database file; chat history is off .*--db OTHER.sqlite"):
        History(tmp_path)


def test_locked_database_says_so(tmp_path):
    db = tmp_path / "h.sqlite"
    History(db).close()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("PRAGMA journal_mode=DELETE")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(HistoryError, match="locked"):
            History(db)
    finally:
        locker.execute("ROLLBACK")
        locker.close()


@contextlib.contextmanager
def write_locked(db: Path):
    """Another program holding the history's write lock until the block ends."""
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        locker.execute("COMMIT")
        locker.close()


def test_a_turn_saved_while_another_program_holds_the_lock_waits_for_it_and_is_saved_once(tmp_path):
    """A write that found the database locked for over 2 s switched history off for the session and the turn
    was lost, the chat stopped for those 2 s."""
    db = tmp_path / "h.sqlite"
    history, errors = History(db), []
    session = ChatSession(history, errors.append)
    with write_locked(db):
        started = time.monotonic()
        session.add_prompt("Capital of France?")  # the conversation (held) and the prompt, queued
        session.add_reply(reply())
        assert time.monotonic() - started < 0.5  # the chat goes on at once
        assert not history.wait(3)  # waiting for the lock, not given up
        assert history.conversations() == []  # reading meanwhile is not held up
    assert history.wait(10)
    assert errors == [] and session.history is history
    assert [c.id for c in history.conversations()] == [session.conversation_id]  # each write once
    assert [(m.role, m.content) for m in history.messages(session.conversation_id)] == [
        ("user", "Capital of France?"), ("assistant", "Paris.")]


def test_a_new_conversation_saved_late_leaves_the_hold_on_the_one_opened_meanwhile(tmp_path):
    """Its first save waited out a lock while the user opened another conversation: the late save took the hold
    for the new one and let go of the one open, which another chat could then write into."""
    db = tmp_path / "h.sqlite"
    history = History(db)
    earlier = ChatSession(history)
    earlier.add_prompt("Capital of Spain?")
    assert history.wait(5)
    history.hold(None)  # a new conversation, as Ctrl+N does
    fresh = ChatSession(history)
    with write_locked(db):
        fresh.add_prompt("Capital of France?")  # its conversation is made once the lock is let go
        opened = ChatSession(history)
        assert opened.open(earlier.conversation_id)
    assert history.wait(10)
    assert fresh.conversation_id not in (None, earlier.conversation_id)  # saved all the same
    assert history.held == earlier.conversation_id


def test_a_lock_held_past_the_retries_switches_history_off_once_and_drops_the_writes_behind(tmp_path, monkeypatch):
    monkeypatch.setattr("args_local.chat.history.RETRY_FOR", 0.5)
    db = tmp_path / "h.sqlite"
    history, errors = History(db), []
    session = ChatSession(history, errors.append)
    session.add_prompt("Capital of France?")
    assert history.wait(5)
    with write_locked(db):
        session.add_reply(reply())
        session.add_prompt("Capital of Spain?")  # never saved after a reply that was not
        assert history.wait(10)
    assert history.wait(5) and session.history is None
    assert len(errors) == 1 and "locked by another program" in errors[0] and "history is off" in errors[0]
    assert [m.content for m in history.messages(session.conversation_id)] == ["Capital of France?"]
    assert [t.content for t in session.turns] == ["Capital of France?", "Paris.", "Capital of Spain?"]  # chat goes on


def test_session_keeps_chatting_when_history_fails(tmp_path):
    history = History(tmp_path / "h.sqlite")
    errors = []
    session = ChatSession(history, errors.append)
    history.close()  # every write now fails
    session.add_prompt("Still there?")
    session.add_reply(reply("Yes."))
    assert session.history is None and len(errors) == 1
    assert [t.content for t in session.turns] == ["Still there?", "Yes."]


def test_export_writes_markdown_where_asked(tmp_path):
    session = ChatSession(None)
    session.add_prompt("Capital of France?")
    session.add_reply(reply())
    path = session.export(tmp_path)
    text = path.read_text()
    assert path.parent == tmp_path.resolve()
    assert "## You\n\nCapital of France?" in text and "Paris." in text and "reward +0.50" in text


def test_the_export_keeps_each_line_break_as_the_chat_shows_it(tmp_path):
    """Markdown joins a paragraph's lines: a poem or an address, shown line by line in the chat, was one run-on
    line wherever the exported file was read as Markdown. Code keeps its lines untouched."""
    from markdown_it import MarkdownIt

    session = ChatSession(None)
    session.set_system("Be brief.\nAnswer in French.")
    session.add_prompt("Translate:\nשלום עולם\n你好")
    poem, quote, code = "In the realm of rain,\nwhere shadows play.", "> quoted\n> twice", "```\na = 1\nb = 2\n```"
    session.add_reply(reply("\n\n".join((poem, quote, code))))
    exported = session.export(tmp_path).read_text()
    html = MarkdownIt("commonmark").render(exported)  # as a Markdown viewer reads it
    for lines in (["Be brief.", "Answer in French."], ["Translate:", "שלום עולם", "你好"],
                  ["In the realm of rain,", "where shadows play."], ["quoted", "twice"]):
        assert "<br />\n".join(lines) in html, lines
    assert "<code>a = 1\nb = 2\n</code>" in html


@pytest.fixture
def read_only():
    """Make a path read-only for this process (chattr +i when root, whom permissions do not stop)."""
    import os
    import subprocess

    made = []

    def make(path):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(path)], check=True)
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)
        made.append(path)

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_history_is_refused_at_once_and_called_read_only(tmp_path, read_only, what):
    db = tmp_path / "h.sqlite"
    history = History(db)
    history.add_message(history.create_conversation("kept"), "user", "hello")
    history.close()
    for leftover in tmp_path.glob("h.sqlite-*"):
        leftover.unlink()
    before = db.read_bytes()
    read_only(db if what == "file" else tmp_path)
    with pytest.raises(HistoryError, match="is read-only") as e:
        History(db)  # at open, not at the first turn, which would then be lost
    assert "unreadable" not in str(e.value)
    assert db.read_bytes() == before
