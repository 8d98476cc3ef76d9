"""`export reward EARLIER_EXPORT --out DIR`: a model args-local exported, exported again (to another
precision, say), keeping everything it had: its heads with their normalisation, warm-ups and delays,
its gates, default weights, layer, input format and length. Given head files alone, an export lost the
layer (it needed --layers) and the gates and warm-ups, which only its manifest holds.

A decoder exported --from-gguf is rebuilt from that GGUF (the guide: from the built-in policy); its
graph cannot be converted again from an int8 or fp16 copy without losing what fp32 had.
"""

from __future__ import annotations

from pathlib import Path

from .. import home
from ..errors import UserError
from ..formats import InputFormat
from ..reward.gates import gate_specs
from ..reward.heads import head_specs
from .common import Progress

# What a re-export writes anew; every other manifest member is carried over as it is.
WRITTEN = {"format_version", "kind", "name", "model", "tokenizer", "head", "heads", "normalization", "objective",
           "input_format", "max_length", "graph", "vocab", "source", "versions", "validation", "export_seconds",
           "default_objectives", "gates"}


def source_gguf(src: Path, manifest: dict, given: str | None) -> Path:
    """The GGUF an export was made from: --from-gguf, else the built-in policy where it is that file. Its heads
    read that model's features, so another GGUF (by name or size) is refused; so is a model not made from one."""
    if manifest["kind"] == "gguf-embedding":
        raise UserError(f"{src} runs its GGUF as it is (a gguf-embedding model): there is nothing to export")
    if manifest["kind"] != "decoder" or "gguf" not in (manifest.get("source") or {}):
        raise UserError(f"{src} is an args-local {manifest['kind']} model exported from a Hugging Face model "
                        "directory: export that directory again (args-local export reward DIR --out OUT)")
    name, size = manifest["source"]["gguf"], manifest["source"].get("gguf_bytes")
    gguf = Path(given).expanduser() if given else home.default_policy()
    if gguf.is_file() and gguf.name == name and size in (None, gguf.stat().st_size):
        return gguf
    if given:
        raise UserError(f"{given} is not the GGUF {src} was exported from ({name}"
                        + (f", {size} bytes" if size else "") + "): its heads read that model's features; "
                        "give that file with --from-gguf")
    raise UserError(f"{src} was exported from {name}: give that GGUF with --from-gguf PATH/{name}")


def reexport(src: Path, manifest: dict, gguf: Path, out: Path, *, precision: str | None, opset: int, force: bool,
             progress: Progress) -> dict:
    """gguf: source_gguf's."""
    from .from_gguf import export_from_gguf

    heads = {name: {**spec, "file": src / spec["file"]} for name, spec in head_specs(manifest).items()}
    gates = {name: {**spec, "file": src / spec["file"]} for name, spec in gate_specs(manifest).items()}
    return export_from_gguf(gguf, None, out, n_layers=manifest["graph"]["n_layers"],
                            max_length=manifest.get("max_length", 512), opset=opset, force=force, progress=progress,
                            precision=precision, objectives=heads, default_objectives=manifest.get("default_objectives"),
                            gates=gates, input_format=InputFormat.from_dict(manifest.get("input_format") or {}),
                            extra={key: value for key, value in manifest.items() if key not in WRITTEN})
