"""Logits processors: small rules that reshape the policy's logits before any decoding rule sees them.

Like Hugging Face's LogitsProcessor: each is one class with `__call__(reply_tokens, logits) -> logits`,
they compose in a list, and they run in every mode, so ARGS and its baselines see the same policy.
Only the reply's own tokens count as history: echoing the user's words is not repetition.
"""

from __future__ import annotations

import numpy as np


class RepetitionPenalty:
    """CTRL's penalty (Keskar et al., 2019): tokens seen in the last `window` reply tokens have
    positive logits divided by `penalty` and negative ones multiplied by it."""

    def __init__(self, penalty: float, window: int = 64):
        self.penalty, self.window = penalty, window

    def __call__(self, reply_tokens: list[int], logits: np.ndarray) -> np.ndarray:
        seen = np.unique(np.asarray(reply_tokens[-self.window:], dtype=np.int64))
        if seen.size:
            values = logits[seen]
            logits[seen] = np.where(values > 0, values / self.penalty, values * self.penalty)
        return logits


class NoRepeatNGram:
    """Bans any token that would complete an n-gram the reply already contains (HF's no_repeat_ngram_size)."""

    def __init__(self, n: int):
        self.n = n

    def banned(self, reply_tokens: list[int]) -> list[int]:
        n = self.n
        if len(reply_tokens) < n - 1:
            return []
        prefix = tuple(reply_tokens[len(reply_tokens) - n + 1:])
        return [reply_tokens[i + n - 1] for i in range(len(reply_tokens) - n + 1)
                if tuple(reply_tokens[i:i + n - 1]) == prefix]

    def __call__(self, reply_tokens: list[int], logits: np.ndarray) -> np.ndarray:
        banned = self.banned(reply_tokens)
        if banned:
            logits[banned] = -np.inf
        return logits


class PresencePenalty:
    """OpenAI's presence_penalty: subtracted once from the logit of each token the reply holds."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, reply_tokens: list[int], logits: np.ndarray) -> np.ndarray:
        logits[np.unique(np.asarray(reply_tokens, dtype=np.int64))] -= self.penalty
        return logits


class FrequencyPenalty:
    """OpenAI's frequency_penalty: subtracted from a token's logit once for each time the reply holds it."""

    def __init__(self, penalty: float):
        self.penalty = penalty

    def __call__(self, reply_tokens: list[int], logits: np.ndarray) -> np.ndarray:
        seen, counts = np.unique(np.asarray(reply_tokens, dtype=np.int64), return_counts=True)
        logits[seen] -= self.penalty * counts
        return logits


class LogitBias:
    """OpenAI's logit_bias: a fixed amount added to the logits of chosen tokens, whatever the reply holds."""

    def __init__(self, biases: tuple[tuple[int, float], ...]):
        self.ids = np.array([token for token, _ in biases], dtype=np.int64)
        self.biases = np.array([bias for _, bias in biases])

    def __call__(self, reply_tokens: list[int], logits: np.ndarray) -> np.ndarray:
        logits[self.ids] += self.biases
        return logits


def processors_for(settings) -> list:
    """The processors a DecodingSettings asks for, in the order they apply."""
    chain = []
    if settings.repeat_penalty != 1.0:
        chain.append(RepetitionPenalty(settings.repeat_penalty))
    if settings.presence_penalty:
        chain.append(PresencePenalty(settings.presence_penalty))
    if settings.frequency_penalty:
        chain.append(FrequencyPenalty(settings.frequency_penalty))
    if settings.logit_bias:
        chain.append(LogitBias(settings.logit_bias))
    if settings.no_repeat_ngram:  # last: a banned token stays banned, whatever bias the others gave it
        chain.append(NoRepeatNGram(settings.no_repeat_ngram))
    return chain


def apply_all(chain: list, reply_tokens: list[int], logits: np.ndarray) -> np.ndarray:
    for processor in chain:
        logits = processor(reply_tokens, logits)
    return logits
