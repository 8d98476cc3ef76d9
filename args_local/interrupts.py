"""Ctrl+C always stops the CLI, even while a native library is running Python callbacks.

llama-cpp-python routes llama.cpp's log lines through a Python callback, and model loading logs
hundreds of lines. A SIGINT that arrives then raises KeyboardInterrupt inside that callback,
where ctypes cannot pass it on: it reports it to sys.unraisablehook ("Exception ignored") and
the program runs on. Our hook only notes it (it must not block: another interrupt could land in
it); a waiting thread then raises it again in the main thread. If that lands in a callback too
it comes back here, until it lands in ordinary Python code, at the latest when the native call
returns.

A KeyboardInterrupt can also be swallowed outright: one that lands while a native extension is
being imported becomes an ImportError, and a library's optional-import guard catches that (a
Ctrl+C 0.2 s into `args-local generate` was lost so, and the reply ran to its end). So every
Ctrl+C is redelivered shortly after, again and again, until the CLI says it has handled one
(`handled()`); from then on the program is exiting and further ones are ignored.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import sys
import threading
import time

_previous_hook = sys.unraisablehook
_received = False  # a Ctrl+C arrived in this process
_handled = False  # the CLI caught one and is exiting: ignore the rest
_swallowed = _thread.allocate_lock()  # released by the hook: "an interrupt was dropped"
_watcher: threading.Thread | None = None
REDELIVER_AFTER = 0.05  # seconds


def _watch() -> None:
    while True:
        _swallowed.acquire()  # blocks (no polling) until the handler or the hook releases it
        time.sleep(REDELIVER_AFTER)  # let the interrupt reach the CLI, or the callback that dropped it return
        if _handled:
            continue
        if hasattr(signal, "pthread_kill"):  # a real signal: it also wakes a main thread blocked in a system call
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        else:
            _thread.interrupt_main()


def _arm_redelivery() -> None:
    if _swallowed.locked():
        _swallowed.release()  # never blocks: no waiting where another interrupt can land


def _redeliver(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _arm_redelivery()
    else:
        _previous_hook(unraisable)


def _on_sigint(signum, frame) -> None:
    global _received
    if _handled:
        return
    _received = True
    _arm_redelivery()  # in case whatever this lands in swallows it
    raise KeyboardInterrupt


def handled() -> None:
    """The CLI caught the interrupt and is exiting: no more redelivery, further Ctrl+C ignored."""
    global _handled
    _handled = True


def install() -> None:
    global _previous_hook, _watcher
    signal.signal(signal.SIGINT, _on_sigint)
    if sys.unraisablehook is not _redeliver:
        _previous_hook, sys.unraisablehook = sys.unraisablehook, _redeliver
    if _watcher is None:
        _swallowed.acquire()
        _watcher = threading.Thread(target=_watch, name="interrupt-redelivery", daemon=True)
        _watcher.start()


@contextlib.contextmanager
def deferred():
    """A Ctrl+C or a SIGTERM (kill PID) during the block takes effect as it ends: for steps that must happen
    together (an export's two renames). Python's signal handlers run in the main thread only; elsewhere this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_IGN:
                continue
            elif signum == signal.SIGINT:
                raise KeyboardInterrupt
            else:
                signal.raise_signal(signum)  # the default action, now: SIGTERM ends the process


def interrupted(error: BaseException) -> bool:
    """True if a Ctrl+C is behind error. Native extensions turn a KeyboardInterrupt during their
    own import into an ImportError (onnxruntime: "initialization failed"; numpy: "could not import
    module datetime"), not always chained to it, so an error after a Ctrl+C counts as one too."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return _received
