"""Lower-precision copies of an exported graph (int8, fp16), kept only if ARGS would rank alike.

ARGS only uses the reward model to order k candidates, so the check is on ordering: the share
of candidate pairs that the low-precision model orders as fp32 does, over sample steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError
from .common import Progress


def pairwise_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pairs (i, j) that both score vectors order the same way."""
    i, j = np.triu_indices(len(a), 1)
    return float(np.mean(np.sign(a[i] - a[j]) == np.sign(b[i] - b[j])))


def int8_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def int8_weights(src: Path, dst: Path) -> None:
    """Weight-only int8 (MatMulNBits, blocks of 32): a quarter of the weight bytes each step reads."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(str(src), bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)


def fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def convert_checked(stage: Path, manifest: dict, label: str, convert: Callable[[Path, Path], None],
                    candidate_rewards: Callable[[dict], list[np.ndarray]], progress: Progress,
                    min_agreement: float = 0.95) -> dict:
    """Replace stage/model.onnx by its `label` version if it orders candidates like fp32; else refuse."""
    progress(f"converting to {label} and measuring what it changes")
    before = candidate_rewards(manifest)
    converted = stage / f"model.{label}.onnx"
    convert(stage / "model.onnx", converted)
    after = candidate_rewards({**manifest, "model": converted.name})
    agreement = float(np.mean([pairwise_agreement(a, b) for a, b in zip(before, after)]))
    flat_before, flat_after = np.concatenate(before), np.concatenate(after)
    report = {"correlation": float(np.corrcoef(flat_before, flat_after)[0, 1]), "ranking_agreement": agreement,
              "max_abs_diff": float(np.abs(flat_before - flat_after).max()), "bound": min_agreement}
    if agreement < min_agreement:
        converted.unlink()
        raise UserError(f"{label} changes the order of {1 - agreement:.1%} of candidate pairs (bound "
                        f"{1 - min_agreement:.0%}; correlation {report['correlation']:.3f}); nothing was written. "
                        "Export without it.")
    (stage / "model.onnx").unlink()
    converted.rename(stage / "model.onnx")
    return report
