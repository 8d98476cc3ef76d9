"""Which llama.cpp build runs on this machine, and the proof that it runs.

llama-cpp-python ships only source, so every machine compiles llama.cpp, and a build made for one
CPU can die with SIGILL on another (on Sapphire Rapids VMs, llama.cpp's AMX kernels fault on any
multi-token prefill). So this module, the one place that knows about llama.cpp builds:

- builds each variant's wheel itself, into a cache keyed by the variant and the CPU features it
  uses (never pip's own wheel cache, which would hand a -march=native build to another CPU);
- patches the AMX kernel's tile set-up before compiling: its tile config is built on the stack,
  where GCC 12 drops every store but the palette, so the first tile instruction of a batched matmul
  faults (SIGILL). The config now lives in .rodata, each worker thread asks the kernel for AMX
  tile state before its first tile instruction, and the config is loaded on every call, not once
  per thread: onnxruntime's int8 GEMM loads its own on the same threads, and llama.cpp's then
  computed NaN. Measured on a Sapphire Rapids VM: prefill works, and decoding is ~1.7x faster
  than without AMX;
- proves a build by a real multi-token prefill and a few decode steps of the policy and the judge
  in a child process, with and without llama.cpp's extra (repacked / AMX) weight buffers, timing
  each, so a crash kills the child and not setup;
- records the fastest setting that works (`llama-build.json` in the args-local home); the runtime
  reads that record at load (`load_options()`), and probes once by itself if the record is missing
  or was made for another CPU or another build.

    python -m args_local.llama_build install   # setup: build/install the preferred variant's wheel
    python -m args_local.llama_build choose    # setup: probe, fall back if needed, record
    python -m args_local.llama_build status    # what is installed and chosen (also `args-local models`)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import home
from .errors import UserError
from .paths import write_text_atomically

VERSION = "0.3.36"  # pyproject.toml pins the same
PATCH_LEVEL = 2  # bump when patch_amx changes, so cached wheels are rebuilt
RECORD = "llama-build.json"
EXTRA_BUFTS_ENV = "ARGS_LOCAL_EXTRA_BUFTS"  # "0": never use llama.cpp's extra (repacked / AMX) weight buffers
PROBE_FAULT_ENV = "ARGS_LOCAL_PROBE_FAULT"  # tests: "extra_bufts" or "all" makes those probes' children die by SIGILL

# Everything the build does not need: the multimodal library (lazily imported by llama-cpp-python).
COMMON_CMAKE = ["-DLLAVA_BUILD=OFF"]


@dataclass(frozen=True)
class Variant:
    name: str
    cmake: tuple[str, ...]
    needs: tuple[str, ...] = ()  # /proc/cpuinfo flags the CPU must have
    optional: tuple[tuple[str, str], ...] = ()  # (cpu flag, cmake option) turned on when the CPU has it

    def cmake_args(self, flags: set[str]) -> list[str]:
        return [*COMMON_CMAKE, *self.cmake, *(f"-D{opt}=ON" for flag, opt in self.optional if flag in flags)]

    def fits(self, flags: set[str]) -> bool:
        return all(f in flags for f in self.needs)


_NO_NATIVE = ("-DGGML_NATIVE=OFF",)
_AVX2 = ("-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON")
# Fastest first. "native" is -march=native, AMX included where the CPU has it; the others name their
# instruction sets, so they never use what the CPU lacks (AMX is never named: it is native-only).
VARIANTS = (
    Variant("native", ("-DGGML_NATIVE=ON",)),
    Variant("avx512", (*_NO_NATIVE, *_AVX2, "-DGGML_AVX512=ON"),
            needs=("avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"),
            optional=(("avx512vbmi", "GGML_AVX512_VBMI"), ("avx512_vnni", "GGML_AVX512_VNNI"),
                      ("avx512_bf16", "GGML_AVX512_BF16"), ("avx_vnni", "GGML_AVX_VNNI"))),
    Variant("avx2", (*_NO_NATIVE, *_AVX2), needs=("avx2", "fma", "f16c", "bmi2"),
            optional=(("avx_vnni", "GGML_AVX_VNNI"),)),
    Variant("portable", (*_NO_NATIVE, "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF",
                         "-DGGML_BMI2=OFF")),
)
BY_NAME = {v.name: v for v in VARIANTS}


# --- the CPU --------------------------------------------------------------------------------
def cpu_info() -> dict:
    """Model name and feature flags of this CPU (Linux /proc/cpuinfo; elsewhere what platform says)."""
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                info["model"] = value.strip()
            elif key in ("vendor_id", "cpu family", "model"):
                info[key.replace(" ", "_")] = value.strip()
            elif key == "flags":
                info["flags"] = sorted(value.split())
                break
    return info


def cpu_key(info: dict | None = None) -> str:
    """Identifies the CPU a native build was made on and is valid for."""
    info = info or cpu_info()
    text = json.dumps([info.get("vendor_id"), info.get("cpu_family"), info.get("model_"),
                       info.get("model"), info.get("flags")])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def wheel_key(variant: Variant, info: dict) -> str:
    """Native builds are for this CPU only; the others for any CPU with the features they name."""
    flags = set(info["flags"])
    if variant.name == "native":
        return f"native-{cpu_key(info)}"
    args = " ".join(variant.cmake_args(flags))
    return f"{variant.name}-{hashlib.sha256(args.encode()).hexdigest()[:8]}"


def amx_note(info: dict) -> str:
    return "this CPU has AMX" if "amx_tile" in info["flags"] else "this CPU has no AMX"


# --- the installed build ----------------------------------------------------------------------
def library_dir() -> Path | None:
    import importlib
    import importlib.util

    importlib.invalidate_caches()  # it may have been installed since this process started
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


def users_own_gpu_build() -> bool:
    """A llama-cpp-python that setup did not build (no stamp) and that offloads to a GPU (README, "On a
    GPU"): setup must not replace it with a CPU build, as it would any other."""
    return (library_dir() is not None and installed_variant() is None
            and any(f"{backend} :" in system_info_of_installed() for backend in ("CUDA", "Vulkan", "Metal", "HIP")))


def build_id() -> str | None:
    """A fingerprint of the installed native libraries (names, sizes, and the sha256 pip recorded for each,
    else its time): a record is valid for them only. Not their times where pip recorded their contents: pip
    stamps a file with the time it installs it, so two clones' .venvs with the same wheel (the same build)
    each took the other's record sharing one home (the default one) for another build's, and probed
    llama.cpp again at every model load, overwriting it."""
    lib = library_dir()
    if lib is None or not lib.is_dir():
        return None
    files = sorted(p for p in lib.iterdir() if p.suffix in (".so", ".dylib", ".dll") or ".so." in p.name)
    recorded = installed_hashes(lib)
    text = json.dumps([(p.name, p.stat().st_size, recorded.get(p.name) or p.stat().st_mtime_ns) for p in files])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def installed_hashes(lib: Path) -> dict[str, str]:
    """{file name in lib: its sha256} from the RECORD pip wrote installing llama-cpp-python there."""
    hashes = {}
    with contextlib.suppress(OSError):
        for record in lib.parent.parent.glob("llama_cpp_python-*.dist-info/RECORD"):
            for line in record.read_text().splitlines():
                path, _, rest = line.partition(",")
                if path.startswith(f"{lib.parent.name}/{lib.name}/") and rest.startswith("sha256="):
                    hashes[path.rsplit("/", 1)[1]] = rest.split(",")[0]
    return hashes


def _stamp() -> list[str]:
    """[variant, wheel directory] stamped beside the package by install_wheel; [] if setup did not build it."""
    lib = library_dir()
    stamp = lib.parent / "args-local-variant" if lib else None
    return stamp.read_text().split() if stamp and stamp.is_file() else []


def installed_variant() -> str | None:
    return (_stamp() or [None])[0]


def record_path() -> Path:
    return home.home() / RECORD


def read_record() -> dict | None:
    """The record setup wrote; None where there is none or it is damaged (then the runtime probes again)."""
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(record_path().read_text())
        return record if isinstance(record, dict) else None
    return None


def write_record(record: dict) -> None:
    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")


def record_is_current(record: dict | None, build: str | None = None, cpu: str | None = None) -> bool:
    return bool(record) and record.get("build_id") == (build or build_id()) and record.get("cpu") == (cpu or cpu_key())


# --- the runtime side: what LlamaPolicy and the judge load with -------------------------------------
_checked: dict | None = None


def load_options(model: Path | str | None = None) -> dict:
    """The model parameters the probe proved on this CPU and build: {"use_extra_bufts": bool}.

    Probes once (in a child process, a few seconds) when no current record exists, so a bad build
    gives a clear error here instead of killing the process at its first prompt."""
    global _checked
    if _checked is None:
        record = read_record()
        if not record_is_current(record):
            record = choose(models=probe_models(model), allow_build=False, quiet=True)
        _checked = record
    if _checked.get("extra_bufts") is None:
        raise UserError(broken_message(_checked))
    if os.environ.get(EXTRA_BUFTS_ENV) == "0":  # the user's override (e.g. to keep AMX out, see policy.py)
        return {"use_extra_bufts": False}
    return {"use_extra_bufts": bool(_checked["extra_bufts"])}


def broken_message(record: dict) -> str:
    crashes = "; ".join(f"{p['setting']}: {p['error']}" for p in record.get("probes", []) if not p["ok"])
    return (f"the installed llama.cpp build cannot run on this CPU ({record.get('cpu_model')}, "
            f"{record.get('amx', '')}): {crashes}. Run tools/setup.sh: it rebuilds llama.cpp for this CPU.")


def load_llama_cpp():
    """The llama_cpp module, imported after onnxruntime. With a CUDA build of llama.cpp (0.3.36,
    CUDA 13), importing onnxruntime afterwards segfaults inside onnxruntime's own import; the other
    order works (seen on an H200 with onnxruntime 1.30, tools/gpu_check.sh). Import it only here."""
    with contextlib.suppress(ImportError):  # setup probes llama.cpp before onnxruntime is installed
        import onnxruntime  # noqa: F401
    import llama_cpp

    return llama_cpp


@contextlib.contextmanager
def model_params(use_extra_bufts: bool):
    """llama_cpp.Llama() takes no use_extra_bufts argument: give its default params that value."""
    raw = load_llama_cpp().llama_cpp

    default = raw.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = use_extra_bufts
        return p

    raw.llama_model_default_params = params
    try:
        yield
    finally:
        raw.llama_model_default_params = default


def system_info() -> str:
    return load_llama_cpp().llama_print_system_info().decode(errors="replace").strip()


# --- probing (in a child process) --------------------------------------------------------------
PROBE_TEXT = ("The quick brown fox jumps over the lazy dog. " * 8).strip()


def probe_child(model: str, extra_bufts: bool, steps: int) -> dict:
    """Runs in the child: load, prefill a multi-token prompt (batched matmuls), decode `steps` tokens."""
    fault = os.environ.get(PROBE_FAULT_ENV)
    if fault == "all" or (fault == "extra_bufts" and extra_bufts):
        os.kill(os.getpid(), signal.SIGILL)  # tests: a real crash by signal, as a bad build gives
    llama_cpp = load_llama_cpp()  # onnxruntime first: a CUDA build segfaults the other way round

    with model_params(extra_bufts):
        llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=1, n_threads_batch=1, n_gpu_layers=0,
                              verbose=False)
    tokens = llm.tokenize(PROBE_TEXT.encode(), add_bos=False)[:96]
    llm.eval(tokens)
    best = float("inf")
    for _ in range(3):  # best of 3: a 2-core machine is rarely quiet
        llm.n_tokens = len(tokens)
        start = time.perf_counter()
        for i in range(steps):
            llm.eval([tokens[i % len(tokens)]])
        best = min(best, time.perf_counter() - start)
    return {"tok_s": round(steps / best, 1)}


