"""Silencing native libraries that print to the process's stderr directly."""

import contextlib
import os


@contextlib.contextmanager
def quiet_stderr():
    """llama.cpp and onnxruntime write some logs straight to fd 2; keep them off the terminal."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
