"""The one settings object that drives decoding (like vLLM's SamplingParams)."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, replace

from .errors import UserError
from .user_text import checked_text

MODES = ("args-greedy", "args-stochastic", "greedy", "top-k", "nucleus", "best-of-n")
REWARD_GUIDED = ("args-greedy", "args-stochastic", "best-of-n")
# A step holds k candidates at once: the decoder RM's attention bias is k x (context + k) floats and
# its new keys/values k rows per layer, so k near the vocabulary size needs gigabytes. 1024 keeps a
# step in megabytes, far above the k the ARGS paper found useful (10-40).
MAX_K = 1024
MAX_SEED = 2**63 - 1  # numpy's generators take any non-negative integer; this keeps it one int64
# The policy's context (n_ctx): llama.cpp rounds one below 256 tokens up to 256, while llama-cpp-python
# keeps its token buffer at the size asked for, and fails on the first prompt longer; above 2**17 the KV
# cache alone needs gigabytes even for a small model, and no built-in model was trained on more.
MIN_N_CTX, MAX_N_CTX = 256, 131072
INTEGER_FIELDS = ("k", "n", "max_new_tokens", "no_repeat_ngram", "seed")
NUMBER_FIELDS = ("w", "temperature", "top_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "adaptive",
                 "min_p")
MAX_PENALTY, MAX_LOGIT_BIAS = 2.0, 100.0  # OpenAI's ranges
MAX_THREADS = 512


def check_load_options(n_ctx=None, threads=None, rm_threads=None, n_gpu_layers=None) -> None:
    """Refuse a context size, thread count or GPU layer count the models cannot load with (None: the default)."""
    for name, value, low, high in (("n_ctx", n_ctx, MIN_N_CTX, MAX_N_CTX), ("threads", threads, 1, MAX_THREADS),
                                   ("rm_threads", rm_threads, 1, MAX_THREADS)):
        if value is not None and (not _is_integer(value) or not low <= value <= high):
            raise UserError(f"{name} must be between {low} and {high}{' tokens' if name == 'n_ctx' else ''} "
                            f"(got {value!r})")
    if n_gpu_layers is not None and (not _is_integer(n_gpu_layers) or n_gpu_layers < -1):
        raise UserError(f"n_gpu_layers must be -1 (all), 0 (none) or a number of layers (got {n_gpu_layers!r})")


def check_reply_room(max_new_tokens: int, n_ctx: int) -> None:
    """A reply as long as the context leaves no room for any prompt: every one would fail to fit."""
    if max_new_tokens >= n_ctx:
        raise UserError(f"max_new_tokens {max_new_tokens} leaves no room for the prompt in the {n_ctx}-token "
                        "context; lower it or raise n_ctx")


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_pairs(value):
    """A dict or a list of lists as the tuple of pairs the settings hold; anything else as it is (validated() names it)."""
    if isinstance(value, dict):
        return tuple(value.items())
    if isinstance(value, list):
        return tuple(tuple(p) if isinstance(p, list) else p for p in value)
    return value


def _token_id(key):
    return int(key) if _is_integer(key) or (isinstance(key, str) and key.isascii() and key.isdigit()) else key


def _are_pairs(objectives) -> bool:
    return isinstance(objectives, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in objectives)


@dataclass(frozen=True)
class DecodingSettings:
    """How to decode a reply: the mode (args-greedy, args-stochastic, greedy, top-k, nucleus, best-of-n)
    and its knobs, checked when a reply starts (a UserError names a bad one). objectives may be a dict,
    stop one string; with_(**changes) is a changed copy."""

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
    # OpenAI's: subtracted from the logit of each token the reply holds, once (presence) or per occurrence
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # OpenAI's: (token id, bias) pairs, each bias added to its token's logit (-100 bans it, 100 all but forces it)
    logit_bias: tuple[tuple[int, float], ...] = ()
    adaptive: float = 0.0  # ARGS: skip the RM where the policy's top token has at least this probability (0 = off)
    # ARGS: of the k candidates, keep those at least this many times as likely as the top one (0 = all k).
    # A speed knob: where one is left the RM is skipped (BENCHMARKS.md measures what it costs).
    min_p: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
    # reward = Σ weight · reward of each objective (head) of the reward model, e.g.
    # (("helpful", 1.0), ("harmless", 0.5)); objectives not named get 0; empty: the model's defaults
    objectives: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        if isinstance(self.stop, str):  # stop="###" is one stop string, not one per character
            object.__setattr__(self, "stop", (self.stop,))
        elif isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        # numpy's numbers (a k from np.arange, a weight of np.float32) as Python's, so that to_dict() is JSON
        for name in INTEGER_FIELDS + NUMBER_FIELDS:
            value, integer = getattr(self, name), name in INTEGER_FIELDS
            if (_is_integer if integer else _is_number)(value):
                object.__setattr__(self, name, int(value) if integer else float(value))
        # the Python API may pass {"helpful": 1.0, ...} and {token_id: bias}, or pairs as JSON and YAML write
        # them, [["helpful", 1.0]]; OpenAI's logit_bias is {"token id": bias}, as JSON's keys are strings
        for name, key_of in (("objectives", lambda key: key), ("logit_bias", _token_id)):
            pairs = _as_pairs(getattr(self, name))
            if _are_pairs(pairs):
                pairs = tuple((key_of(key), float(w) if _is_number(w) else w) for key, w in pairs)
            object.__setattr__(self, name, pairs)

    @property
    def uses_reward(self) -> bool:
        return self.mode in REWARD_GUIDED

    def validated(self, vocab_size: int | None = None) -> "DecodingSettings":
        """Return self, or raise UserError naming the first bad field and its allowed range."""
        self._validate_types()
        if self.mode not in MODES:
            raise UserError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if not 1 <= self.k <= MAX_K:
            raise UserError(f"k must be at least 1 and at most {MAX_K} (got {self.k})")
        if vocab_size is not None and self.k > vocab_size:
            raise UserError(f"k must be at most the vocabulary size {vocab_size} (got {self.k})")
        if not math.isfinite(self.w) or self.w < 0:  # a negative w would steer towards the lowest reward
            raise UserError(f"w must be a finite number >= 0, 0 for the policy alone (got {self.w})")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise UserError(f"temperature must be a finite number >= 0 (got {self.temperature})")
        if not 0 <= self.top_p <= 1:  # 0: the most likely token alone, as OpenAI's top_p 0
            raise UserError(f"top_p must be in [0, 1] (got {self.top_p})")
        if self.n < 1:
            raise UserError(f"n (best-of-n samples) must be at least 1 (got {self.n})")
        if not math.isfinite(self.repeat_penalty) or self.repeat_penalty <= 0:
            raise UserError(f"repeat_penalty must be a positive number, 1 for off (got {self.repeat_penalty})")
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1:
            raise UserError(f"no_repeat_ngram must be 0 (off) or at least 2 (got {self.no_repeat_ngram})")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -MAX_PENALTY <= getattr(self, name) <= MAX_PENALTY:
                raise UserError(f"{name} must be a number from -{MAX_PENALTY:g} to {MAX_PENALTY:g}, 0 for off "
                                f"(got {getattr(self, name)})")
        if not 0 <= self.adaptive < 1:
            raise UserError(f"adaptive must be a probability in [0, 1), 0 for off (got {self.adaptive})")
        if not 0 <= self.min_p < 1:
            raise UserError(f"min_p must be in [0, 1), 0 for off (got {self.min_p})")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be an integer from 0 to {MAX_SEED} (got {self.seed})")
        self._validate_objectives()
        self._validate_logit_bias(vocab_size)
        return self

    def _validate_types(self) -> None:
        """From Python any value may come: a float k or a None temperature failed deep in the search."""
        for name in INTEGER_FIELDS + NUMBER_FIELDS:
            value, integer = getattr(self, name), name in INTEGER_FIELDS
            if not (_is_integer if integer else _is_number)(value):
                raise UserError(f"{name} must be {'an integer' if integer else 'a number'} "
                                f"(got {value!r})")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) for s in self.stop):
            raise UserError(f"stop must be a string or a list of strings (got {self.stop!r})")
        for text in self.stop:  # refused, as on the command line and the server: it could never be matched
            checked_text(text, "a stop string")

    def _validate_objectives(self) -> None:
        """Shape and values only: which names exist depends on the reward model (the engine checks)."""
        if not _are_pairs(self.objectives):
            raise UserError(f"objectives must be name-weight pairs, e.g. {{'helpful': 1, 'harmless': 0.5}} "
                            f"(got {self.objectives!r})")
        names = [name for name, _ in self.objectives]
        if len(set(names)) < len(names):
            raise UserError(f"each objective may be given once (got {', '.join(names)})")
        for name, weight in self.objectives:
            if not isinstance(name, str) or not name:
                raise UserError(f"objective names must be non-empty strings (got {name!r})")
            if not _is_number(weight) or not math.isfinite(weight) or weight < 0:
                raise UserError(f"the weight of objective {name!r} must be a finite number >= 0 (got {weight!r})")
        if self.objectives and self.uses_reward and not any(weight > 0 for _, weight in self.objectives):
            raise UserError(f"all objective weights are 0: mode {self.mode} needs at least one positive weight")

    def _validate_logit_bias(self, vocab_size: int | None) -> None:
        """Token ids in the vocabulary where its size is known (the engine checks each reply's)."""
        if not _are_pairs(self.logit_bias):
            raise UserError(f'logit_bias must map token ids to biases, e.g. {{"50256": -100}} (got {self.logit_bias!r})')
        ids = [token for token, _ in self.logit_bias]
        if len(set(ids)) < len(ids):
            raise UserError(f"logit_bias may give each token id once (got {', '.join(map(str, ids))})")
        allowed = "integers from 0" + ("" if vocab_size is None else f" to {vocab_size - 1}")
        for token, bias in self.logit_bias:
            if not _is_integer(token) or token < 0 or (vocab_size is not None and token >= vocab_size):
                raise UserError(f"logit_bias names token id {token!r}, which is not in the vocabulary (its ids are {allowed})")
            if not _is_number(bias) or not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:
                raise UserError(f"the logit_bias of token {token} must be a number from -{MAX_LOGIT_BIAS:g} to "
                                f"{MAX_LOGIT_BIAS:g} (got {bias!r})")

    def with_(self, **changes) -> "DecodingSettings":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        d["objectives"] = dict(self.objectives)
        d["logit_bias"] = {str(token): bias for token, bias in self.logit_bias}  # as OpenAI's JSON writes it
        return d


def parse_objectives(text: str | None) -> tuple[tuple[str, float], ...]:
    """'helpful=1,harmless=0.5' → (("helpful", 1.0), ("harmless", 0.5)); UserError if malformed."""
    if text is None:
        return ()
    out = []
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or not name.strip() or weight is None:
            raise UserError(f"--objective takes NAME=WEIGHT[,NAME=WEIGHT...], e.g. helpful=1,harmless=0.5 (got {text!r})")
        out.append((name.strip(), weight))
    return tuple(out)