def run_probe(model: Path, extra_bufts: bool, steps: int = 32, timeout: float = 300) -> dict:
    """Probe in a child process; a crash (by signal) or a hang is a result, not our death."""
    code = ("import json, sys; from args_local.llama_build import probe_child; "
            f"print(json.dumps(probe_child({str(model)!r}, {extra_bufts!r}, {steps})))")
    # args_local first, and the user's own path kept: llama_cpp may live there (a CUDA build, say)
    paths = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    setting = "extra buffers" if extra_bufts else "no extra buffers"
    result = {"model": Path(model).name, "setting": setting, "extra_bufts": extra_bufts, "ok": False}
    try:
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**result, "error": f"no answer in {timeout:.0f} s"}
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        what = " (illegal instruction: the build uses an instruction this CPU cannot run)" if name == "SIGILL" else ""
        return {**result, "error": f"killed by {name}{what}"}
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        # llama.cpp refused the file and nothing crashed: the file is at fault, not the build
        unloadable = {"unloadable": str(model)} if "Failed to load model from file" in last else {}
        return {**result, "error": f"exit code {child.returncode}: {last}", **unloadable}
    return {**result, "ok": True, **json.loads(child.stdout.strip().splitlines()[-1])}


def check_models_load(results: list[dict]) -> None:
    """A UserError naming the model files when every failed probe failed to load one (nothing crashed):
    a damaged file is not a reason to call the build broken, nor to compile others."""
    failed = [r for r in results if not r["ok"]]
    if failed and all(r.get("unloadable") for r in failed):
        paths = sorted({r["unloadable"] for r in failed})
        raise UserError(f"llama.cpp could not load {', '.join(paths)}: the file is damaged or cut off, or not a "
                        f"GGUF model this llama.cpp reads; {home.refetch_hint(*paths)}.")


