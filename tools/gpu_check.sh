#!/usr/bin/env bash
# GPU check for args-local on a machine with an NVIDIA GPU (it cannot run on a CPU-only machine).
#
#   PYTHON=.venv/bin/python tools/gpu_check.sh        # run from anywhere; uses the repo it lives in
#
# 1. rebuilds llama-cpp-python 0.3.36 with CUDA (CMAKE_ARGS=-DGGML_CUDA=on; needs nvcc, several
#    minutes) — --no-deps so the rebuild does not also upgrade numpy & co. behind our back;
# 2. swaps onnxruntime for onnxruntime-gpu of the same version, with the CUDA/cuDNN wheels, when
#    pip can fetch it (else it keeps onnxruntime and checks that the RM falls back to CPU quietly);
# 3. checks that llama.cpp reports GPU offload and that onnxruntime's CUDA provider really loads
#    (session.get_providers()[0] == "CUDAExecutionProvider" for an fp32 model: onnxruntime silently
#    falls back to CPU when a CUDA library is missing); a dynamic-int8 RM such as the built-in guide
#    stays on the CPU by design (onnx_session.worth_a_gpu);
# 4. runs `args-local bench --quick --json` with every layer offloaded and prints a summary.
# It changes the packages of the environment it runs in: use a throwaway venv or machine.
#
# On a machine without a package index (an offline GPU box):
#   LLAMA_SDIST=llama_cpp_python-0.3.36.tar.gz   build from this local sdist (no build isolation)
#   CUDA_ARCHITECTURES=90                        compile for this GPU only (minutes instead of many)
#   POLICY=model.gguf REWARD=rm-directory        models to use instead of the built-in ones
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
export OUT="${OUT:-$(mktemp -d)}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || {
    echo "FAIL: nvidia-smi found no NVIDIA GPU"; exit 1; }

echo "== llama-cpp-python with CUDA (compiling)"
CUDA_CMAKE="-DGGML_CUDA=on -DLLAVA_BUILD=OFF${CUDA_ARCHITECTURES:+ -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHITECTURES}"
if [ -n "${LLAMA_SDIST:-}" ]; then
    CMAKE_ARGS="$CUDA_CMAKE" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$PY" -m pip install --no-index --no-cache-dir \
        --force-reinstall --no-deps --no-build-isolation "$LLAMA_SDIST"
else
    CMAKE_ARGS="$CUDA_CMAKE" "$PY" -m pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
fi

echo "== onnxruntime-gpu in place of onnxruntime"
ORT_VERSION="$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null || echo "")"
ORT_WHEELS="$(mktemp -d)"
# fetched first, so a machine that cannot fetch it keeps the onnxruntime it has
if "$PY" -m pip download -q -d "$ORT_WHEELS" "onnxruntime-gpu[cuda,cudnn]${ORT_VERSION:+==$ORT_VERSION}" >/dev/null 2>&1; then
    "$PY" -m pip uninstall -y onnxruntime onnxruntime-gpu >/dev/null 2>&1 || true
    "$PY" -m pip install --no-index --find-links "$ORT_WHEELS" "onnxruntime-gpu[cuda,cudnn]${ORT_VERSION:+==$ORT_VERSION}"
else
    echo "onnxruntime-gpu could not be fetched here: keeping onnxruntime $ORT_VERSION (the RM must fall back to CPU quietly)"
fi

echo "== providers"
"$PY" - <<'PY' | tee "$OUT/providers.txt"
import os

import numpy as np
import onnxruntime as ort  # before llama_cpp: the other order segfaults with a CUDA build
from onnx import TensorProto, helper, save

from args_local import home, llama_build
from args_local.reward import load_reward_model
from args_local.reward.onnx_session import make_session, provider_of

print("llama.cpp GPU offload support:", bool(llama_build.load_llama_cpp().llama_supports_gpu_offload()))
print("onnxruntime", ort.__version__, "available providers:", ort.get_available_providers())
# a one-MatMul fp32 model: whether the CUDA provider really loads (it falls back to CPU silently)
w = helper.make_tensor("w", TensorProto.FLOAT, [64, 64], np.ones(64 * 64, np.float32))
graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
tiny = os.path.join(os.environ["OUT"], "tiny.onnx")
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tiny)
first = provider_of(make_session(tiny, threads=1, use_gpu=True))  # the code path args-local itself uses
if first != "CUDA" and hasattr(ort, "preload_dlls"):
    # pip's nvidia-* CUDA/cuDNN wheels are found only after preload_dlls(): say so if that is the fix
    ort.preload_dlls()
    after = provider_of(make_session(tiny, threads=1, use_gpu=True))
    print("session provider after onnxruntime.preload_dlls():", after,
          "(args-local would need to call preload_dlls)" if after == "CUDA" else "")
print("fp32 session provider:", first)
rm = load_reward_model(os.environ.get("REWARD") or home.default_reward(), 4, use_gpu=True)
print("reward model provider:", rm.provider, "(dynamic int8 stays on the CPU by design)" if rm.provider == "CPU" else "")
print("ORT_CUDA_OK" if first == "CUDA" else "ORT_CUDA_FAILED")
PY

echo "== bench --quick with offload"
"$PY" -m args_local.cli bench --quick --json --n-gpu-layers -1 ${POLICY:+--policy "$POLICY"} ${REWARD:+--reward "$REWARD"} \
    > "$OUT/bench.json"

echo "== summary (files in $OUT)"
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
bench = json.loads((out / "bench.json").read_text())
m = bench["machine"]
ort_ok = "ORT_CUDA_OK" in (out / "providers.txt").read_text()
print(f"llama.cpp GPU offload: {'yes' if m['llama_cpp_gpu_offload'] else 'NO'} (n_gpu_layers {m['n_gpu_layers']})")
print(f"onnxruntime CUDA provider: {'yes' if ort_ok else 'NO'}")
print(f"plain greedy: {bench['plain_greedy_tokens_per_s']:.1f} tokens/s")
for r in bench["runs"]:
    print(f"ARGS-greedy {r['reward_kind']:8s} ({r['provider']}) k={r['k']:<3d} {r['tokens_per_s']:7.1f} tokens/s  "
          f"x{r['ratio_to_plain']:.2f} of plain  policy {r['ms_policy_per_step']:.2f} ms/step  RM {r['ms_reward_per_step']:.2f} ms/step")
ok = m["llama_cpp_gpu_offload"] and ort_ok
print("GPU CHECK:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
