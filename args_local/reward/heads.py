"""Several objectives on one backbone: every linear head stacked in one matrix.

A reward model directory may hold one head per objective (manifest `heads`), all reading the
same [h_last, mean(h over the reply)] features. Stacked, all objectives cost one small matmul
on the same backbone pass, and the search still sees one reward per candidate:

    reward = Σ weight_i · reward_i        (each reward_i normalised by its own mean and std)

Old manifests with a single `head` + `normalization` load as one objective, named by the
manifest's optional `objective` key, else "reward".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import LinearHead, checked
from .gates import gate_value, last_user_turn

DEFAULT_OBJECTIVE = "reward"  # the one objective of a single-head model that does not name it


def head_specs(manifest: dict) -> dict[str, dict]:
    """{objective: {"file", "normalization"}}: from `heads`, or from an old single `head`."""
    if "heads" in manifest:
        heads = manifest["heads"]
        if not isinstance(heads, dict) or not heads or not all(isinstance(h, dict) and "file" in h for h in heads.values()):
            raise UserError("manifest.json: `heads` must map each objective to {\"file\", \"normalization\"}; "
                            "re-export the model.")
        return heads
    if manifest.get("head"):
        return {objective_of(manifest): {"file": manifest["head"], "normalization": manifest.get("normalization") or {}}}
    return {}


def objective_of(manifest: dict) -> str:
    return str(manifest.get("objective") or DEFAULT_OBJECTIVE)


def manifest_objectives(manifest: dict) -> tuple[str, ...]:
    """The objectives a model has, from its manifest alone: an encoder's one, else its heads'."""
    return (objective_of(manifest),) if manifest["kind"] == "encoder" else tuple(head_specs(manifest))


def default_weights(manifest: dict, names: tuple[str, ...]) -> dict[str, float]:
    """The manifest's `default_objectives`, else weight 1 on each objective."""
    weights = manifest.get("default_objectives") or {name: 1.0 for name in names}
    return check_weights(weights, names, "the manifest's default_objectives")


def check_weights(weights: dict, names: tuple[str, ...], model: str) -> dict[str, float]:
    """Weights by objective name, each known to the model, finite and >= 0; unnamed objectives get 0."""
    out = {name: 0.0 for name in names}
    for name, weight in weights.items():
        if name not in names:
            have = ", ".join(names) if names else "none (it has no head)"
            raise UserError(f"{model} has no objective {name!r}; its objectives: {have}")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise UserError(f"the weight of objective {name!r} must be a number (got {weight!r})") from None
        if not math.isfinite(weight) or weight < 0:
            raise UserError(f"the weight of objective {name!r} must be a finite number >= 0 (got {weight})")
        out[name] = weight
    return out


@dataclass(frozen=True)
class Heads:
    """Linear heads as columns: rewards[..., i] = normalised objective i. Normalisation is folded
    into the weights, so scoring all objectives is two [hidden, n] matmuls and an add."""

    names: tuple[str, ...]
    w_last: np.ndarray  # [hidden, n]
    w_mean: np.ndarray  # [hidden, n]
    bias: np.ndarray  # [n]

    @classmethod
    def stack(cls, heads: dict[str, LinearHead], normalization: dict[str, dict]) -> "Heads":
        names = tuple(heads)
        std = np.array([float((normalization.get(n) or {}).get("std", 1.0)) or 1.0 for n in names])
        mean = np.array([float((normalization.get(n) or {}).get("mean", 0.0)) for n in names])
        w_last = np.stack([heads[n].w_last for n in names], axis=1) / std
        w_mean = np.stack([heads[n].w_mean for n in names], axis=1) / std
        bias = (np.array([heads[n].bias for n in names]) - mean) / std
        return cls(names, w_last.astype(np.float32), w_mean.astype(np.float32), bias)

    @classmethod
    def load(cls, directory: Path, manifest: dict, hidden_size: int | None = None) -> "Heads":
        specs = head_specs(manifest)
        heads = {name: LinearHead.load(directory / spec["file"], hidden_size) for name, spec in specs.items()}
        return cls.stack(heads, {name: spec.get("normalization") or {} for name, spec in specs.items()})

    @property
    def hidden_size(self) -> int:
        return self.w_last.shape[0]

    def __call__(self, h_last: np.ndarray, h_mean: np.ndarray) -> np.ndarray:
        """[..., hidden] features → [..., n] normalised rewards, float64."""
        return (h_last @ self.w_last + h_mean @ self.w_mean).astype(np.float64) + self.bias