def probe_models(extra: Path | str | None = None) -> list[Path]:
    """The built-in policy (timed) and judge, plus the model being loaded, where present."""
    models = [home.default_policy(), home.default_judge_gguf()]
    if extra is not None and Path(extra).is_file() and Path(extra) not in models:
        models.append(Path(extra))
    return [m for m in models if m.is_file()]


def probe_build(models: list[Path]) -> list[dict]:
    """Both settings of the installed build on every model; only the first model's speed is timed."""
    results = []
    for extra_bufts in (True, False):
        for i, model in enumerate(models):
            r = run_probe(model, extra_bufts, steps=32 if i == 0 else 2)
            results.append(r)
            if not r["ok"]:
                break
    return results


def fast_path_works(results: list[dict]) -> bool:
    """Whether every probe with the extra weight buffers (the path that crashed on AMX) ran. Only then is
    this build fine; that the path without them decoded a little faster is noise, not a reason to
    compile other builds."""
    fast = [r for r in results if r["extra_bufts"]]
    return bool(fast) and all(r["ok"] for r in fast)


def verdict(results: list[dict]) -> tuple[bool | None, float]:
    """(extra_bufts setting to use or None if neither works, the policy's decode tok/s with it)."""
    best: tuple[bool | None, float] = (None, 0.0)
    for setting in (True, False):
        mine = [r for r in results if r["extra_bufts"] == setting]
        if mine and all(r["ok"] for r in mine) and mine[0]["tok_s"] > best[1]:
            best = (setting, mine[0]["tok_s"])
    return best


