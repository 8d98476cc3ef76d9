"""The llama.cpp build check: probes in child processes, a real crash by signal, the fallback
setup records, and the runtime loading with what was recorded (issue: SIGILL on AMX CPUs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from args_local import llama_build

from .conftest import ROOT, THREADS, load_tool, run_cli


@pytest.fixture
def isolated_home(tmp_path, policy_path, monkeypatch):
    """An args-local home holding only the built-in policy, so records written here touch nothing else."""
    models = tmp_path / "models" / policy_path.parent.name
    models.mkdir(parents=True)
    (models / policy_path.name).symlink_to(policy_path)
    monkeypatch.setenv("ARGS_LOCAL_HOME", str(tmp_path))
    return tmp_path


def test_a_probe_reports_speed_for_a_build_that_runs(policy_path):
    result = llama_build.run_probe(policy_path, extra_bufts=False, steps=4)
    assert result["ok"], result
    assert result["tok_s"] > 0


def test_a_child_killed_by_sigill_is_a_result_not_our_death(policy_path, monkeypatch):
    monkeypatch.setenv(llama_build.PROBE_FAULT_ENV, "extra_bufts")
    result = llama_build.run_probe(policy_path, extra_bufts=True, steps=2)
    assert not result["ok"]
    assert "SIGILL" in result["error"] and "illegal instruction" in result["error"]


def test_setup_falls_back_and_the_runtime_loads_with_what_it_recorded(isolated_home, monkeypatch):
    monkeypatch.setenv(llama_build.PROBE_FAULT_ENV, "extra_bufts")  # the fast setting "crashes" here
    record = llama_build.choose(llama_build.probe_models(), allow_build=False, quiet=True)
    assert record["extra_bufts"] is False
    assert [p["ok"] for p in record["probes"] if p["extra_bufts"]] == [False]
    saved = json.loads((isolated_home / llama_build.RECORD).read_text())
    assert saved["extra_bufts"] is False and saved["cpu"] == llama_build.cpu_key()
    assert saved["build_id"] == llama_build.build_id()
    # a fresh process (the runtime) reads the record and loads without extra buffers, probing nothing
    code = ("from args_local.policy import LlamaPolicy; from args_local import home, llama_build; "
            "p = LlamaPolicy(home.default_policy(), n_ctx=512, n_threads=1); "
            "print(p._llm.model_params.use_extra_bufts, len(p.prefill(p.tokenize('one two three four five six'))))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(llama_build.PROBE_FAULT_ENV)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    use_extra, n_vocab = out.stdout.split()
    assert use_extra == "False" and int(n_vocab) > 1000


def test_other_builds_are_compiled_only_where_the_fast_path_crashes():
    def probe(extra: bool, ok: bool, tok_s: float) -> dict:
        return {"model": "policy.gguf", "extra_bufts": extra, "ok": ok, "tok_s": tok_s if ok else 0.0}

    # both settings run, the one without extra buffers a hair faster (noise): this build is kept, and
    # the faster setting is still the one used
    both_run = [probe(True, True, 141.3), probe(False, True, 141.8)]
    assert llama_build.fast_path_works(both_run)
    assert llama_build.verdict(both_run) == (False, 141.8)
    crashed = [probe(True, False, 0), probe(False, True, 141.8)]  # SIGILL with AMX's extra buffers
    assert not llama_build.fast_path_works(crashed)
    assert llama_build.verdict(crashed) == (False, 141.8)
    assert not llama_build.fast_path_works([])


def test_the_user_can_keep_the_extra_weight_buffers_off():
    """ARGS_LOCAL_EXTRA_BUFTS=0: no repacked / AMX buffers, whatever the record says (policy.NAN_LOGITS)."""
    code = ("from args_local.policy import LlamaPolicy; from args_local import home; "
            "p = LlamaPolicy(home.default_policy(), n_ctx=512, n_threads=1); "
            "print(p._llm.model_params.use_extra_bufts, len(p.prefill(p.tokenize('one two three four five six'))))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), llama_build.EXTRA_BUFTS_ENV: "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    use_extra, n_vocab = out.stdout.split()
    assert use_extra == "False" and int(n_vocab) > 1000


def test_without_a_record_the_runtime_probes_first_and_a_build_that_cannot_run_is_one_clear_error(isolated_home):
    env_fault = {llama_build.PROBE_FAULT_ENV: "all"}
    proc = run_cli("generate", "hello there", "--mode", "greedy", "--max-new-tokens", "2", "--threads", str(THREADS),
                   env_extra={**env_fault, "ARGS_LOCAL_HOME": str(isolated_home)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot run on this CPU" in proc.stderr and "SIGILL" in proc.stderr and "tools/setup.sh" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_without_a_record_a_damaged_model_file_is_named_not_the_build(tmp_path, policy_path, monkeypatch):
    """A cut-off GGUF fails every probe cleanly (no crash): the error names the file, no build is blamed or
    compiled, and nothing is recorded; setup extracts the built-in policy again (its sha256 no longer matches)."""
    models = tmp_path / "models"
    policy = models / policy_path.parent.name / policy_path.name
    policy.parent.mkdir(parents=True)
    policy.write_bytes(policy_path.read_bytes()[: 5 << 20])
    monkeypatch.setenv("ARGS_LOCAL_HOME", str(tmp_path))
    proc = run_cli("generate", "hello there", "--mode", "greedy", "--max-new-tokens", "2", "--threads", str(THREADS))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"llama.cpp could not load {policy}: the file is damaged or cut off" in proc.stderr
    assert "tools/setup.sh fetches the built-in models again" in proc.stderr
    assert "cannot run on this CPU" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / llama_build.RECORD).exists()

    (models / "downloads").symlink_to(policy_path.parent.parent / "downloads")  # the wheel setup fetched
    load_tool("build_default_models").build_policy(force=False)
    assert policy.read_bytes() == policy_path.read_bytes()


def test_a_record_that_cannot_be_saved_is_a_note_and_the_reply_still_comes(isolated_home):
    """A home where the record cannot be written (full, read-only, or a folder in its place) after llama.cpp
    changed: the probe's verdict holds for this run, so the reply comes, with one note that the check runs
    again next time (it was a traceback, or exit 2), and no temporary file is left behind."""
    (isolated_home / llama_build.RECORD).mkdir()  # root writes anywhere, so a folder stands in for a full disk
    proc = run_cli("generate", "hello there", "--mode", "greedy", "--max-new-tokens", "2", "--threads", str(THREADS),
                   env_extra={"ARGS_LOCAL_HOME": str(isolated_home)})
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr
    assert f"cannot save the llama.cpp check in {isolated_home / llama_build.RECORD} (Is a directory)" in proc.stderr
    assert not any(p.name.endswith(".tmp") for p in isolated_home.iterdir())


@pytest.mark.parametrize("text", ["[1]", '"native"', '{"variant": "nat'])
def test_a_damaged_record_is_no_record(isolated_home, text):
    """JSON of another shape was an AttributeError traceback at every load; the runtime probes again instead."""
    (isolated_home / llama_build.RECORD).write_text(text)
    assert llama_build.read_record() is None and not llama_build.record_is_current(llama_build.read_record())


def test_a_record_for_another_cpu_is_not_trusted(isolated_home):
    llama_build.write_record({"variant": "native", "extra_bufts": True, "cpu": "another-cpu",
                              "build_id": llama_build.build_id()})
    assert not llama_build.record_is_current(llama_build.read_record())


def test_wheels_are_keyed_by_what_they_assume_of_the_cpu():
    info = llama_build.cpu_info()
    other = {**info, "model": "Some Other CPU", "flags": [f for f in info["flags"] if not f.startswith("amx")]}
    native = llama_build.BY_NAME["native"]
    assert llama_build.wheel_key(native, info) != llama_build.wheel_key(native, other)
    portable = llama_build.BY_NAME["portable"]
    assert llama_build.wheel_key(portable, info) == llama_build.wheel_key(portable, other)
    for variant in llama_build.VARIANTS[1:]:
        assert not any("AMX" in arg for arg in variant.cmake_args(set(info["flags"])))



def test_a_cut_off_cached_wheel_is_built_again_not_installed(tmp_path, monkeypatch):
    """A wheel cut off on its way into the cache (a stopped copy from /tmp) made every later setup fail in pip
    install; now only a whole one is taken from the cache. (`false` as pip: the build starts and stops there.)"""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    info, variant = llama_build.cpu_info(), llama_build.BY_NAME["portable"]
    cached = llama_build.wheel_dir(variant, info) / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 cut off")
    said = []
    with pytest.raises(SystemExit, match="false download"):
        llama_build.build_wheel(variant, info, ["false"], said.append)
    assert said and "compiling the 'portable' build" in said[0]
    with zipfile.ZipFile(cached, "w") as whole:
        whole.writestr("llama_cpp/__init__.py", "")
    assert llama_build.build_wheel(variant, info, ["false"], said.append) == cached and len(said) == 1

ORIGINAL_TILE_SETUP = """inline void ggml_tile_config_init(void) {
    static thread_local bool done = false;
    if (done) {
        return;
    }
    alignas(64) tile_config_t tc = {};
    tc.palette_id = 1;
    tc.rows[0] = 8;   tc.colsb[0] = 64;
    _tile_loadconfig(&tc);
    done = true;
}
"""


def test_the_amx_patch_replaces_the_stack_config_by_a_constant_ldtilecfg_block(tmp_path):
    mmq = tmp_path / "vendor" / "llama.cpp" / "ggml" / "src" / "ggml-cpu" / "amx" / "mmq.cpp"
    mmq.parent.mkdir(parents=True)
    mmq.write_text(ORIGINAL_TILE_SETUP)
    assert llama_build.patch_amx(tmp_path)
    text = mmq.read_text()
    assert "tile_config_t tc" not in text and "_tile_loadconfig(tc);\n}" in text
    assert "done" not in text  # loaded on every call: another library may have loaded its own config since
    block = [int(b) for b in text.split("tc[64] = {")[1].split("}")[0].split(",")]
    assert len(block) == 64 and block[0] == 1  # palette 1, start row 0, reserved bytes zero
    colsb = [block[16 + 2 * i] | block[17 + 2 * i] << 8 for i in range(16)]
    assert colsb[:8] == [64, 64, 32, 32, 64, 64, 64, 64] and block[48:56] == [8, 8, 16, 16, 16, 16, 16, 16]
    assert not any(block[2:16]) and not any(colsb[8:]) and not any(block[56:])
    mmq.write_text("// a llama.cpp whose AMX code has moved on\n")
    assert not llama_build.patch_amx(tmp_path)  # then the build is left as it is, and the probe decides


def test_a_policy_load_brings_onnxruntime_in_before_llama_cpp(policy_path):
    """The other order segfaults with a CUDA build of llama.cpp (seen on an H200); checked in a fresh
    process, through the policy as args-local loads it."""
    code = ("import sys\n"
            "from args_local.policy import LlamaPolicy\n"
            f"LlamaPolicy({str(policy_path)!r}, n_ctx=256, n_threads=1)\n"
            "names = list(sys.modules)\n"
            "print(names.index('onnxruntime') < names.index('llama_cpp'))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "True"


def test_a_probe_child_keeps_the_users_path_and_brings_onnxruntime_in_first(policy_path, tmp_path, monkeypatch):
    """A CUDA build installed off the default path (PYTHONPATH) was not found by the probe, and its
    child imported llama_cpp before onnxruntime (SIGSEGV on an H200): both read as 'this build cannot
    run on this CPU'. The child's own sitecustomize, found on the user's path, reports what it saw."""
    report = tmp_path / "order.json"
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, json, sys\n"
        "def _report():\n"
        "    names = list(sys.modules)\n"
        f"    open({str(report)!r}, 'w').write(json.dumps(names.index('onnxruntime') < names.index('llama_cpp')))\n"
        "atexit.register(_report)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    result = llama_build.run_probe(policy_path, extra_bufts=False, steps=2)
    assert result["ok"], result
    assert json.loads(report.read_text()) is True


