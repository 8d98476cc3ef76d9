"""A judge reward model on any GGUF backbone, run by llama.cpp: hidden states + a linear head.

It scores finished replies only (eval, score, best-of-n); ARGS guidance needs a decoder or
encoder RM. Being another model family than the guide, it can judge ARGS without sharing
the guide's blind spots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import llama_build
from ..errors import UserError
from ..formats import InputFormat
from ..policy import check_gguf_file
from ..quiet import quiet_stderr
from .base import finished_reply, truncate_left
from .heads import Heads, Objectives, head_specs


class GgufEmbeddingRewardModel(Objectives):
    kind = "gguf-embedding"

    def __init__(self, directory: Path, manifest: dict, threads: int, use_gpu: bool = True):
        llama_cpp = self._lib = llama_build.load_llama_cpp()
        self.directory, self.manifest = directory, manifest
        self.name = manifest.get("name", directory.name)
        self.format = InputFormat.from_dict(manifest.get("input_format", {}))
        self.max_length = int(manifest.get("max_length", 384))
        path = check_gguf_file(directory / manifest["model"], "judge model")
        proven = llama_build.load_options(path)
        try:
            with quiet_stderr(), llama_build.model_params(**proven):
                self._llm = llama_cpp.Llama(
                    model_path=str(path), n_ctx=self.max_length + 8, n_batch=self.max_length + 8,
                    n_ubatch=self.max_length + 8, n_seq_max=1, n_threads=threads, n_threads_batch=threads,
                    embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
                    n_gpu_layers=-1 if use_gpu and llama_cpp.llama_supports_gpu_offload() else 0, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"could not load judge model {path}: {e}") from None
        self.provider = "GPU (llama.cpp)" if self._llm.model_params.n_gpu_layers else "CPU"
        self.hidden_size = self._llm.n_embd()
        self.heads = Heads.load(directory, manifest, self.hidden_size) if head_specs(manifest) else None
        self.init_objectives(self.heads.names if self.heads else (), manifest)

    def encode(self, text: str, bos: bool = False) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)

    def _prefill(self, ids: list[int]) -> None:
        """Cache the prefix. Embeddings off: otherwise llama.cpp outputs every position through the
        262k-word output layer, a third of the judge's time, for states we never read."""
        llama_cpp, llm = self._lib, self._llm
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm._ctx.ctx), True)
        llama_cpp.llama_set_embeddings(llm._ctx.ctx, False)
        try:
            llm._batch.set_batch(batch=ids, n_past=0, logits_all=False)
            llm._ctx.decode(llm._batch)
        finally:
            llama_cpp.llama_set_embeddings(llm._ctx.ctx, True)

    def _decode(self, ids: list[int], n_past: int) -> np.ndarray:
        """Hidden states (final layer, normed) of ids placed after n_past cached tokens."""
        llama_cpp, llm = self._lib, self._llm
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm._ctx.ctx), 0, n_past, -1)
        llm._batch.set_batch(batch=ids, n_past=n_past, logits_all=True)  # embeddings need every position out
        llm._ctx.decode(llm._batch)
        ptr = llama_cpp.llama_get_embeddings(llm._ctx.ctx)
        return np.ctypeslib.as_array(ptr, shape=(len(ids), self.hidden_size))

    def features(self, conversation: list[dict], replies: list[str]) -> np.ndarray:
        """[len(replies), 2 * hidden]: [h_last, h_mean] of each finished reply (shared prefix run once)."""
        max_reply = self.max_length * 3 // 4  # a long reply still leaves room for some context
        reply_ids = [finished_reply(self.encode, self.format, r, max_reply) for r in replies]
        prefix = self.encode(self.format.context_text(conversation) + self.format.reply_prefix, bos=True)
        keep = self.max_length - max(len(r) for r in reply_ids)
        prefix = prefix[:1] + truncate_left(prefix[1:], keep - 1)
        self._prefill(prefix)
        rows = []
        for ids in reply_ids:
            hidden = self._decode(ids, len(prefix))
            rows.append(np.concatenate([hidden[-1], hidden.mean(axis=0)]))
        return np.stack(rows)

    def reward_matrix(self, conversation: list[dict], replies: list[str]) -> np.ndarray:
        if self.heads is None:
            raise UserError(f"{self.directory} has no head: it can give features but not rewards")
        f = self.features(conversation, replies)
        d = f.shape[1] // 2
        return self.heads(f[:, :d], f[:, d:])

    def start(self, conversation, weights=None):
        raise UserError(f"{self.name} is a judge ({self.kind}): it scores finished replies only. "
                        "Guide ARGS with a decoder or encoder reward model.")
