"""The reward-model directory format: ONNX file(s), tokenizer, head, and manifest.json.

manifest.json (written by `args-local export`, read here):
  format_version  1
  kind            "decoder" | "encoder" | "gguf-embedding"
  name            short name shown in the UI
  model           file name of the ONNX graph (or the GGUF for gguf-embedding)
  tokenizer       tokenizer.json (decoder, encoder)
  input_format    how (conversation, reply) become text: see args_local.formats
  max_length      tokens the RM reads; longer inputs lose their oldest tokens
  normalization   {"mean", "std"}: reward = (raw - mean) / std, measured on sample replies
  head            decoder / gguf-embedding: .npz with w_last, w_mean, bias over [last, reply-mean]
  objective       optional name of a single-head (or encoder) model's objective, e.g. "harmless"
  heads           instead of head + normalization, one head per objective on the same backbone:
                  {"harmless": {"file": "head.npz", "normalization": {"mean", "std"}}, "helpful": {...}}
                  optional "warmup_tokens" per head: its weight grows from 1/N to 1 over the reply's first
                  N tokens (a head never fitted on such short prefixes; reward/heads.py, warmup_factor),
                  and optional "delay_tokens": its weight is 0 over the reply's first N tokens
  default_objectives  {objective: weight}: reward = Σ weight · normalised reward (default: 1 each)
  gates           {objective: {"file": "gate-NAME.npz"}}: that weight times a prompt classifier (gates.py)
  output_index    encoder: which logit is the reward
  pad_id          encoder: the token id shorter inputs of a batch are padded with (default 0)
  vocab           decoder: {"size", "probe_text", "probe_ids"}: checked against the policy
  graph           decoder: {"n_layers", "kv_heads", "head_dim", "hidden_size"}
  source, validation, versions: provenance, shown by `args-local models`
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from ..home import is_built_in_reward, reward_model_dir
from ..paths import input_dir

FORMAT_VERSION = 1
KINDS = ("decoder", "encoder", "gguf-embedding")
MANIFEST = "manifest.json"
# What each kind's loader reads without a default, and its type ({...}: an object with these members).
_COMMON = {"format_version": (int, type(None)), "model": str}
REQUIRED = {
    "decoder": {**_COMMON, "tokenizer": str, "vocab": {"size": int, "probe_ids": list},
                "graph": {"n_layers": int, "kv_heads": int, "head_dim": int, "hidden_size": int}},
    "encoder": {**_COMMON, "tokenizer": (str, type(None))},
    "gguf-embedding": _COMMON,
}


def read_manifest(directory: str | Path) -> dict:
    with built_in_hint(reward_model_dir(directory)):
        return _read_manifest(directory)


@contextmanager
def built_in_hint(directory: Path):
    """A UserError about a built-in reward model also says what rebuilds it: its user exported nothing.
    (Not about the policy or the embedder given as --reward: nothing is damaged, the choice is wrong.)"""
    try:
        yield
    except UserError as e:
        if is_built_in_reward(directory):
            raise UserError(f"{str(e).rstrip('.')}. It is a built-in model: tools/setup.sh rebuilds it.") from None
        raise


def _read_manifest(directory: str | Path) -> dict:
    directory = input_dir(reward_model_dir(directory), "reward model directory",
                          " (`args-local models` lists those built and exported into the models folder); run "
                          "tools/setup.sh to build the default reward models, or export one with "
                          "`args-local export reward SRC --out DIR`.")
    path = directory / MANIFEST
    if not path.is_file():
        raise UserError(f"{directory} has no {MANIFEST}: it is not an args-local reward model. "
                        "Export it with `args-local export reward SRC --out DIR`.")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); re-export the model with --force.") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path} is not a manifest (a JSON object); re-export the model with --force.")
    kind = manifest.get("kind")
    if kind not in KINDS:
        raise UserError(f"{path}: unknown reward model kind {kind!r}; supported: {', '.join(KINDS)}")
    wrong = wrong_members(manifest, REQUIRED[kind])  # the loaders then index these without a check
    if wrong:
        raise UserError(f"{path}: {', '.join(wrong)} missing or of the wrong type; the manifest is damaged or "
                        "not args-local's: re-export the model with --force.")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer args-local (format {manifest['format_version']}); upgrade.")
    from .heads import head_specs

    for name in [manifest.get("model", "")] + [spec["file"] for spec in head_specs(manifest).values()]:
        if not (directory / name).is_file():
            raise UserError(f"{directory}: the file named in the manifest ({name!r}) is missing; "
                            "re-export the model.")
    return manifest


def wrong_members(manifest: dict, required: dict, prefix: str = "") -> list[str]:
    """The names in REQUIRED that manifest lacks or holds a value of another type under ('graph.n_layers')."""
    wrong = []
    for key, want in required.items():
        value = manifest.get(key)
        if isinstance(want, dict):
            wrong += wrong_members(value if isinstance(value, dict) else {}, want, f"{prefix}{key}.")
        elif not isinstance(value, want):
            wrong.append(prefix + key)
    return wrong


def write_manifest(directory: Path, manifest: dict) -> None:
    manifest = {"format_version": FORMAT_VERSION, **manifest}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def precision_of(manifest: dict) -> str | None:
    """An export's weights: int8 or fp16 where its validation checked such a copy, else fp32 (a GGUF's: its own)."""
    if manifest["kind"] == "gguf-embedding":
        return None
    return next((p for p in ("int8", "fp16") if p in (manifest.get("validation") or {})), "fp32")


def readable(fields: dict) -> str:
    """A manifest's nested fields as `key value, …` (one line where it fits, not a Python dict)."""
    return ", ".join(f"{k} {readable(v) if isinstance(v, dict) else v}" for k, v in fields.items() if v is not None)


def validation_summary(validation: dict) -> str:
    """What the export checked: how close onnxruntime came to torch, and what a smaller precision kept."""
    diffs = [v for k, v in validation.items() if k.startswith("max_") and isinstance(v, (int, float))]
    parts = [f"onnxruntime matches torch within {max(diffs):.1e}"] if diffs else []
    for precision in ("fp16", "int8"):
        r = validation.get(precision)
        if isinstance(r, dict) and "ranking_agreement" in r:
            way = f" ({r['way']})" if r.get("way") else ""
            parts.append(f"{precision}{way} ranks {r['ranking_agreement']:.1%} of candidate pairs as fp32 does, "
                         f"{r['ms_per_step']:g} ms a step at export")
    return "; ".join(parts) or readable(validation)
