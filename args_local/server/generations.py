"""One decoding thread for the engine, a bounded line of requests waiting for it, a cancel flag each.

The engine decodes one reply at a time (its KV caches are shared state), so a single worker
thread runs every generation and the event loop stays free for other requests (/health answers
mid-generation). Events cross back to the loop through each job's asyncio queue. A job whose
client has gone is cancelled: the engine checks the flag before every step, and a job still
waiting is skipped.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import threading
import time
import traceback
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor

from ..engine import Engine, Finished
from ..errors import RewardError, UserError
from ..settings import DecodingSettings
from .errors import APIError

_END = object()  # a job's last item


def stopping_error() -> APIError:
    return APIError(503, "the server is shutting down: the reply was cut short; retry once it is back",
                    code="server_shutting_down")


class Job:
    def __init__(self, messages: list[dict], settings: DecodingSettings, loop: asyncio.AbstractEventLoop):
        self.messages, self.settings = messages, settings
        self.cancel = threading.Event()
        self.started = False  # set by the worker as it takes the job
        self._loop = loop
        self._items: asyncio.Queue = asyncio.Queue()

    def put(self, item) -> None:
        """From the worker thread: an engine event, the exception that ended the job, or _END."""
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the event loop has closed (shutdown): nobody will read this
            self.cancel.set()

    async def next(self):
        """The next engine event, None after the last; raises what the engine raised."""
        item = await self._items.get()
        if isinstance(item, BaseException):
            raise item
        return None if item is _END else item

    async def finished(self, event) -> Finished:
        """Read up to the Finished event (event: one already read)."""
        while not isinstance(event, Finished):
            event = await self.next()
            if event is None:
                raise RuntimeError("the generation ended without a Finished event")
        return event


class Generations:
    def __init__(self, engine: Engine, max_waiting: int):
        self.engine = engine
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="args-local-decode")
        self._jobs: set[Job] = set()  # admitted and not done: the running one and those waiting
        self.running = False
        self.stopping = False
        self.ended = Counter()  # stop reasons of past generations (and rejected / failed ones)
        self._seconds: deque[float] = deque(maxlen=8)  # recent generations' times, for Retry-After

    def submit(self, messages: list[dict], settings: DecodingSettings) -> Job:
        """Queue a generation, or raise 429 when max_waiting requests already wait. Event loop only."""
        if self.stopping:
            raise stopping_error()
        if len(self._jobs) > self.max_waiting:
            wait = self.retry_after()
            raise APIError(429, f"the server is busy: {len(self._jobs)} requests are running or waiting; "
                                f"retry in {wait} s", code="queue_full", headers={"Retry-After": str(wait)})
        job = Job(messages, settings, asyncio.get_running_loop())
        self._jobs.add(job)
        asyncio.wrap_future(self._executor.submit(self._run, job)).add_done_callback(
            lambda _: self._jobs.discard(job))
        return job

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the recent mean time per generation x those ahead."""
        mean = statistics.fmean(self._seconds) if self._seconds else 1.0
        return max(1, min(300, math.ceil(mean * len(self._jobs))))

    def status(self) -> dict:
        return {"running": self.running, "waiting": len(self._jobs) - self.running, "max_waiting": self.max_waiting,
                "generations": dict(self.ended)}

    def leave(self, job: Job) -> None:
        """Its client has gone: a running job ends at its next step, and one still waiting leaves the
        line now, its place free for the next client (the worker skips it). Event loop only."""
        job.cancel.set()
        if not job.started:
            self._jobs.discard(job)

    def stop(self) -> None:
        """The server is stopping: the running reply ends at its next step, those waiting are
        skipped, each ending cut short (its handler answers stopping_error), and none is taken."""
        self.stopping = True
        for job in list(self._jobs):
            job.cancel.set()

    # -- the worker thread ----------------------------------------------------------------
    def _run(self, job: Job) -> None:
        job.started = True  # before the check: either leave() sees it or this sees leave()'s cancel
        if job.cancel.is_set():  # its client left while it waited
            self.ended["cancelled"] += 1
            job.put(_END)
            return
        self.running, start = True, time.perf_counter()
        try:
            # shorten_reply: max_tokens is capped by the room the prompt leaves in the context
            for event in self.engine.stream(job.messages, job.settings, cancel=job.cancel, shorten_reply=True):
                if isinstance(event, Finished):
                    self.ended[event.stop_reason] += 1
                job.put(event)
        except RewardError as e:  # the model's fault, not the request's: a 500, and a line for whoever runs the server
            print(f"args-local: {e}", file=sys.stderr, flush=True)
            self.ended["failed"] += 1
            job.put(e)
        except UserError as e:  # the request's fault (a prompt too long for the context...): a 400
            self.ended["rejected"] += 1
            job.put(e)
        except Exception as e:  # a bug: the log keeps its traceback, the client gets a 500, the server goes on
            traceback.print_exc()
            self.ended["failed"] += 1
            job.put(e)
        finally:
            self.running = False
            self._seconds.append(time.perf_counter() - start)
            job.put(_END)
