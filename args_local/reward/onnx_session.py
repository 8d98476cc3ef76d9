"""onnxruntime sessions: CUDA when it really loads, else CPU, and no noise either way."""

from __future__ import annotations

from pathlib import Path

from ..cpu import rm_threads_may_spin
from ..errors import UserError
from ..quiet import quiet_stderr


def make_session(path: Path, threads: int, use_gpu: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # the CUDA fallback logs errors even though CPU works fine
    # Spinning threads steal the cores llama.cpp needs between reward-model calls, unless cores are plenty.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if rm_threads_may_spin(threads) else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    if use_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        with quiet_stderr():
            session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for broken files
        raise UserError(f"could not load ONNX model {path}: {str(e).splitlines()[0]}. "
                        "The file is missing or corrupt; re-export it with `args-local export`.") from None
    return session


def provider_of(session) -> str:
    """'CUDA' or 'CPU': what the session really runs on (the list asked for can silently fall back)."""
    return "CUDA" if session.get_providers()[0] == "CUDAExecutionProvider" else "CPU"


def worth_a_gpu(manifest: dict) -> bool:
    """False for dynamic int8 (DynamicQuantizeLinear + MatMulInteger): onnxruntime's CUDA provider has no
    DynamicQuantizeLinear, so every layer would cross between GPU and CPU. Measured on an H200 machine:
    the int8 guide took 14.7 ms a step on CUDA against 7.6 ms on that machine's CPU (BENCHMARKS.md, "GPU")."""
    return ((manifest.get("validation") or {}).get("int8") or {}).get("way") != "dynamic"