def test_setup_keeps_a_gpu_build_the_user_installed_and_would_replace_a_plain_one(tmp_path):
    """No CUDA toolchain here, so a stand-in package plays the user's CUDA build of llama-cpp-python
    (unstamped, its system info naming CUDA), found first on the path as a real install would be."""
    package = tmp_path / "llama_cpp"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "def llama_print_system_info():\n    return b'CUDA : ARCHS = 900 | CPU : AVX2 = 1 |'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    code = "from args_local import llama_build; print(llama_build.users_own_gpu_build())"
    kept = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert kept.stdout.strip() == "True", kept.stderr
    install = subprocess.run([sys.executable, "-m", "args_local.llama_build", "install"], capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=120)
    assert install.returncode == 0 and "keeping the GPU build" in install.stderr, install.stderr
    (package / "__init__.py").write_text("def llama_print_system_info():\n    return b'CPU : AVX2 = 1 |'\n")
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert plain.stdout.strip() == "False", plain.stderr
    assert llama_build.users_own_gpu_build() is False  # the build setup made here is stamped: setup's own


def test_setup_keeps_a_gpu_build_whose_fast_path_crashes_and_uses_it_without_extra_buffers(isolated_home, tmp_path,
                                                                                           monkeypatch):
    """A CUDA build the user made as the README says is unpatched: on an AMX CPU its extra buffers crash. `install`
    kept it, but `choose` then compiled and installed CPU builds over it, and the policy lost its GPU."""
    monkeypatch.setenv(llama_build.PROBE_FAULT_ENV, "extra_bufts")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a build would start there, and stop at `false`
    monkeypatch.setattr(llama_build, "users_own_gpu_build", lambda: True)  # no CUDA toolchain here
    record = llama_build.choose(llama_build.probe_models(), pip=["false"], quiet=True)
    assert record["extra_bufts"] is False and len(record["compared"]) == 1
    assert not (tmp_path / "cache" / "args-local").exists()  # nothing compiled


