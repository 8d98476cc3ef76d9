"""The one settings object that drives decoding (like vLLM's SamplingParams)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .errors import UserError

MODES = ("args-greedy", "args-stochastic", "greedy", "top-k", "nucleus", "best-of-n")
REWARD_GUIDED = ("args-greedy", "args-stochastic", "best-of-n")
# A step holds k candidates at once: the decoder RM's attention bias is k x (context + k) floats and
# its new keys/values k rows per layer, so k near the vocabulary size needs gigabytes. 1024 keeps a
# step in megabytes, far above the k the ARGS paper found useful (10-40).
MAX_K = 1024
MAX_SEED = 2**63 - 1  # numpy's generators take any non-negative integer; this keeps it one int64


@dataclass(frozen=True)
class DecodingSettings:
    mode: str = "args-greedy"
    k: int = 10  # candidates per step (ARGS, top-k sampling)
    w: float = 1.5  # reward weight in score = logit + w * reward
    temperature: float = 1.0  # ARGS-stochastic, top-k and nucleus sampling
    top_p: float = 0.9  # nucleus sampling
    n: int = 4  # best-of-n samples
    max_new_tokens: int = 128
    # >1 discourages tokens already in the reply (1 = off). On by default, as in llama.cpp: small
    # policies loop, and the reward model does not see loops as bad (BENCHMARKS.md, alignment)
    repeat_penalty: float = 1.2
    no_repeat_ngram: int = 0  # ban repeating any n-gram of this size in the reply (0 = off)
    adaptive: float = 0.0  # ARGS: skip the RM where the policy's top token has at least this probability (0 = off)
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    @property
    def uses_reward(self) -> bool:
        return self.mode in REWARD_GUIDED

    def validated(self, vocab_size: int | None = None) -> "DecodingSettings":
        """Return self, or raise UserError naming the first bad field and its allowed range."""
        if self.mode not in MODES:
            raise UserError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if not 1 <= self.k <= MAX_K:
            raise UserError(f"k must be at least 1 and at most {MAX_K} (got {self.k})")
        if vocab_size is not None and self.k > vocab_size:
            raise UserError(f"k must be at most the vocabulary size {vocab_size} (got {self.k})")
        if not math.isfinite(self.w):
            raise UserError(f"w must be a finite number (got {self.w})")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise UserError(f"temperature must be >= 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top-p must be in (0, 1] (got {self.top_p})")
        if self.n < 1:
            raise UserError(f"n (best-of-n samples) must be at least 1 (got {self.n})")
        if not math.isfinite(self.repeat_penalty) or self.repeat_penalty <= 0:
            raise UserError(f"repeat-penalty must be a positive number, 1 for off (got {self.repeat_penalty})")
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1:
            raise UserError(f"no-repeat-ngram must be 0 (off) or at least 2 (got {self.no_repeat_ngram})")
        if not 0 <= self.adaptive < 1:
            raise UserError(f"adaptive must be a probability in [0, 1), 0 for off (got {self.adaptive})")
        if self.max_new_tokens < 1:
            raise UserError(f"max-new-tokens must be at least 1 (got {self.max_new_tokens})")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be a non-negative integer (got {self.seed})")
        return self

    def with_(self, **changes) -> "DecodingSettings":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d
