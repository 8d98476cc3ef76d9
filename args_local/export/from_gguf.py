"""`export reward --from-gguf POLICY.gguf --head HEAD.npz`: a GGUF chat model's backbone as a decoder RM.

The head file (see tools/train_reward_heads.py) says which layer it reads (`n_layers`) and
may carry the reward normalisation measured when it was trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import InputFormat
from ..policy import check_gguf_file
from ..reward.base import LinearHead
from .common import Progress
from .decoder import export_decoder, hidden_state_reference, load_gguf_backbone


def read_head(path: Path) -> tuple[LinearHead, int | None, dict | None]:
    head = LinearHead.load(path)
    with np.load(path) as z:
        n_layers = int(z["n_layers"]) if "n_layers" in z else None
        norm = {"mean": float(z["norm_mean"]), "std": float(z["norm_std"])} if "norm_mean" in z else None
    return head, n_layers, norm


def gguf_hidden_size(gguf: Path) -> int | None:
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf))
    for name, field in reader.fields.items():
        if name.endswith(".embedding_length"):
            return int(field.parts[field.data[0]][0])
    return None


def export_from_gguf(gguf: str | Path, head_path: str | Path | None, out: Path, *, n_layers: int | None,
                     max_length: int, opset: int, force: bool, progress: Progress, name: str | None = None,
                     precision: str | None = None) -> dict:
    gguf = check_gguf_file(Path(gguf), "policy model")
    if head_path is None:  # features only: used to train a head
        head, head_layers, norm = None, None, None
    else:
        if not Path(head_path).is_file():
            raise UserError(f"head file not found: {head_path}")
        head, head_layers, norm = read_head(Path(head_path))
    n_layers = n_layers or head_layers
    if head is not None:  # before the slow load: a head from another backbone is a common mistake
        hidden = gguf_hidden_size(gguf)
        if hidden and head.w_last.shape != (hidden,):
            raise UserError(f"the head {Path(head_path).name} expects hidden size {head.w_last.shape[0]} "
                            f"but {gguf.name} has {hidden}")
    model, tokenizer = load_gguf_backbone(gguf, progress)
    hidden = model.config.hidden_size
    if n_layers is None:
        n_layers = model.config.num_hidden_layers
    if head is None:
        head = LinearHead(np.zeros(hidden, np.float32), np.zeros(hidden, np.float32), 0.0)
    return export_decoder(
        model, tokenizer, head, n_layers, out, name=name or out.name,
        source={"gguf": gguf.name, "gguf_bytes": gguf.stat().st_size, "head": Path(head_path).name if head_path else None},
        input_format=InputFormat(), max_length=max_length, opset=opset, force=force, progress=progress,
        normalization=norm, precision=precision, reference=hidden_state_reference(model, head, n_layers),
    )