# --- building and installing wheels ----------------------------------------------------------------
def wheel_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "args-local" / "llama-wheels"


def _run(cmd: list[str], log_file: Path, env: dict | None = None) -> None:
    with open(log_file, "a") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"setup: `{' '.join(cmd[:4])} …` failed; the log is {log_file}")


AMX_START = "inline void ggml_tile_config_init(void) {"
AMX_END = "    done = true;\n}"


def patch_amx(source: Path) -> bool:
    """Rewrite llama.cpp's AMX tile set-up as described above; False if that code has changed."""
    mmq = source / "vendor" / "llama.cpp" / "ggml" / "src" / "ggml-cpu" / "amx" / "mmq.cpp"
    text = mmq.read_text()
    start = text.find(AMX_START)
    end = text.find(AMX_END, start)
    if start < 0 or end < 0:
        return False
    colsb = [64, 64, 32, 32, 64, 64, 64, 64] + [0] * 8  # the original's: B tiles 0-1, A 2-3, C 4-7
    rows = [8, 8, 16, 16, 16, 16, 16, 16] + [0] * 8
    config = [1, 0] + [0] * 14 + [b for c in colsb for b in (c & 0xFF, c >> 8)] + rows  # ldtilecfg's 64 bytes
    replacement = (
        AMX_START + "\n"
        "    // args-local: a constant config (GCC dropped the stores to a stack copy), the AMX tile-data\n"
        "    // permission asked for once per thread, and the config loaded on every call, as another\n"
        "    // library on this thread (onnxruntime's int8 GEMM) may have loaded its own since.\n"
        f"    alignas(64) static const unsigned char tc[64] = {{{', '.join(map(str, config))}}};\n"
        "    static thread_local bool permitted = false;\n"
        "    if (!permitted) {\n"
        "#if defined(__gnu_linux__)\n"
        "        syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */);\n"
        "#endif\n"
        "        permitted = true;\n"
        "    }\n"
        "    _tile_loadconfig(tc);\n"
        "}")
    mmq.write_text(text[:start] + replacement + text[end + len(AMX_END):])
    return True


