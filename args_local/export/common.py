"""What every export shares: progress lines, an all-or-nothing output directory, versions."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..home import is_built_in
from ..interrupts import deferred
from ..reward.manifest import KINDS, MANIFEST

EMBEDDER_KIND = "sentence-embedder"  # the kind in the manifest of eval's embedder (evaluation/embedder_build.py)

Progress = Callable[[str], None]


def quiet_converters() -> None:
    """Silence what the conversion libraries print that tells a user nothing: GGUF dequantisation
    progress bars, tokenizer notes, torch TracerWarnings (our own validation against the source
    model is what counts) and the int8 quantizer's per-node INFO lines. Call before importing them."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", message=".*registered as constants in the trace")
    warnings.filterwarnings("ignore", message=".*Converting a tensor to a Python")
    warnings.filterwarnings("ignore", message="Exporting aten::index operator")  # a GPT-2 classifier's pooling
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)


def stderr_progress() -> Progress:
    start = time.time()

    def progress(message: str) -> None:
        print(f"[{time.time() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return progress


def check_output(out: Path, force: bool, sources=()) -> Path:
    """OUT, if writing it cannot destroy anything the user has; else a UserError.

    OUT must not be a source, inside one or hold one; --force replaces only an earlier export
    (a directory with our manifest.json), never a folder of other files."""
    out = Path(out).expanduser()
    where = out.resolve()
    for src in filter(None, sources):
        src = Path(src).expanduser().resolve()
        if where == src or src in where.parents or where in src.parents:
            raise UserError(f"--out {out} overlaps the source {src}: exporting there would overwrite it. "
                            "Choose an output directory outside the source.")
    if out.exists() or out.is_symlink():
        if not force:
            raise UserError(f"{out} already exists; pass --force to replace it")
        if not is_earlier_export(out):
            raise UserError(f"{out} exists and is not an args-local model (it has no {MANIFEST} of ours); --force only "
                            "replaces an earlier export. Choose another --out, or move that folder away yourself.")
    return out


def is_earlier_export(folder: Path) -> bool:
    """Whether FOLDER holds a model args-local wrote: its manifest.json names one of our kinds. A manifest.json
    alone says little (browser extensions and web apps have one too, and --force once replaced such a folder
    whole). Setup may also replace a built-in model whose manifest was damaged: it rebuilds its own folders."""
    if not (folder.is_dir() and (folder / MANIFEST).is_file()):
        return False
    if is_built_in(folder):
        return True
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except (OSError, ValueError):  # not JSON, or not UTF-8
        return False
    return isinstance(manifest, dict) and manifest.get("kind") in (*KINDS, EMBEDDER_KIND)


@contextlib.contextmanager
def staged_output(out: Path, force: bool, sources=()):
    """Build into a fresh folder beside OUT, then swap it in: an interrupted export never leaves a
    model that loads, and only OUT itself (checked by check_output) is ever replaced."""
    out = check_output(out, force, sources)
    stage, hold = _new_stage(out)
    try:
        umask = os.umask(0)
        os.umask(umask)
        stage.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export gets the usual permissions
        try:
            yield stage
        except OSError as e:
            shutil.rmtree(stage, ignore_errors=True)
            disk = " (out of disk space)" if e.errno == errno.ENOSPC else ""
            raise UserError(f"the export failed: {e}{disk}; nothing was written to {out}") from None  # e names the file
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        with deferred():  # a Ctrl+C between the renames would leave OUT gone, the old export hidden in `old`
            if out.exists() or out.is_symlink():
                out.rename(old / out.name)
            stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        os.close(hold)


def _new_stage(out: Path) -> tuple[Path, int]:
    """An empty folder beside OUT to build in, and the descriptor that holds its lock while the export runs;
    a UserError if OUT's folder cannot be made or written, or another export is writing OUT now."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
        hold = _lock(stage)
    except OSError as e:  # a file where a folder should be, a read-only place, a full disk
        why = "a file is in the way" if isinstance(e, FileExistsError) else e.strerror
        raise UserError(f"cannot write {out}: {why} ({e.filename}); choose another --out") from None
    for other in out.parent.glob(f".{out.name}.partial-*"):
        if other == stage:
            continue
        try:
            held = _lock(other)
        except BlockingIOError:  # a live export of the same OUT (removing its folder made it fail)
            os.close(hold)
            shutil.rmtree(stage, ignore_errors=True)
            raise UserError(f"another args-local export is writing {out} now; wait for it to end, or choose "
                            "another --out") from None
        except OSError:
            continue
        shutil.rmtree(other, ignore_errors=True)  # left by an export that was killed
        os.close(held)
    return stage, hold


def _lock(folder: Path) -> int:
    """An open descriptor of FOLDER holding an OS lock on it, which ends with the process (kill -9 included);
    BlockingIOError if another process holds it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def export_versions() -> dict:
    out = {}
    for name in ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxruntime-gpu",
                 "tokenizers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
