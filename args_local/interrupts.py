"""Ctrl+C always stops the CLI, even while a native library is running Python callbacks.

llama-cpp-python routes llama.cpp's log lines through a Python callback, and model loading logs
hundreds of lines. A SIGINT that arrives then raises KeyboardInterrupt inside that callback,
where ctypes cannot pass it on: it prints "Exception ignored" and drops it, and the program runs
on. Such a dropped interrupt reaches sys.unraisablehook; there it is raised again in the main
thread, so it lands as soon as the native call returns, in ordinary Python code.
"""

from __future__ import annotations

import _thread
import sys
import threading

_previous_hook = sys.unraisablehook


def _redeliver(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        _thread.interrupt_main()  # raised at the next bytecode; inside another callback, caught here again
        return
    _previous_hook(unraisable)


def install() -> None:
    sys.unraisablehook = _redeliver
