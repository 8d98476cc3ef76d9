"""kill -9 in the middle of a reply loses no finished turn: each turn is committed when it ends; kill quits as Ctrl+Q."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from args_local import home

CHATTER = r"""
import json, sys, threading
from args_local.chat.generation import run_reply
from args_local.chat.history import History
from args_local.chat.session import ChatSession
from args_local.engine import Engine
from args_local.settings import DecodingSettings

engine = Engine.load(threads=1)
session = ChatSession(History(sys.argv[1]))
prompts = [("Name a fruit.", 16), ("Name a colour.", 16), ("Write a very long story about the sea.", 3000)]
for prompt, max_new in prompts:
    session.add_prompt(prompt)
    started = []
    def on_step(reply):
        if not started:
            started.append(1)
            print(json.dumps({"streaming": prompt}), flush=True)
    reply = run_reply(engine, session.model_messages(), DecodingSettings(max_new_tokens=max_new),
                      system=None, cancel=threading.Event(), on_step=on_step)
    session.add_reply(reply)
    print(json.dumps({"finished": prompt, "text": reply.text}), flush=True)
"""


def test_sigkill_mid_reply_keeps_every_finished_turn(tmp_path):
    assert home.default_policy().is_file(), f"default policy missing: {home.default_policy()} (build the models first)"
    db = tmp_path / "history.sqlite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", CHATTER, str(db)], stdout=subprocess.PIPE, text=True, env=env)
    finished = []
    deadline = time.time() + 120
    try:
        for line in child.stdout:
            event = json.loads(line)
            if "finished" in event:
                finished.append(event["text"])
            elif event.get("streaming", "").startswith("Write"):
                time.sleep(0.3)  # well inside the third reply
                child.send_signal(signal.SIGKILL)
                break
            assert time.time() < deadline, "the chat subprocess is too slow"
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(finished) == 2 and all(text.strip() for text in finished)

    rows = sqlite3.connect(db).execute("SELECT role, content FROM messages ORDER BY id").fetchall()
    assert rows == [("user", "Name a fruit."), ("assistant", finished[0]),
                    ("user", "Name a colour."), ("assistant", finished[1]),
                    ("user", "Write a very long story about the sea.")]  # the reply in progress is the only loss


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_kill_quits_as_ctrl_q_does_giving_back_the_terminal_and_saving_the_reply(tmp_path, signum):
    """`kill PID` ended the chat on the spot (`kill -INT PID`: with a traceback): the terminal stayed in the app's
    screen with mouse reporting on (every mouse move typed escape codes), and the reply in progress was lost. Now
    it stops at its next token, is saved marked cancelled, and the app exits 128 + the signal, terminal restored."""
    import select

    db = tmp_path / "history.sqlite"
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "args_local.cli", "chat", "--threads", "1", "--db", str(db)],
                            stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    screen = b""

    def read_until(done, seconds):
        nonlocal screen
        deadline = time.time() + seconds
        while not done() and time.time() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:  # the app has exited and closed the terminal
                    return

    def rows():
        with contextlib.closing(sqlite3.connect(db)) as history:
            return history.execute("SELECT role, content, stop_reason FROM messages ORDER BY id").fetchall()

    try:
        read_until(lambda: b"ready" in screen, 120)
        os.write(master, b"Write a very long story about the sea.\r")
        read_until(lambda: b"generating" in screen, 30)  # the status bar's word while a reply streams
        read_until(lambda: False, 0.5)  # inside the reply (some 250 tokens, 2 s or more)
        proc.send_signal(signum)
        read_until(lambda: proc.poll() is not None, 30)
        assert proc.wait(timeout=30) == 128 + signum
    finally:
        proc.kill()
        os.close(master)
    assert b"\x1b[?1049l" in screen and b"\x1b[?1000l" in screen  # the app's screen left, mouse reporting off
    (user, prompt, _), (assistant, text, stop) = rows()
    assert (user, prompt, assistant, stop) == ("user", "Write a very long story about the sea.", "assistant", "cancelled")
    assert text.strip()
