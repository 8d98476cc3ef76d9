"""Ctrl+C always stops the CLI, even while a native library is running Python callbacks.

llama-cpp-python routes llama.cpp's log lines through a Python callback, and model loading logs
hundreds of lines. A SIGINT that arrives then raises KeyboardInterrupt inside that callback,
where ctypes cannot pass it on: it reports it to sys.unraisablehook ("Exception ignored") and
the program runs on. Our hook only notes it (it must not block: another interrupt could land in
it); a waiting thread then raises it again in the main thread. If that lands in a callback too
it comes back here, until it lands in ordinary Python code, at the latest when the native call
returns.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time

_previous_hook = sys.unraisablehook
_received = False  # a Ctrl+C arrived in this process
_swallowed = _thread.allocate_lock()  # released by the hook: "an interrupt was dropped"
_watcher: threading.Thread | None = None


def _watch() -> None:
    while True:
        _swallowed.acquire()  # blocks (no polling) until the hook releases it
        time.sleep(0.02)  # let the callback that dropped it return first
        if hasattr(signal, "pthread_kill"):  # a real signal: it also wakes a main thread blocked in a system call
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        else:
            _thread.interrupt_main()


def _redeliver(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        if _swallowed.locked():
            _swallowed.release()  # never blocks: the hook must not wait where another interrupt can land
    else:
        _previous_hook(unraisable)


def _on_sigint(signum, frame) -> None:
    global _received
    _received = True
    raise KeyboardInterrupt


def install() -> None:
    global _previous_hook, _watcher
    signal.signal(signal.SIGINT, _on_sigint)
    if sys.unraisablehook is not _redeliver:
        _previous_hook, sys.unraisablehook = sys.unraisablehook, _redeliver
    if _watcher is None:
        _swallowed.acquire()
        _watcher = threading.Thread(target=_watch, name="interrupt-redelivery", daemon=True)
        _watcher.start()


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
