"""Shared fixtures: the real built-in models (built by tools/setup.sh), loaded once per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from args_local import home

ROOT = Path(__file__).resolve().parent.parent
HH_PAIRS = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-pairs.jsonl.gz"
THREADS = 1  # CI machines have 2 cores; llama.cpp with 2 threads stalls when anything else runs


def load_tool(name: str):
    """tools/NAME.py as a module (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


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


def require_data(path: Path) -> Path:
    """The project's data sets live in shared/ beside the clone, not in what setup builds: a clone made
    elsewhere was told to run tools/setup.sh, which never brings them."""
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests read the project's data from ../shared/data, beside this "
                    "clone (tools/setup.sh does not fetch it); clone the project next to its shared/ folder")
    return path


@pytest.fixture(scope="session")
def hh_pairs() -> Path:
    return require_data(HH_PAIRS)


@pytest.fixture(scope="session")
def alpaca_pairs() -> Path:
    return require_data(HH_PAIRS.parents[1] / "alpaca-eval" / "helpful-pairs.jsonl.gz")


@pytest.fixture(scope="session")
def engine(policy_path, guide_dir):
    from args_local.engine import Engine

    return Engine.load(policy_path, guide_dir, threads=THREADS)


def guide_copy(guide_dir: Path, out: Path, edit) -> Path:
    """The guide's files linked into `out`, beside its manifest changed by edit(manifest)."""
    out.mkdir()
    for f in guide_dir.iterdir():
        if f.name != "manifest.json":
            (out / f.name).symlink_to(f)
    manifest = json.loads((guide_dir / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def run_cli(*args: str | bytes, timeout: float = 600, env_extra: dict | None = None,
            **kw) -> subprocess.CompletedProcess:
    """Run `args-local ARGS…` as a user would; returns the finished process (text output).

    Arguments may be bytes (what a shell passes for $'\xff'); kw goes to subprocess.run (e.g. stdin, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}  # stdout may be a file of the test's
    return subprocess.run([sys.executable, "-m", "args_local.cli", *args], text=True, timeout=timeout, env=env, **kw)


def assert_user_error(proc, *words, one_line: bool = False) -> None:
    """Exit 2 with the given words and no traceback (one_line: and nothing else printed)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    if one_line:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


def pytest_sessionstart(session):
    """A real multi-token prefill in a child process before anything loads llama.cpp in this one:
    a build that cannot run on this CPU fails the run with one line, not a SIGILL that takes pytest down."""
    from args_local import llama_build

    policy = home.default_policy()
    if not policy.is_file():
        return  # the fixtures say what is missing
    record = llama_build.read_record() or {}
    extra_bufts = bool(record.get("extra_bufts")) if llama_build.record_is_current(record) else False
    probe = llama_build.run_probe(policy, extra_bufts, steps=2)
    if not probe["ok"]:
        info = llama_build.cpu_info()
        pytest.exit(f"llama.cpp cannot run on this CPU ({info['model']}, {llama_build.amx_note(info)}): "
                    f"a multi-token prefill ({probe['setting']}) was {probe['error']}. Run tools/setup.sh to rebuild it for this CPU.",
                    returncode=1)
