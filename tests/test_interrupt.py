"""Ctrl+C on a real `args-local generate`: at any moment (model loading included) it stops the
program with exit code 130, one line and no traceback, instead of being lost."""

import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, THREADS


@pytest.fixture(scope="module")
def python_startup() -> float:
    """Seconds the interpreter takes to start (site, .pth files, runpy finding the package) before
    the CLI's first line runs: a Ctrl+C then is Python's own business, so the delays below count
    from after it (the slowest of three starts: the machine may be busy)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import runpy, args_local"], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(time.perf_counter() - start)
    return max(times)


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5])
def test_ctrl_c_stops_generate_at_any_moment(policy_path, guide_dir, python_startup, delay):
    # a prompt the defaults answer at length: a short reply could end before the Ctrl+C comes
    proc = subprocess.Popen(
        [sys.executable, "-m", "args_local.cli", "generate", "Write a long essay about the history of Rome, with many paragraphs.",
         "--max-new-tokens", "2000", "--threads", str(THREADS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(python_startup + delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    # 130, or killed by SIGINT (Python itself does that at exit when a C extension ran code through
    # PyRun_* as the interrupt came): the shell reports both as exit status 130
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "args-local: interrupted" in err and "tok/s" not in err  # it stopped; the reply never finished


NATIVE_LOOP = """
import ctypes, sys, time
from args_local import interrupts
interrupts.install()
libc = ctypes.CDLL(None)
compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))(
    lambda a, b: a[0] - b[0])  # a Python callback, as llama-cpp-python's log callback is
values = (ctypes.c_int * 300_000)(*range(300_000, 0, -1))
try:
    print("sorting", flush=True)
    libc.qsort(values, len(values), 4, compare)  # C calling Python ~5 million times
    print("sorted", flush=True)
    time.sleep(30)
    print("still running", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_dropped_inside_a_native_callback_is_delivered_when_the_native_call_returns():
    """Without a model: qsort calling a Python comparator stands in for llama.cpp calling the log
    callback while it loads; a SIGINT then lands inside the callback, where ctypes drops it."""
    proc = subprocess.Popen([sys.executable, "-c", NATIVE_LOOP], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "sorting"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert out.split() in (["sorted", "interrupted"], ["interrupted"]), (out, err)
    assert "Exception ignored" not in err


SWALLOWING_IMPORT_GUARD = """
import os, signal, time
from args_local import interrupts
interrupts.install()
try:  # a library's optional import: a Ctrl+C during a native import arrives as an ImportError
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    except KeyboardInterrupt:
        raise ImportError("initialization failed")
except ImportError:
    pass
print("swallowed", flush=True)
try:
    time.sleep(30)
    print("still running", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    interrupts.handled()
    os.kill(os.getpid(), signal.SIGINT)  # once handled, further ones are ignored while exiting
    time.sleep(0.2)
    print("exited cleanly", flush=True)
"""


def test_ctrl_c_swallowed_by_an_import_guard_comes_back_until_handled():
    proc = subprocess.run([sys.executable, "-c", SWALLOWING_IMPORT_GUARD], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.split() == ["swallowed", "interrupted", "exited", "cleanly"], (proc.stdout, proc.stderr)


def test_a_ctrl_c_in_a_deferred_block_lands_as_it_ends():
    """export swaps the old model for the new by two renames; a Ctrl+C between them left the old one
    hidden in .OUT.old-*, so the swap defers it."""
    from args_local import interrupts

    ran_to_the_end = []
    # Python's own handler, not the CLI's (which an in-process CLI test may have installed: it redelivers
    # an interrupt until the CLI says it handled one, and here none would)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # Python runs signal handlers between bytecodes: without the deferral it lands here
                ran_to_the_end.append(True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ran_to_the_end == [True]


def test_a_sigterm_in_a_deferred_block_ends_the_process_as_the_block_ends(tmp_path):
    """kill PID between export's two renames ended it there, as Ctrl+C once did: now the block finishes first."""
    marker = tmp_path / "renamed"
    child = ("import os, signal, sys, time\n"
             "from args_local import interrupts\n"
             "with interrupts.deferred():\n"
             "    os.kill(os.getpid(), signal.SIGTERM)\n"
             "    time.sleep(0.2)\n"
             f"    open({str(marker)!r}, 'w').close()\n"
             "print('after the block')\n")
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stderr)
    assert marker.exists() and "after the block" not in proc.stdout
