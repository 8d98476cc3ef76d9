"""Chat history in SQLite: one row per conversation, one row per message, committed as they happen.

WAL mode and a commit per message mean a finished turn survives a crash or kill -9.
A database that is locked or damaged raises HistoryError; the file itself is never
deleted or recreated (the app then runs without history).
A chat holds the conversation it writes to (see History.hold), so two chats never add turns to one.
The chat saves its turns through History.later: on a thread of their own, which waits out another
program's write lock, so a busy database neither holds the chat up nor loses a turn.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    system TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    reward REAL,
    judge_reward REAL,
    stop_reason TEXT,
    settings TEXT,   -- JSON: the DecodingSettings this reply was made with, and its "figures" (chat/reply.py)
    pieces TEXT,     -- JSON: [[text, reward, chosen_index], ...] to colour the tokens again
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
"""


BUSY_WAIT = 2.0  # seconds a statement waits for another connection's lock (SQLite's busy timeout)
RETRY_FOR = 30.0  # seconds a queued write keeps trying while another program holds the database locked


def _is_locked(e: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock (sqlite3 tells them only in the message)."""
    return "locked" in str(e) or "busy" in str(e)


class HistoryError(UserError):
    """The history database cannot be used (locked, damaged, unwritable)."""


class HistoryLocked(HistoryError):
    """Another connection holds the lock a write needs: the same write may well work a little later."""


@dataclass
class ConversationRow:
    id: int
    title: str
    system: str | None
    created: float
    updated: float
    n_messages: int


@dataclass
class MessageRow:
    id: int
    role: str
    content: str
    reward: float | None = None
    judge_reward: float | None = None
    stop_reason: str | None = None
    settings: dict | None = None
    pieces: list | None = None


class History:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HistoryError(f"cannot create the folder of the history database {self.path}: {e.strerror or e}; "
                               "chat history is off for this session (pass --db OTHER.sqlite)") from None
        self._check_writable()
        self._writing = threading.local()  # the writer thread's own connection: see _db
        self._writes: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._closed = False
        try:
            self._main = self._connect()
        except sqlite3.Error as e:
            raise HistoryError(f"cannot open the history database {self.path}: {e}; chat history is off for this "
                               "session (pass --db OTHER.sqlite)") from None
        try:
            # Read-only checks first: a damaged file must not be written to.
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            self._check_tables()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            self._db.commit()
        except sqlite3.Error as e:
            self._db.close()
            raise HistoryError(self._explain(e)) from None
        holds = self.path.with_name(self.path.name + "-open.lock")
        try:
            self._holds = os.open(holds, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            self._db.close()
            raise HistoryError(f"cannot open {holds}: {e.strerror or e}; chat history is off for this session") from None
        self._held: int | None = None

    def _check_tables(self) -> None:
        """Read-only, before anything is written: a database whose tables are not these (another program's, or
        one a later args-local changed) is refused, where it was opened, switched to WAL and given our tables,
        and then failed at the first turn, which went unsaved."""
        def tables(db: sqlite3.Connection) -> dict[str, list[str]]:
            names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {n: [c[1] for c in db.execute(f'PRAGMA table_info("{n}")')] for n in names
                    if not n.startswith("sqlite_")}
        with contextlib.closing(sqlite3.connect(":memory:")) as empty:
            empty.executescript(SCHEMA)
            ours = tables(empty)
        found = tables(self._db)
        other = sorted(n for n, columns in found.items() if ours.get(n) != columns)
        if other:
            self._db.close()
            raise HistoryError(f"the history database {self.path} is not one this args-local made (its table "
                               f"{other[0]} is not as args-local makes it); chat history is off for this session and the file was left "
                               "untouched. Pass --db OTHER.sqlite, or open it with the args-local that made it.")

    def _check_writable(self) -> None:
        """Every turn is saved as it happens, so a history that cannot be written is off from the
        start, said at once, rather than failing at the first turn (which would then be lost)."""
        for path, what in ((self.path, "the file"), (self.path.parent, "its folder")):
            if path.exists() and not os.access(path, os.W_OK):
                raise HistoryError(f"the history database {self.path} is read-only ({what} is not writable; SQLite "
                                   "also writes beside it); chat history is off for this session. Make it writable "
                                   "or pass --db OTHER.sqlite.")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_WAIT, check_same_thread=False)
        db.create_function("casefold", 1, str.casefold, deterministic=True)  # SQLite's own folds ASCII only
        return db

    @property
    def _db(self) -> sqlite3.Connection:
        """The writer thread's own connection on that thread, the main one elsewhere: while the writer waits for
        a lock, reading the history (F6, opening a conversation) is not held up behind it."""
        return getattr(self._writing, "db", self._main)

    def _error(self, e: sqlite3.Error) -> HistoryError:
        return (HistoryLocked if _is_locked(e) else HistoryError)(self._explain(e))

    def _explain(self, e: sqlite3.Error) -> str:
        text = str(e)
        if "readonly" in text:
            return (f"the history database {self.path} is read-only ({text}); chat history is off for this session. "
                    "Make it writable or pass --db OTHER.sqlite.")
        if "full" in text:  # SQLITE_FULL: the disk, not the file (which was told to be moved away)
            return (f"the disk holding the history database {self.path} is full ({text}); chat history is off for "
                    "this session, the turns so far are kept. Free some space and restart the chat.")
        if _is_locked(e):
            return (f"the history database {self.path} is locked by another program ({text}); "
                    "chat history is off for this session")
        return (f"the history database {self.path} is unreadable ({text}); chat history is off for this "
                "session and the file was left untouched. Move it away (or pass --db OTHER.sqlite) to start a new one.")

    def _run(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        """One statement in its own transaction, committed before returning."""
        try:
            with self._db:
                return self._db.execute(sql, params)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._error(e) from None

    def close(self) -> None:
        """After the writes queued so far (each saved, or given up on); a write queued after this fails."""
        self._closed = True
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join()
        self._main.close()
        os.close(self._holds)

    # --- writing in the background -------------------------------------------------------------
    def later(self, write: Callable[[History], object], failed: Callable[[HistoryError], None]) -> None:
        """Run write(self) on the writer thread, after every write queued before it; a write that finds the
        database locked by another program is tried again, backing off, for up to RETRY_FOR seconds, and then,
        as any other HistoryError, is handed to failed (on the writer thread). A write must be one transaction
        (one History call that writes): a failed one left nothing behind, so trying it again saves it once."""
        if self._closed:
            failed(HistoryError(f"the history database {self.path} was closed; chat history is off for this session"))
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_queued, name="history-writer", daemon=True)
            self._writer.start()
        self._writes.put((write, failed))

    def wait(self, timeout: float | None = None) -> bool:
        """Whether every write queued so far is done (saved, or given up on) within timeout seconds."""
        done = threading.Event()
        self.later(lambda history: done.set(), lambda error: done.set())
        return done.wait(timeout)

    def _write_queued(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # should it fail, the writes share the main connection
            self._writing.db = self._connect()
            self._writing.db.execute("PRAGMA foreign_keys=ON")
        while (queued := self._writes.get()) is not None:
            write, failed = queued
            try:
                self._waiting_out_locks(write)
            except HistoryError as e:
                failed(e)
            except Exception as e:  # a bug: said as history's failure, and the writes queued after it still run
                failed(HistoryError(f"saving to the history failed ({type(e).__name__}: {e}); "
                                    "chat history is off for this session"))
        if self._db is not self._main:
            self._db.close()

    def _waiting_out_locks(self, write: Callable[[History], object]) -> None:
        deadline, pause = time.monotonic() + RETRY_FOR, 0.1
        while True:
            try:
                write(self)
                return
            except HistoryLocked:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 2.0)

    @property
    def held(self) -> int | None:
        return self._held

    def hold(self, conversation_id: int | None) -> bool:
        """Make conversation_id (None: none) the one this process writes to, letting go of the one before;
        False if another process holds it: two chats adding turns to one conversation would interleave them.
        A hold is an OS lock on byte conversation_id of a file beside the database, so it ends with its
        process, kill -9 included (and, the lock being per process, a process never conflicts with itself)."""
        if conversation_id is not None and not self._lock(conversation_id):
            return False
        if self._held not in (None, conversation_id):
            self._unlock(self._held)
        self._held = conversation_id
        return True

    def _lock(self, conversation_id: int) -> bool:
        try:
            fcntl.lockf(self._holds, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, conversation_id)
            return True
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
            return False

    def _unlock(self, conversation_id: int) -> None:
        fcntl.lockf(self._holds, fcntl.LOCK_UN, 1, conversation_id)

    # --- conversations -------------------------------------------------------------------
    def create_conversation(self, title: str, system: str | None = None) -> int:
        now = time.time()
        return self._run("INSERT INTO conversations (title, system, created, updated) VALUES (?, ?, ?, ?)",
                         (title, system, now, now)).lastrowid

    def conversations(self, containing: str = "") -> list[ConversationRow]:
        """Newest first; containing: only those whose title or a message holds that text, in any case
        (Python's casefold: Ä is ä, ß is ss)."""
        text = containing.casefold()
        rows = self._query("""SELECT c.id, c.title, c.system, c.created, c.updated,
                                     (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)
                              FROM conversations c
                              WHERE instr(casefold(c.title), ?) OR EXISTS (
                                  SELECT 1 FROM messages f WHERE f.conversation_id = c.id
                                                             AND instr(casefold(f.content), ?))
                              ORDER BY c.updated DESC, c.id DESC""", (text, text))
        return [ConversationRow(*r) for r in rows]

    def n_conversations(self) -> int:
        return self._query("SELECT COUNT(*) FROM conversations")[0][0]

    def conversation(self, conversation_id: int) -> ConversationRow | None:
        return next((c for c in self.conversations() if c.id == conversation_id), None)

    def rename(self, conversation_id: int, title: str) -> None:
        self._run("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

    def set_system(self, conversation_id: int, system: str | None) -> None:
        self._run("UPDATE conversations SET system = ? WHERE id = ?", (system, conversation_id))

    def delete(self, conversation_id: int) -> None:
        """UserError while another chat holds it: that chat would write on into a deleted conversation,
        or into the next new one, which may get the same id."""
        theirs = conversation_id != self._held
        if theirs and not self._lock(conversation_id):
            raise UserError("this conversation is open in another args-local chat; close it there first")
        try:
            self._run("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        finally:
            if theirs:
                self._unlock(conversation_id)

    # --- messages ------------------------------------------------------------------------
    def add_message(self, conversation_id: int, role: str, content: str, *, reward: float | None = None,
                    judge_reward: float | None = None, stop_reason: str | None = None,
                    settings: dict | None = None, pieces: list | None = None) -> int:
        now = time.time()
        try:
            with self._db:  # the message and the conversation's timestamp in one commit
                message_id = self._db.execute(
                    """INSERT INTO messages (conversation_id, role, content, reward, judge_reward, stop_reason,
                                             settings, pieces, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (conversation_id, role, content, reward, judge_reward, stop_reason,
                     None if settings is None else json.dumps(settings),
                     None if pieces is None else json.dumps(pieces), now)).lastrowid
                self._db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
        except sqlite3.Error as e:
            raise self._error(e) from None
        return message_id

    def messages(self, conversation_id: int) -> list[MessageRow]:
        rows = self._query("""SELECT id, role, content, reward, judge_reward, stop_reason, settings, pieces
                              FROM messages WHERE conversation_id = ? ORDER BY id""", (conversation_id,))
        return [MessageRow(i, role, content, reward, judge, stop,
                           None if settings is None else json.loads(settings),
                           None if pieces is None else json.loads(pieces))
                for i, role, content, reward, judge, stop, settings, pieces in rows]

    def prompts(self, limit: int = 200) -> list[str]:
        """The user's recent prompts, oldest first (for ↑ recall in the input)."""
        rows = self._query("SELECT content FROM messages WHERE role = 'user' ORDER BY id DESC LIMIT ?", (limit,))
        return [r[0] for r in reversed(rows)]
