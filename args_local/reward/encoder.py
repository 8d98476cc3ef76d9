"""Encoder reward model: a sequence-classification model exported by optimum, with its own tokenizer.

It reads text, not the policy's token ids, so it works whatever tokenizer the policy has:
each step the reply so far plus each candidate's bytes are decoded and scored as a batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..formats import InputFormat
from ..text_stream import whole_characters
from .base import Normalization, load_tokenizer
from .heads import CombinedScorer, Objectives, objective_of
from .onnx_session import make_session, provider_of, worth_a_gpu

# Sequences per ONNX run. Attention memory grows with sequences x length², so a large k (up to
# settings.MAX_K candidates of up to max_length tokens) is scored in slices, not all at once.
BATCH = 32


class EncoderRewardModel(Objectives):
    """One objective: the classifier's output (named by the manifest's `objective`)."""

    kind = "encoder"

    def __init__(self, directory: Path, manifest: dict, threads: int, use_gpu: bool = True):
        self.directory, self.manifest = directory, manifest
        self.name = manifest.get("name", directory.name)
        self.format = InputFormat.from_dict(manifest.get("input_format", {}))
        self.max_length = int(manifest.get("max_length", 512))
        self.output_index = int(manifest.get("output_index", 0))
        self.pad_id = int(manifest.get("pad_id", 0))
        self.normalize = Normalization.from_manifest(manifest)
        self.init_objectives((objective_of(manifest),), manifest)
        self.tokenizer = load_tokenizer(directory / manifest.get("tokenizer", "tokenizer.json"))
        self.tokenizer.no_padding()
        self._strategy = "only_first" if self.format.pair else "longest_first"
        self.tokenizer.enable_truncation(self.max_length, strategy=self._strategy, direction="left")
        self.session = make_session(directory / manifest["model"], threads, use_gpu and worth_a_gpu(manifest))
        self.provider = provider_of(self.session)
        self.input_names = [i.name for i in self.session.get_inputs()]
        if "input_ids" not in self.input_names or not set(self.input_names) <= {"input_ids", "attention_mask", "token_type_ids"}:
            raise UserError(f"{directory / manifest['model']} has no input_ids input: not a text "
                            "classification model. Export it with `args-local export reward`.")

    def _inputs(self, context: str, replies: list[str]):
        if self.format.pair:
            batch = [(context, self.format.reply_prefix + r) for r in replies]
        else:
            batch = [context + self.format.reply_prefix + r for r in replies]
        special = self.format.before is None  # a chat template's layout brings its own special tokens
        try:
            encodings = self.tokenizer.encode_batch(batch, add_special_tokens=special)
        except Exception:  # the reply alone is longer than max_length: cut both from the left
            self.tokenizer.enable_truncation(self.max_length, strategy="longest_first", direction="left")
            encodings = self.tokenizer.encode_batch(batch, add_special_tokens=special)
            self.tokenizer.enable_truncation(self.max_length, strategy=self._strategy, direction="left")
        width = max(len(e.ids) for e in encodings)
        arrays = {name: np.zeros((len(batch), width), np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
        arrays["input_ids"][:] = self.pad_id  # a decoder classifier reads its last token that is not this id
        for row, e in enumerate(encodings):
            n = len(e.ids)
            arrays["input_ids"][row, :n] = e.ids
            arrays["attention_mask"][row, :n] = e.attention_mask
            arrays["token_type_ids"][row, :n] = e.type_ids
        return {name: arrays[name] for name in self.input_names}

    def raw_scores(self, context: str, replies: list[str]) -> np.ndarray:
        """[replies]: the normalised reward of the one objective."""
        rows = []
        for start in range(0, len(replies), BATCH):
            batch = replies[start: start + BATCH]
            logits = self.session.run(None, self._inputs(context, batch))[0]
            rows.append(logits.reshape(len(batch), -1)[:, self.output_index])
        return self.normalize(np.concatenate(rows))

    def reward_matrix(self, conversation: list[dict], replies: list[str]) -> np.ndarray:
        context = self.format.context_text(conversation)
        return self.raw_scores(context, [self.format.finished_text(r) for r in replies])[:, None]

    def start(self, conversation: list[dict], weights: dict | None = None) -> CombinedScorer:
        scorer = EncoderCandidateScorer(self, self.format.context_text(conversation))
        return CombinedScorer(scorer, self.objectives, self.weight_vector(weights), self.warmup, self.delay)


class EncoderCandidateScorer:
    def __init__(self, rm: EncoderRewardModel, context: str):
        self.rm, self.context = rm, context
        self.reply = b""
        self._pieces: list[bytes] = []

    def score(self, ids: np.ndarray, pieces: list[bytes]) -> np.ndarray:
        self._pieces = pieces
        # a candidate may end inside a character: a U+FFFD for its half is another word to many tokenizers
        texts = [self.rm.format.reply_so_far(whole_characters(self.reply + p)) for p in pieces]
        return self.rm.raw_scores(self.context, texts)[:, None]  # [k, 1]: the one objective

    def accept(self, index: int) -> None:
        self.reply += self._pieces[index]

    def skip(self, token: int, piece: bytes) -> None:
        self.reply += piece
