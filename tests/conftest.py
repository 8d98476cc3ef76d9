"""Shared fixtures: the real built-in models (built by tools/setup.sh), loaded once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from args_local import home

ROOT = Path(__file__).resolve().parent.parent
HH_PAIRS = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-pairs.jsonl.gz"
THREADS = 1  # CI machines have 2 cores; llama.cpp with 2 threads stalls when anything else runs


def require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run tools/setup.sh first (it builds the built-in models)")
    return path


@pytest.fixture(scope="session")
def policy_path() -> Path:
    return require(home.default_policy())


@pytest.fixture(scope="session")
def guide_dir() -> Path:
    return require(home.default_reward())


@pytest.fixture(scope="session")
def encoder_dir() -> Path:
    return require(home.default_encoder_reward())


@pytest.fixture(scope="session")
def hh_pairs() -> Path:
    return require(HH_PAIRS)


@pytest.fixture(scope="session")
def engine(policy_path, guide_dir):
    from args_local.engine import Engine

    return Engine.load(policy_path, guide_dir, threads=THREADS)


def run_cli(*args: str | bytes, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run `args-local ARGS…` as a user would; returns the finished process (text output).

    Arguments may be bytes (what a shell passes for $'\xff'); kw goes to subprocess.run (e.g. stdin)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "args_local.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)