def wheel_dir(variant: Variant, info: dict) -> Path:
    return wheel_cache() / f"{VERSION}-p{PATCH_LEVEL}-{wheel_key(variant, info)}"


def build_wheel(variant: Variant, info: dict, pip: list[str], log) -> Path:
    """The variant's wheel from the cache, or compiled now (a few minutes on 2 cores) and cached."""
    out = wheel_dir(variant, info)
    found = [w for w in sorted(out.glob("llama_cpp_python-*.whl")) if zipfile.is_zipfile(w)]  # not a cut-off one
    if found:
        return found[0]
    out.mkdir(parents=True, exist_ok=True)
    log_file = out / "build.log"
    with tempfile.TemporaryDirectory(prefix="args-local-llama-") as tmp:
        tmp = Path(tmp)
        log(f"llama.cpp: compiling the '{variant.name}' build (a few minutes; log: {log_file})")
        _run([*pip, "download", "-q", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={VERSION}",
              "-d", str(tmp)], log_file)
        with tarfile.open(next(tmp.glob("llama_cpp_python-*.tar.gz"))) as tar:
            tar.extractall(tmp, filter="data")
        source = next(p for p in tmp.iterdir() if p.is_dir())
        patched = patch_amx(source)
        env = {**os.environ, "CMAKE_ARGS": " ".join(variant.cmake_args(set(info["flags"]))),
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        _run([*pip, "wheel", "-q", "--no-deps", "--no-cache-dir", "-w", str(tmp / "wheel"), str(source)], log_file, env)
        built = next((tmp / "wheel").glob("*.whl"))
        # renamed into the cache whole: a move from another file system (/tmp on tmpfs) is a copy, and
        # one stopped part-way left a cut-off wheel that every later setup found and failed to install
        partial = out / (built.name + ".partial")
        shutil.copyfile(built, partial)
        partial.rename(out / built.name)
        (out / "build.json").write_text(json.dumps({"variant": variant.name, "cmake_args": env["CMAKE_ARGS"], "amx_patch": patched,
                                                    "cpu": info.get("model")}, indent=2))
    return next(out.glob("llama_cpp_python-*.whl"))


def install_wheel(wheel: Path, variant: Variant, pip: list[str], log) -> None:
    log(f"llama.cpp: installing the '{variant.name}' build")
    log_file = wheel.parent / "build.log"
    # pip's uninstall leaves the stamp (not in the wheel's RECORD): a run stopped between the reinstall and
    # the new stamp left the old variant's name on the new build, and the next run took it at its word
    if (lib := library_dir()) is not None:
        (lib.parent / "args-local-variant").unlink(missing_ok=True)
    _run([*pip, "install", "-q", "--force-reinstall", "--no-cache-dir", "--no-deps", str(wheel)], log_file)
    _run([*pip, "install", "-q", str(wheel)], log_file)  # its dependencies, on a fresh environment
    lib = library_dir()
    (lib.parent / "args-local-variant").write_text(f"{variant.name} {wheel.parent.name}\n")


def ensure_installed(variant: Variant, info: dict, pip: list[str], log) -> None:
    if _stamp() != [variant.name, wheel_dir(variant, info).name]:
        install_wheel(build_wheel(variant, info, pip, log), variant, pip, log)


# --- choosing -----------------------------------------------------------------------------------
def preferred(info: dict) -> Variant:
    """What setup installs first: the recorded choice for this CPU, else the native build."""
    record = read_record()
    if record and record.get("cpu") == cpu_key(info) and record.get("variant") in BY_NAME:
        return BY_NAME[record["variant"]]
    return VARIANTS[0]


def choose(models: list[Path], allow_build: bool = True, quiet: bool = False, pip: list[str] | None = None) -> dict:
    """Probe the installed build; if it cannot run with its fast setting, try the next variants
    (when allowed to build), keep the fastest that works, install it, and record the choice."""
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not models:
        raise UserError("no model to probe llama.cpp with: run tools/setup.sh to fetch the built-in models")
    info = cpu_info()
    pip = pip or [sys.executable, "-m", "pip"]
    current = installed_variant() or "unknown"
    tried: list[dict] = []
    log(f"llama.cpp: checking the '{current}' build on {info['model']} ({amx_note(info)})")
    results = probe_build(models)
    check_models_load(results)
    setting, speed = verdict(results)
    tried.append({"variant": current, "build_id": build_id(), "probes": results, "extra_bufts": setting, "tok_s": speed})
    # a GPU build of the user's that runs, if only without the extra buffers, is kept as `install` keeps it:
    # a CPU build in its place would take the policy's GPU away
    keep_gpu_build = setting is not None and users_own_gpu_build()
    if allow_build and not fast_path_works(results) and not keep_gpu_build:  # compare the builds that avoid it
        start = VARIANTS.index(BY_NAME[current]) + 1 if current in BY_NAME else 0
        for variant in VARIANTS[start:]:
            if not variant.fits(set(info["flags"])):
                continue
            ensure_installed(variant, info, pip, log)
            log(f"llama.cpp: checking the '{variant.name}' build")
            results = probe_build(models)
            s, v = verdict(results)
            tried.append({"variant": variant.name, "build_id": build_id(), "probes": results, "extra_bufts": s, "tok_s": v})
            if fast_path_works(results):
                break
    best = max(tried, key=lambda t: (t["extra_bufts"] is not None, t["tok_s"]))
    if best["variant"] != installed_variant() and best["variant"] in BY_NAME:
        ensure_installed(BY_NAME[best["variant"]], info, pip, log)
    record = {"variant": best["variant"], "extra_bufts": best["extra_bufts"], "tok_s": best["tok_s"],
              "build_id": build_id(), "cpu": cpu_key(info), "cpu_model": info["model"], "amx": amx_note(info),
              "system_info": system_info_of_installed(), "probes": best["probes"],
              "compared": [{k: t[k] for k in ("variant", "extra_bufts", "tok_s", "probes")} for t in tried],
              "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        write_record(record)
    except OSError as e:  # a read-only or full ARGS_LOCAL_HOME: the verdict still holds for this run
        print(f"args-local: note: cannot save the llama.cpp check in {record_path()} ({e.strerror or e}); it runs "
              "again next time (a few seconds) until that folder can be written", file=sys.stderr, flush=True)
    if record["extra_bufts"] is None:
        log("llama.cpp: " + broken_message(record))
    else:
        others = [describe(t) for t in tried if t is not best]
        log(f"llama.cpp: using {describe(best)}" + (f"; also tried: {'; '.join(others)}" if others else ""))
    return record


def describe(t: dict) -> str:
    """One build's verdict: its speed, and what crashed on the way (the fast setting, typically)."""
    crashed = [p for p in t.get("probes", []) if not p["ok"]]
    why = f" ({crashed[0]['setting']} {crashed[0]['error'].split(' (')[0]} on {crashed[0]['model']})" if crashed else ""
    if t["extra_bufts"] is None:
        return f"'{t['variant']}' cannot run{why}"
    setting = "with" if t["extra_bufts"] else "without"
    return f"'{t['variant']}' {setting} extra weight buffers, {t['tok_s']} tok/s decode{why}"


def system_info_of_installed() -> str:
    """llama.cpp's own feature line, read in a child (loading the library is what may crash)."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode(errors='replace'))"
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        if child.returncode == 0:
            return child.stdout.strip()
    return "unknown"


def status() -> dict:
    record = read_record() or {}
    info = cpu_info()
    return {"cpu": info["model"], "amx": amx_note(info), "installed_variant": installed_variant(),
            "recorded_variant": record.get("variant"), "extra_bufts": record.get("extra_bufts"),
            "decode_tok_s": record.get("tok_s"), "record_current": record_is_current(record),
            "system_info": record.get("system_info"), "compared": record.get("compared"), "record": str(record_path())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m args_local.llama_build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("install", "choose", "status"))
    args = parser.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.action == "install":
        info = cpu_info()
        if users_own_gpu_build():
            log("llama.cpp: keeping the GPU build of llama-cpp-python installed here (setup builds for the CPU "
                "only; `pip uninstall llama-cpp-python` to let it build one)")
        else:
            ensure_installed(preferred(info), info, [sys.executable, "-m", "pip"], log)
    elif args.action == "choose":
        record = read_record()
        if record_is_current(record) and record.get("extra_bufts") is not None:
            log(f"llama.cpp: using {describe(record)} (checked on this CPU)")
            return 0
        try:
            record = choose(probe_models())
        except UserError as e:
            log(f"setup: {e}")
            return 2
        return 0 if record["extra_bufts"] is not None else 1
    else:
        print(json.dumps(status(), indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl+C: setup.sh says so
        sys.exit(130)
