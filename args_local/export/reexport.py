"""`export reward EARLIER_EXPORT --out DIR`: a model args-local exported, exported again (to another
precision, say), keeping everything it had: its heads with their normalisation, warm-ups and delays,
its gates, default weights, layer, input format and length. Given head files alone, an export lost the
layer (it needed --layers) and the gates and warm-ups, which only its manifest holds.

A decoder exported --from-gguf is rebuilt from that GGUF (the guide: from the built-in policy). A model
exported from a Hugging Face directory has its fp32 graph converted to int8 or fp16, as its first export
would have; from an int8 or fp16 copy, it would lose what fp32 had.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import home
from ..errors import UserError
from ..formats import InputFormat
from ..policy import check_gguf_file
from ..reward.gates import gate_specs
from ..reward.heads import head_specs
from ..reward.manifest import precision_of, write_manifest
from .common import Progress, staged_output

# What a re-export writes anew; every other manifest member is carried over as it is.
WRITTEN = {"format_version", "kind", "name", "model", "tokenizer", "head", "heads", "normalization", "objective",
           "input_format", "max_length", "graph", "vocab", "source", "versions", "validation", "export_seconds",
           "default_objectives", "gates"}


def source_gguf(src: Path, manifest: dict, given: str | None, precision: str | None) -> Path | None:
    """The GGUF an export was made from: --from-gguf, else the built-in policy where it is that file. Its heads
    read that model's features, so another GGUF (by name or size) is refused. None: a model exported from a
    Hugging Face directory, converted from its own fp32 graph (the directory may be gone: setup builds the
    encoder in a temporary one)."""
    if manifest["kind"] == "gguf-embedding":
        raise UserError(f"{src} runs its GGUF as it is (a gguf-embedding model): there is nothing to export")
    if "gguf" not in (manifest.get("source") or {}):
        was = precision_of(manifest)
        if given:
            raise UserError(f"--from-gguf cannot be used with {src}: it was exported from a Hugging Face model")
        if was != "fp32":  # an int8 or fp16 graph converted again loses what fp32 still had
            raise UserError(f"{src} is {was} already: export its fp32 export to another precision instead, or the "
                            "Hugging Face model it came from")
        if not precision:
            raise UserError(f"{src} is fp32 already: give --quantize int8 or --fp16 to export it to another precision")
        return None
    name, size = manifest["source"]["gguf"], manifest["source"].get("gguf_bytes")
    gguf = check_gguf_file(Path(given), "--from-gguf") if given else home.default_policy()  # missing: said so
    if gguf.is_file() and gguf.name == name and size in (None, gguf.stat().st_size):
        return gguf
    if given:
        raise UserError(f"{given} is not the GGUF {src} was exported from ({name}"
                        + (f", {size} bytes" if size else "") + "): its heads read that model's features; "
                        "give that file with --from-gguf")
    raise UserError(f"{src} was exported from {name}: give that GGUF with --from-gguf PATH/{name}")


def reexport(src: Path, manifest: dict, gguf: Path | None, out: Path, *, precision: str | None, opset: int,
             force: bool, progress: Progress) -> dict:
    """gguf: source_gguf's."""
    if gguf is None:
        return convert_again(src, manifest, out, precision=precision, force=force, progress=progress)
    from .from_gguf import export_from_gguf

    heads = {name: {**spec, "file": src / spec["file"]} for name, spec in head_specs(manifest).items()}
    gates = {name: {**spec, "file": src / spec["file"]} for name, spec in gate_specs(manifest).items()}
    return export_from_gguf(gguf, None, out, n_layers=manifest["graph"]["n_layers"],
                            max_length=manifest.get("max_length", 512), opset=opset, force=force, progress=progress,
                            precision=precision, objectives=heads, default_objectives=manifest.get("default_objectives"),
                            gates=gates, input_format=InputFormat.from_dict(manifest.get("input_format") or {}),
                            extra={key: value for key, value in manifest.items() if key not in WRITTEN})


def convert_again(src: Path, manifest: dict, out: Path, *, precision: str, force: bool, progress: Progress) -> dict:
    """The fp32 graph converted to `precision` beside every other file and member as it was, under the ranking
    check a first export makes (a decoder's int8 without smoothing, which needs the torch model)."""
    from ..reward.decoder import DecoderRewardModel
    from ..reward.encoder import EncoderRewardModel
    from .decoder import candidate_rewards
    from .encoder import ENCODER_WAYS, candidate_scores
    from .precision import convert_checked, fp16, int8_dynamic_per_channel, int8_weights

    files = [manifest["model"], manifest.get("tokenizer"), *(spec["file"] for spec in head_specs(manifest).values()),
             *(spec["file"] for spec in gate_specs(manifest).values())]
    ways = (ENCODER_WAYS if manifest["kind"] == "encoder" else
            {"fp16": {"fp16": fp16}, "int8": {"dynamic": int8_dynamic_per_channel, "weight-only": int8_weights}})[precision]
    model, scores = ((EncoderRewardModel, candidate_scores) if manifest["kind"] == "encoder"
                     else (DecoderRewardModel, candidate_rewards))
    model(src, manifest, threads=2, use_gpu=False)  # a damaged one is named as SRC, not as the folder built
    with staged_output(out, force, (src,)) as stage:
        for name in filter(None, files):
            shutil.copyfile(src / name, stage / name)
        manifest = {**manifest, "name": out.name, "model": "model.onnx"}
        (stage / files[0]).rename(stage / "model.onnx")  # where convert_checked looks
        manifest["validation"] = {**(manifest.get("validation") or {}), precision: convert_checked(
            stage, manifest, precision, ways, lambda m: scores(model(stage, m, threads=2, use_gpu=False)), progress,
            fp32=f"Keep {src}, its fp32 export")}
        write_manifest(stage, manifest)
    return manifest