class Objectives:
    """What every backend shares: objective names, default weights, and weights → one reward.

    A backend sets `objectives` and `default_objectives` (see `init_objectives`) and implements
    `reward_matrix(conversation, replies) -> [replies, objectives]` (normalised)."""

    name: str
    objectives: tuple[str, ...] = ()
    default_objectives: dict[str, float] = {}
    gates: dict = {}  # objective -> Gate over prompt_features (gates.py); a backend may set it
    warmup: np.ndarray = np.zeros(0)  # per objective: reply tokens over which its reward ramps in
    delay: np.ndarray = np.zeros(0)  # per objective: the reply's first tokens, left to the policy alone

    def init_objectives(self, names: tuple[str, ...], manifest: dict) -> None:
        self.objectives = tuple(names)
        self.default_objectives = default_weights(manifest, self.objectives) if names else {}
        self.warmup, self.delay = head_ramps(manifest, self.objectives)

    def weight_vector(self, weights: dict | None = None) -> np.ndarray:
        """The weights, by position in `objectives`; None: the model's defaults. UserError if invalid."""
        checked_weights = check_weights(self.default_objectives if weights is None else weights,
                                        self.objectives, f"the reward model {self.name}")
        return np.array([checked_weights[n] for n in self.objectives])

    def prompt_weights(self, conversation: list[dict], weights: dict | None = None) -> dict[str, float]:
        """The weights for this conversation: a gated objective's weight times its gate (gates.py)."""
        out = dict(zip(self.objectives, self.weight_vector(weights).tolist()))
        if any(out[name] for name in self.gates):
            features = self.prompt_features(last_user_turn(conversation))
            for name, gate in self.gates.items():
                out[name] *= gate_value(gate, features)
        return out

    def score_objectives(self, conversation: list[dict], replies: list[str]) -> dict[str, np.ndarray]:
        """Each objective's normalised reward of each finished reply."""
        return self.by_objective(self.reward_matrix(conversation, replies))

    def score_replies(self, conversation: list[dict], replies: list[str], weights: dict | None = None) -> np.ndarray:
        """Σ weight_i · reward_i of each finished reply (weights None: the manifest's defaults)."""
        return checked(self.reward_matrix(conversation, replies) @ self.weight_vector(weights))

    def by_objective(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        matrix = checked(matrix)
        return {name: matrix[:, i] for i, name in enumerate(self.objectives)}

    def combine(self, by_objective: dict[str, np.ndarray], weights: dict | None = None) -> np.ndarray:
        """Σ weight_i · reward_i from rewards already scored per objective (no second pass)."""
        w = self.weight_vector(weights)
        return sum(w[i] * np.asarray(by_objective[n], np.float64) for i, n in enumerate(self.objectives))


def warmup_factor(reply_tokens: int, warmup: np.ndarray, delay: np.ndarray | float = 0.0) -> np.ndarray:
    """Per objective: 0 over the reply's first `delay` tokens, then min(1, reply_tokens / warmup);
    a warm-up of 0 is always 1.

    A head fitted on whole replies and their longer prefixes judges a reply of a few tokens out of
    its distribution: the built-in helpful head ranks word fragments ('L', 'K') above ordinary
    openers ('Yes', 'Here'), and ARGS took them, so the reply lost its topic. The reward grows in
    over the first tokens instead (manifest `heads.NAME.warmup_tokens`). Even ramped in, it broke the
    policy's near-ties after "I'm" towards " sorry" and opened answers with an apology, so the
    built-in helpful head also sits out the first 4 tokens (`delay_tokens`; BENCHMARKS.md)."""
    ramp = np.where(warmup > 0, np.minimum(1.0, reply_tokens / np.maximum(warmup, 1)), 1.0)
    return np.where(reply_tokens > delay, ramp, 0.0)


def head_ramps(manifest: dict, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each objective's `warmup_tokens` and `delay_tokens` from the manifest's heads (0 where a head has none)."""
    specs = head_specs(manifest)
    ramps = []
    for key in ("warmup_tokens", "delay_tokens"):
        bad = UserError(f"manifest.json: a head's {key} must be a number >= 0; re-export the model.")
        try:
            tokens = np.array([float((specs.get(n) or {}).get(key, 0)) for n in names])
        except (TypeError, ValueError):
            raise bad from None
        if not np.all(np.isfinite(tokens) & (tokens >= 0)):
            raise bad
        ramps.append(tokens)
    return ramps[0], ramps[1]


class CombinedScorer:
    """Wraps a backend's candidate scorer (which returns [k, objectives]): `score` gives the
    weighted reward the search uses, and keeps each objective's rewards of the last k candidates."""

    def __init__(self, inner, names: tuple[str, ...], weights: np.ndarray, warmup: np.ndarray, delay: np.ndarray):
        self.inner, self.names, self.weights, self.warmup, self.delay = inner, names, weights, warmup, delay
        self.last_by_objective: dict[str, np.ndarray] = {}
        self.reply_tokens = 0  # before the candidates

    def score(self, ids: np.ndarray, pieces: list[bytes] | None = None) -> np.ndarray:
        matrix = np.asarray(self.inner.score(ids, pieces), np.float64)  # the engine checks the sum
        self.last_by_objective = {name: matrix[:, i] for i, name in enumerate(self.names)}
        return matrix @ self.step_weights()

    def step_weights(self) -> np.ndarray:
        """The weights at this step: each objective's, after its head's delay, ramped in over its warm-up."""
        return self.weights * warmup_factor(self.reply_tokens + 1, self.warmup, self.delay)

    def accept(self, index: int) -> None:
        self.inner.accept(index)
        self.reply_tokens += 1

    def skip(self, token: int, piece: bytes | None = None) -> None:
        self.inner.skip(token, piece)
        self.reply_tokens += 1
