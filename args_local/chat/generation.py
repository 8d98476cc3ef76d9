"""One reply from the engine, outside the UI: runs in a worker thread and reports through callbacks."""

from __future__ import annotations

import threading
from typing import Callable

from ..engine import Engine, Finished, Notice, Step
from ..errors import UserError
from ..settings import DecodingSettings
from .judge import Judge
from .reply import Reply


def run_reply(engine: Engine, conversation: list[dict], settings: DecodingSettings, *, system: str | None,
              cancel: threading.Event, judge: Judge | None = None,
              on_step: Callable[[Reply], None] = lambda reply: None,
              on_notice: Callable[[str], None] = lambda message: None) -> Reply:
    """Stream a reply to conversation (user/assistant turns); errors end up in reply.error, never raised."""
    reply = Reply(settings=settings.to_dict())
    try:
        for event in engine.stream(conversation, settings, system=system, cancel=cancel, drop_old_turns=True):
            if isinstance(event, Step):
                reply.add_step(event)
                if event.text:
                    on_step(reply)
            elif isinstance(event, Notice):
                on_notice(event.message)
            elif isinstance(event, Finished):
                reply.finish(event)
        if judge is not None and judge.available and not cancel.is_set():  # Esc: done now, not after the judge
            reply.judge_reward = judge.score(conversation, reply.text)
            if judge.error:  # reported once: the judge is unavailable from now on
                on_notice(judge.error)
    except UserError as e:
        reply.error = str(e)
    except Exception as e:  # a bug, but the chat must survive it; the message says what happened
        reply.error = f"unexpected error: {type(e).__name__}: {e}"
    return reply
