"""Decoder reward model: a causal backbone (ONNX) with its keys/values cached between steps.

All k candidates are scored in ONE pass: they go in as one k-token sequence, all at the same
position, with an attention bias that lets each see the cached prefix and itself only. The
chosen candidate's keys/values are then copied into the cache (no replication of the prefix).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import InputFormat
from .base import finished_reply, load_tokenizer, truncate_left
from .gates import load_gates
from .heads import CombinedScorer, Heads, Objectives
from .onnx_session import make_session, provider_of, worth_a_gpu

NEG_INF = np.float32(-np.inf)


class KVCache:
    """Per-layer key and value buffers [capacity, kv_heads, head_dim]; slices [:n] are contiguous."""

    def __init__(self, n_layers: int, kv_heads: int, head_dim: int, capacity: int = 512):
        self.shape = (kv_heads, head_dim)
        self.n_layers = n_layers
        self.length = 0
        self.buffers = [np.zeros((capacity, *self.shape), np.float32) for _ in range(2 * n_layers)]

    def feeds(self) -> dict:
        return {name: buf[: self.length] for name, buf in zip(self.names, self.buffers)}

    @property
    def names(self) -> list[str]:
        return [f"past_{kind}_{i}" for i in range(self.n_layers) for kind in ("key", "value")]

    def append(self, new: list[np.ndarray], rows: slice | int = slice(None)) -> None:
        """Append new keys/values (rows of the graph's new_* outputs) at the end."""
        first = new[0][rows]
        n = 1 if first.ndim == 2 else first.shape[0]
        self._reserve(self.length + n)
        for buf, arr in zip(self.buffers, new):
            buf[self.length: self.length + n] = arr[rows]
        self.length += n

    def _reserve(self, needed: int) -> None:
        capacity = self.buffers[0].shape[0]
        if needed > capacity:
            size = max(needed, 2 * capacity)
            self.buffers = [np.concatenate([b, np.zeros((size - capacity, *self.shape), np.float32)])
                            for b in self.buffers]


def causal_bias(past: int, n: int) -> np.ndarray:
    """New tokens see the whole cache and the new tokens up to themselves."""
    bias = np.zeros((n, past + n), np.float32)
    bias[:, past:] = np.triu(np.full((n, n), NEG_INF), 1)
    return bias


def candidate_bias(past: int, k: int, taken: int = 0) -> np.ndarray:
    """`taken` tokens (causal), then k candidates at the next position: each candidate sees the cache,
    the taken tokens and itself, not the other candidates."""
    n = taken + k
    bias = np.full((n, past + n), NEG_INF, np.float32)
    bias[:taken, : past + taken] = causal_bias(past, taken)
    bias[taken:, : past + taken] = 0
    bias[taken + np.arange(k), past + taken + np.arange(k)] = 0
    return bias


class DecoderRewardModel(Objectives):
    kind = "decoder"

    def __init__(self, directory: Path, manifest: dict, threads: int, use_gpu: bool = True):
        self.directory, self.manifest = directory, manifest
        self.name = manifest.get("name", directory.name)
        graph = manifest["graph"]
        self.n_layers, self.kv_heads, self.head_dim = graph["n_layers"], graph["kv_heads"], graph["head_dim"]
        self.heads = Heads.load(directory, manifest, graph["hidden_size"])
        self.init_objectives(self.heads.names, manifest)
        self.gates = load_gates(directory, manifest, self.objectives, graph["hidden_size"])
        self.format = InputFormat.from_dict(manifest.get("input_format", {}))
        self.max_length = int(manifest.get("max_length", 512))
        self.vocab = manifest["vocab"]
        self.max_reply = self.max_length * 3 // 4  # a long reply still leaves room for some context
        self.tokenizer = load_tokenizer(directory / manifest["tokenizer"])
        self.session = make_session(directory / manifest["model"], threads, use_gpu and worth_a_gpu(manifest))
        self.provider = provider_of(self.session)
        names = {i.name for i in self.session.get_inputs()}
        if "attention_bias" not in names or "past_key_0" not in names:
            raise UserError(f"{directory / manifest['model']} is not an args-local decoder reward graph "
                            "(inputs attention_bias, past_key_*); export it with `args-local export reward`.")

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def check_policy_vocabulary(self, policy_name: str, policy_vocab_size: int, policy_probe_ids: list[int]):
        """The decoder RM reads the policy's token ids directly, so both must share one vocabulary."""
        if policy_vocab_size != self.vocab["size"] or list(policy_probe_ids) != list(self.vocab["probe_ids"]):
            raise UserError(
                f"the decoder reward model {self.name} (vocabulary of {self.vocab['size']} tokens) does not share "
                f"the tokenizer of the policy {policy_name} ({policy_vocab_size} tokens): a decoder RM must use "
                "the policy's vocabulary. Use an encoder reward model, which brings its own tokenizer "
                "(`args-local export reward SRC --kind encoder` exports any Hugging Face classifier as one).")

    def _run(self, cache: KVCache, ids, positions, bias):
        feeds = {"input_ids": np.asarray(ids, np.int64), "position_ids": np.asarray(positions, np.int64),
                 "attention_bias": bias, **cache.feeds()}
        hidden, *new = self.session.run(None, feeds)
        return hidden, new

    def _prefix_ids(self, conversation: list[dict], reply_len: int) -> list[int]:
        ids = self.encode(self.format.context_text(conversation) + self.format.reply_prefix)
        return truncate_left(ids, self.max_length - reply_len)

    def prefill(self, conversation: list[dict], reply_len: int = 0) -> KVCache:
        ids = self._prefix_ids(conversation, reply_len)
        cache = KVCache(self.n_layers, self.kv_heads, self.head_dim, capacity=len(ids) + 256)
        _, new = self._run(cache, ids, np.arange(len(ids)), causal_bias(0, len(ids)))
        cache.append(new)
        return cache

    def prompt_features(self, conversation: list[dict]) -> np.ndarray:
        """[2 * hidden]: [h_last, h_mean] of the prompt up to the reply's start (what gates read)."""
        ids = self._prefix_ids(conversation, 0)
        cache = KVCache(self.n_layers, self.kv_heads, self.head_dim, capacity=len(ids))
        hidden, _ = self._run(cache, ids, np.arange(len(ids)), causal_bias(0, len(ids)))
        return np.concatenate([hidden[-1], hidden.mean(axis=0)])

    def replies_hidden(self, conversation: list[dict], replies: list[str]) -> list[np.ndarray]:
        """[tokens, hidden] of each finished reply (end of turn included), the shared prefix run once.

        A reply longer than the RM reads keeps its beginning (then the end of turn): what ARGS
        read while writing it. Causal, so row t is also what the reply's first t + 1 tokens alone give."""
        encoded = [finished_reply(self.encode, self.format, r, self.max_reply) for r in replies]
        cache = self.prefill(conversation, reply_len=max(len(ids) for ids in encoded))
        past = cache.length
        return [self._run(cache, ids, past + np.arange(len(ids)), causal_bias(past, len(ids)))[0] for ids in encoded]

    def features(self, conversation: list[dict], replies: list[str]) -> np.ndarray:
        """[len(replies), 2 * hidden]: [h_last, h_mean] of each finished reply."""
        return np.stack([np.concatenate([h[-1], h.mean(axis=0)]) for h in self.replies_hidden(conversation, replies)])

    def reward_matrix(self, conversation: list[dict], replies: list[str]) -> np.ndarray:
        f = self.features(conversation, replies)
        d = f.shape[1] // 2
        return self.heads(f[:, :d], f[:, d:])

    def start(self, conversation: list[dict], weights: dict | None = None) -> CombinedScorer:
        w = self.weight_vector(weights)
        return CombinedScorer(DecoderCandidateScorer(self, self.prefill(conversation)), self.objectives, w,
                              self.warmup, self.delay)


class DecoderCandidateScorer:
    def __init__(self, rm: DecoderRewardModel, cache: KVCache):
        self.rm, self.cache = rm, cache
        self.reply_sum = np.zeros(rm.heads.hidden_size, np.float64)
        self.reply_len = 0
        self._last = None  # (hidden, new keys/values) of the last scored candidates
        self._skipped: list[int] = []  # tokens taken unscored, run as one block before the next score

    def score(self, ids: np.ndarray, pieces: list[bytes] | None = None) -> np.ndarray:
        """[k, objectives]: every head on the same pass. Tokens taken unscored since the last call
        ride in the same pass, ahead of the candidates: one graph run per scored step."""
        taken, self._skipped = self._skipped, []
        k, past, t = len(ids), self.cache.length, len(taken)
        positions = np.concatenate([past + np.arange(t), np.full(k, past + t)])
        hidden, new = self.rm._run(self.cache, np.concatenate([np.asarray(taken, np.int64), ids]), positions,
                                   candidate_bias(past, k, t))
        if t:
            self.cache.append(new, rows=slice(0, t))
            self.reply_sum += hidden[:t].sum(axis=0)
            self.reply_len += t
            hidden, new = hidden[t:], [a[t:] for a in new]
        self._last = (hidden, new)
        mean = (self.reply_sum + hidden) / (self.reply_len + 1)
        return self.rm.heads(hidden, mean)

    def accept(self, index: int) -> None:
        hidden, new = self._last
        self.cache.append(new, rows=slice(index, index + 1))
        self.reply_sum += hidden[index]
        self.reply_len += 1
        self._last = None

    def skip(self, token: int, piece: bytes | None = None) -> None:
        self._skipped.append(int(token))