def test_the_same_build_installed_in_two_places_is_one_build(tmp_path, monkeypatch):
    """pip gives each installed file its install time: two clones' .venvs with the same wheel, sharing one
    home, each took the other's record for another build's and probed llama.cpp again at every load."""
    installed = llama_build.library_dir()
    site = installed.parent.parent
    copies = []
    for name in ("first", "second"):
        lib = tmp_path / name / "llama_cpp" / "lib"
        shutil.copytree(installed, lib, symlinks=True)  # copied now: other file times, the same contents
        for record in site.glob("llama_cpp_python-*.dist-info"):
            shutil.copytree(record, tmp_path / name / record.name)
        copies.append(lib)
    os.utime(copies[1] / "libllama.so", (1, 1))
    ids = []
    for lib in copies:
        monkeypatch.setattr(llama_build, "library_dir", lambda lib=lib: lib)
        ids.append(llama_build.build_id())
    assert ids[0] == ids[1] is not None
    record = next(copies[1].parent.parent.glob("llama_cpp_python-*.dist-info")) / "RECORD"
    record.write_text(record.read_text().replace("llama_cpp/lib/libllama.so,sha256=", "llama_cpp/lib/libllama.so,sha256=0"))
    assert llama_build.build_id() != ids[0]  # another build installed there (pip wrote other contents)
