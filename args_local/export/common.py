"""What every export shares: progress lines, an all-or-nothing output directory, versions."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

from ..errors import UserError

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
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)


def stderr_progress() -> Progress:
    start = time.time()

    def progress(message: str) -> None:
        print(f"[{time.time() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return progress


@contextlib.contextmanager
def staged_output(out: Path, force: bool):
    """Build into OUT.partial, then swap it in: an interrupted export never leaves a model that loads."""
    out = Path(out).expanduser()
    if out.exists() and not force:
        raise UserError(f"{out} already exists; pass --force to replace it")
    stage = out.with_name(out.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        raise UserError(f"could not write {out}: {e.strerror or e} (out of disk space?); nothing was written") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def export_versions() -> dict:
    out = {}
    for name in ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
