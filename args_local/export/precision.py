"""Lower-precision copies of an exported graph (int8, fp16), kept only if ARGS would rank alike.

ARGS only uses the reward model to order k candidates, so the check is on ordering: the share
of candidate pairs that the low-precision model orders as fp32 does, over sample steps. Where
there are several ways to a precision (a decoder's int8), each is converted, checked and timed
on this machine, and the fastest that passes is kept: which int8 kernel is faster depends on
the CPU (AMX / VNNI or not), as the llama.cpp build does (llama_build.py).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError
from .common import Progress


def pairwise_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pairs (i, j) that both score vectors order the same way."""
    i, j = np.triu_indices(len(a), 1)
    return float(np.mean(np.sign(a[i] - a[j]) == np.sign(b[i] - b[j])))


def int8_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantizer():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


@contextlib.contextmanager
def quiet_quantizer():
    """Without the quantizer's "consider pre-processing" warning: advice for image models, noise here."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def int8_weights(src: Path, dst: Path, only: list[str] | None = None) -> None:
    """Weight-only int8 (MatMulNBits, blocks of 32): a quarter of the weight bytes each step reads.
    only: the MatMul nodes to convert (default: all with constant weights)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    others = [] if only is None else [n.name for n in onnx.load(str(src), load_external_data=False).graph.node
                                      if n.op_type == "MatMul" and n.name not in only]
    quantizer = MatMulNBitsQuantizer(str(src), bits=8, block_size=32, is_symmetric=True, accuracy_level=4,
                                     nodes_to_exclude=others)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def int8_dynamic_per_channel(src: Path, dst: Path, weight_only: Sequence[str] = ()) -> None:
    """Int8 weights (per output channel) and activations: MatMulInteger, the AMX / VNNI kernels;
    Sapphire Rapids, 1 thread: 16 ms per k = 10 step of the guide against 33 ms weight-only. The
    MatMul nodes named in weight_only stay weight-only int8: their inputs have outlier channels
    that one activation scale per tensor flattens. That one scale spans all rows of a pass, so a
    candidate's reward moves a little (~0.04 z) with the rows scored beside it; the ranking check
    above is made under exactly that."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staged = dst.with_suffix(".dynamic.onnx") if weight_only else dst
    with quiet_quantizer():
        quantize_dynamic(str(src), str(staged), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=list(weight_only))
    if weight_only:
        int8_weights(staged, dst, only=list(weight_only))
        staged.unlink()


def fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def convert_checked(stage: Path, manifest: dict, label: str, converts: dict[str, Callable[[Path, Path], None]],
                    candidate_rewards: Callable[[dict], tuple[list[np.ndarray], float]], progress: Progress,
                    min_agreement: float = 0.95,
                    fp32: str = "Keep it fp32 (export it without --quantize or --fp16)") -> dict:
    """Replace stage/model.onnx by the fastest of its `label` versions (one per way in `converts`)
    that orders candidates like fp32; refuse if none does, saying what to use instead (fp32: where the
    model in fp32 is). candidate_rewards(manifest): the sample steps' scores and the median ms of a step."""
    before, _ = candidate_rewards(manifest)
    tried = {}
    for way, convert in converts.items():
        progress(f"converting to {label} ({way}) and measuring what it changes")
        converted = stage / f"model.{label}.{way}.onnx"
        convert(stage / "model.onnx", converted)
        after, ms = candidate_rewards({**manifest, "model": converted.name})
        flat_before, flat_after = np.concatenate(before), np.concatenate(after)
        tried[way] = {"ranking_agreement": float(np.mean([pairwise_agreement(a, b) for a, b in zip(before, after)])),
                      "correlation": float(np.corrcoef(flat_before, flat_after)[0, 1]),
                      "max_abs_diff": float(np.abs(flat_before - flat_after).max()), "ms_per_step": round(ms, 2)}
    passing = [way for way, r in tried.items() if r["ranking_agreement"] >= min_agreement]
    chosen = min(passing, key=lambda way: tried[way]["ms_per_step"]) if passing else None
    for way in tried:
        if way != chosen:
            (stage / f"model.{label}.{way}.onnx").unlink()
    if chosen is None:
        closest = max(tried.values(), key=lambda r: r["ranking_agreement"])
        # the model's scores turn on differences finer than `label` keeps (the built-in encoder: int8 steps
        # ~50x wider than its pooled features move between replies): no conversion fixes that
        instead = f"{fp32}, or try --fp16 (checked the same way)" if label == "int8" else fp32
        raise UserError(f"{label} changes the order of {1 - closest['ranking_agreement']:.1%} of candidate pairs "
                        f"(bound {1 - min_agreement:.0%}; correlation {closest['correlation']:.3f}); nothing was "
                        f"written. {instead}.")
    (stage / "model.onnx").unlink()
    (stage / f"model.{label}.{chosen}.onnx").rename(stage / "model.onnx")
    report = {**tried[chosen], "bound": min_agreement}
    if len(tried) > 1:
        report.update(way=chosen, tried=tried)
    return report
