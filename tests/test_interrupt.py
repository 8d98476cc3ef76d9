"""Ctrl+C on a real `args-local generate`: at any moment (model loading included) it stops the
program with exit code 130, one line and no traceback, instead of being lost."""

import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, THREADS


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5])
def test_ctrl_c_stops_generate_at_any_moment(policy_path, guide_dir, delay):
    proc = subprocess.Popen(
        [sys.executable, "-m", "args_local.cli", "generate", "Count from 1 to 1000, one number per line.",
         "--max-new-tokens", "2000", "--threads", str(THREADS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "args-local: interrupted" in err and "tok/s" not in err  # it stopped; the reply never finished
