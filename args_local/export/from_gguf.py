"""`export reward --from-gguf POLICY.gguf --head HEAD.npz`: a GGUF chat model's backbone as a decoder RM.
`--head helpful=A.npz --head harmless=B.npz`: one head per objective on the same backbone pass.

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
from .encoder import DECODER_MODEL_TYPES


def read_head(path: Path) -> tuple[LinearHead, int | None, dict | None]:
    head = LinearHead.load(path)
    with np.load(path) as z:
        n_layers = int(z["n_layers"]) if "n_layers" in z else None
        norm = {"mean": float(z["norm_mean"]), "std": float(z["norm_std"])} if "norm_mean" in z else None
    return head, n_layers, norm


def gguf_shape(gguf: Path) -> tuple[str, dict[str, int]]:
    """The GGUF's architecture and its integer `ARCH.*` sizes (embedding_length, block_count, …), read from
    its metadata without loading the weights."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    arch_field = fields.get("general.architecture")
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode() if arch_field else ""
    sizes = {name.removeprefix(f"{arch}."): int(field.parts[field.data[0]][0]) for name, field in fields.items()
             if name.startswith(f"{arch}.") and len(field.data) == 1 and field.parts[field.data[0]].dtype.kind in "iu"}
    return arch, sizes


def check_backbone(gguf: Path, arch: str, sizes: dict[str, int], layers: int | None, what: str) -> None:
    """What the GGUF's metadata shows will fail, said before the slow load into torch."""
    if arch and arch not in DECODER_MODEL_TYPES:
        raise UserError(f"{gguf.name} is a {arch} model; --from-gguf runs the backbones of "
                        f"{', '.join(DECODER_MODEL_TYPES)} models")
    if layers and layers > sizes.get("block_count", layers):
        raise UserError(f"{what} {layers} is more than the {sizes['block_count']} layers of {gguf.name}")


def read_heads(specs: dict[str, dict], gguf: Path, hidden: int | None) -> tuple[dict, int | None]:
    """{objective: (head, spec)} from {objective: the manifest's head entry, its file a path}, and the layer
    they read; checked before the slow load: a head from another backbone is a common mistake. A head
    file's normalisation is used where the entry has none."""
    heads, layers = {}, set()
    for objective, spec in specs.items():
        path = Path(spec["file"])
        if not path.is_file():
            raise UserError(f"head file not found: {path}")
        head, head_layers, norm = read_head(path)
        if hidden and head.w_last.shape != (hidden,):
            raise UserError(f"the head {path.name} expects hidden size {head.w_last.shape[0]} "
                            f"but {gguf.name} has {hidden}")
        spec = {key: value for key, value in spec.items() if key != "file"}
        heads[objective] = (head, {"normalization": norm, **spec} if norm else spec)
        layers.add(head_layers)
    if len(layers - {None}) > 1:
        raise UserError(f"the heads read different layers ({', '.join(str(n) for n in sorted(layers - {None}))}); "
                        "heads on one backbone pass must read the same layer")
    return heads, max(layers - {None}, default=None)


def export_from_gguf(gguf: str | Path, head_path: str | Path | None, out: Path, *, n_layers: int | None,
                     max_length: int, opset: int, force: bool, progress: Progress, name: str | None = None,
                     precision: str | None = None, objectives: dict[str, dict] | None = None,
                     default_objectives: dict[str, float] | None = None, gates: dict[str, dict] | None = None,
                     input_format: InputFormat | None = None, extra: dict | None = None) -> dict:
    """head_path: one head (None: features only, to train a head); or `objectives`, one head per objective:
    {name: the manifest's head entry, its file a path} (`--head NAME=FILE`: {"file": FILE}). gates, extra:
    see export_decoder."""
    gguf = check_gguf_file(Path(gguf), "policy model")
    arch, sizes = gguf_shape(gguf)
    heads, head_layers = read_heads(objectives or ({None: {"file": head_path}} if head_path else {}), gguf,
                                    sizes.get("embedding_length"))
    head, spec = next(iter(heads.values()), (None, {}))
    if heads and head_layers is None and n_layers is None:  # all layers would be read, silently, by a head of one
        raise UserError("the head files do not say which layer they read (no n_layers; an export's own head files "
                        "keep it in that export's manifest.json, graph.n_layers): give --layers N")
    if n_layers and head_layers and n_layers != head_layers:  # the heads were put on the wrong layer, silently
        raise UserError(f"the head files read layer {head_layers}, but --layers {n_layers} was given: leave "
                        "--layers out, or give heads trained on that layer")
    check_backbone(gguf, arch, sizes, n_layers or head_layers, "--layers" if n_layers else "the head's n_layers")
    n_layers = n_layers or head_layers
    model, tokenizer = load_gguf_backbone(gguf, progress)
    hidden = model.config.hidden_size
    if n_layers is None:
        n_layers = model.config.num_hidden_layers
    if head is None:
        head = LinearHead(np.zeros(hidden, np.float32), np.zeros(hidden, np.float32), 0.0)
    return export_decoder(
        model, tokenizer, head, n_layers, out, name=name or out.name,
        source={"gguf": gguf.name, "gguf_bytes": gguf.stat().st_size,
                **({"heads": {o: Path(s["file"]).name for o, s in objectives.items()}} if objectives
                   else {"head": Path(head_path).name if head_path else None})},
        input_format=input_format or InputFormat(), max_length=max_length, opset=opset, force=force,
        progress=progress, normalization=spec.get("normalization"), precision=precision,
        reference=hidden_state_reference(model, head, n_layers), objectives=heads if objectives else None,
        default_objectives=default_objectives, gates=gates, extra=extra,
    )
