"""The reward-model interface the search sees, and the pieces every backend shares.

A reward model scores a finished reply (`score_replies`, for `score`, eval and best-of-n),
and, for ARGS, scores k candidate next tokens of a reply in progress in one batch:

    scorer = rm.start(conversation)          # once per reply
    rewards = scorer.score(ids, pieces)      # k candidates: token ids and their bytes
    scorer.accept(j)                         # the search took candidate j
    scorer.skip(token, piece)                # adaptive mode: took a token without scoring candidates

It may have several objectives (heads on one backbone, see heads.py); every reward above is
then Σ weight_i · reward_i, the weights given to `score_replies` / `start` (None: the model's
defaults), and `score_objectives` / `scorer.last_by_objective` give each objective's own.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import RewardError, UserError


class CandidateScorer(Protocol):
    last_by_objective: dict[str, np.ndarray]  # each objective's rewards of the last scored candidates

    def score(self, ids: np.ndarray, pieces: list[bytes]) -> np.ndarray: ...
    def accept(self, index: int) -> None: ...
    def skip(self, token: int, piece: bytes) -> None: ...


class RewardModel(Protocol):
    kind: str
    name: str
    provider: str
    manifest: dict
    objectives: tuple[str, ...]
    default_objectives: dict[str, float]

    def score_objectives(self, conversation: list[dict], replies: list[str]) -> dict[str, np.ndarray]: ...
    def score_replies(self, conversation: list[dict], replies: list[str],
                      weights: dict | None = None) -> np.ndarray: ...
    def start(self, conversation: list[dict], weights: dict | None = None) -> CandidateScorer: ...


@dataclass(frozen=True)
class Normalization:
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def from_manifest(cls, manifest: dict) -> "Normalization":
        d = manifest.get("normalization") or {}
        return cls(float(d.get("mean", 0.0)), float(d.get("std", 1.0)) or 1.0)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return (np.asarray(raw, dtype=np.float64) - self.mean) / self.std


@dataclass(frozen=True)
class LinearHead:
    """reward = w_last · h_last + w_mean · mean(h over the reply) + bias.

    Reading the reply's running mean beside the last token makes the reward see the whole
    reply, not only where it stands now; the mean is kept as a running sum while decoding.
    """

    w_last: np.ndarray
    w_mean: np.ndarray
    bias: float

    @classmethod
    def load(cls, path: Path, hidden_size: int | None = None) -> "LinearHead":
        try:
            with open(path, "rb") as f:  # np.load reads any other file as a pickle, and says to allow that
                if f.read(4) != b"PK\x03\x04":
                    raise ValueError("not an .npz file")
            with np.load(path) as z:
                head = cls(z["w_last"].astype(np.float32), z["w_mean"].astype(np.float32), float(z["bias"]))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:  # missing, cut off, not an .npz
            raise UserError(f"{path} is not a reward head (.npz with w_last, w_mean, bias): {e}") from None
        if hidden_size is not None and head.w_last.shape != (hidden_size,):
            raise UserError(f"{path}: the head expects hidden size {head.w_last.shape[0]} "
                            f"but the backbone has {hidden_size}")
        return head

    def save(self, path: Path, **extra) -> None:
        """extra: what else the file says about the head (n_layers, norm_mean, norm_std: from_gguf.read_head)."""
        np.savez(path, w_last=self.w_last, w_mean=self.w_mean, bias=np.float32(self.bias), **extra)

    def __call__(self, h_last: np.ndarray, h_mean: np.ndarray) -> np.ndarray:
        return h_last @ self.w_last + h_mean @ self.w_mean + self.bias


def load_tokenizer(path: Path, remedy: str = "re-export the model"):
    """A tokenizer.json, or one clear error: the tokenizers library raises a bare Exception on a damaged file."""
    from tokenizers import Tokenizer

    if not Path(path).is_file():
        raise UserError(f"tokenizer file {path} is missing; {remedy}.")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise UserError(f"{path} is not a tokenizer file ({e}); it is damaged: {remedy}.") from None


def checked(rewards: np.ndarray, step: int | None = None) -> np.ndarray:
    """Rewards as float64, or a RewardError if any is NaN or infinite."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if not np.all(np.isfinite(rewards)):  # [k] or [k, objectives]: name the candidates
        bad = sorted(set(np.argwhere(~np.isfinite(rewards))[:, 0].tolist()))
        raise RewardError(f"the reward model returned a non-finite reward for candidate(s) {bad}; "
                          "the model file may be damaged (re-export it)", step=step)
    return rewards


def truncate_left(ids: list[int], keep: int) -> list[int]:
    return ids[max(0, len(ids) - keep):] if keep > 0 else []


def finished_reply(encode, fmt, reply: str, keep: int) -> list[int]:
    """A finished reply's tokens in the InputFormat fmt, with its end of turn, at most `keep` in all: a
    longer reply keeps its beginning, what ARGS read while writing it (and where an answer usually is)."""
    ids = encode(fmt.finished_text(reply))
    if len(ids) <= keep:
        return ids
    end = encode(fmt.reply_suffix)
    return encode(fmt.reply_content(reply))[: max(0, keep - len(end))] + end
