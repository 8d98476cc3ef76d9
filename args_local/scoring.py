"""Pairwise accuracy of a reward model on preference pairs (what `args-local score` reports).

Helpfulness labels follow length (AlpacaEval's pairs: the longer reply is chosen 84% of the time), so
an accuracy is reported beside the "longer wins" baseline, and again on the length-matched pairs
(lengths within LENGTH_MATCHED×), where length cannot decide."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .conversations import PreferencePair

LENGTH_MATCHED = 1.25  # the longer reply at most 1.25× the shorter, in characters


def wilson95(correct: int, n: int) -> tuple[float, float] | tuple[None, None]:
    """The Wilson score 95% interval of correct/n: inside [0, 1], and not 0 wide at 0 or n of n correct,
    where the normal approximation (ci95) reads 1.000 ± 0.000 on 3 pairs of 3."""
    if not n:
        return None, None
    z, p = 1.96, correct / n
    scale = 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / scale, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class PairwiseResult:
    pairs: int
    correct: int
    ties: int
    chosen_mean: float
    rejected_mean: float
    weights: dict  # the objective weights scored with, after the gates: the mean over the pairs

    @property
    def accuracy(self) -> float:
        """Strict: chosen scored above rejected (a tie counts as wrong)."""
        return self.correct / self.pairs if self.pairs else 0.0

    @property
    def ci95(self) -> float:
        """Half-width of the normal-approximation 95% interval."""
        p = self.accuracy
        return 1.96 * math.sqrt(p * (1 - p) / self.pairs) if self.pairs else 0.0

    def to_dict(self) -> dict:
        low, high = wilson95(self.correct, self.pairs)
        return {"accuracy": self.accuracy, "ci95": self.ci95, "ci95_low": low, "ci95_high": high,
                "pairs": self.pairs, "correct": self.correct,
                "ties": self.ties, "chosen_mean_reward": self.chosen_mean, "rejected_mean_reward": self.rejected_mean}


def score_pairs(rm, pairs: list[PreferencePair], progress=None, weights: dict | None = None) -> tuple[PairwiseResult, np.ndarray]:
    """Score chosen and rejected of every pair; returns the result and a [pairs, 2] score array.
    weights: by objective (e.g. {"helpful": 1} scores that head alone); None: the model's defaults, gated
    per prompt as decoding weighs them (the guide's harmless weight is 0 on an ordinary request)."""
    scores = np.zeros((len(pairs), 2))
    used = np.zeros(len(rm.objectives))
    for i, pair in enumerate(pairs):
        own = weights if weights is not None else rm.prompt_weights(pair.conversation)
        scores[i] = rm.score_replies(pair.conversation, [pair.chosen, pair.rejected], own)
        used += rm.weight_vector(own)
        if progress:
            progress(i + 1, len(pairs))
    correct = int(np.sum(scores[:, 0] > scores[:, 1]))
    ties = int(np.sum(scores[:, 0] == scores[:, 1]))
    result = PairwiseResult(len(pairs), correct, ties, float(scores[:, 0].mean()), float(scores[:, 1].mean()),
                            dict(zip(rm.objectives, (used / max(1, len(pairs))).tolist())))
    return result, scores


def length_report(pairs: list[PreferencePair], scores: np.ndarray, within: float = LENGTH_MATCHED) -> dict:
    """The "longer wins" baseline over all pairs, and accuracy and baseline on the length-matched ones."""
    chosen = np.array([len(p.chosen) for p in pairs])
    rejected = np.array([len(p.rejected) for p in pairs])
    longer = chosen > rejected
    matched = np.maximum(chosen, rejected) <= within * np.minimum(chosen, rejected)
    correct = scores[:, 0] > scores[:, 1]
    n = int(matched.sum())
    accuracy = float(correct[matched].mean()) if n else None
    low, high = wilson95(int(correct[matched].sum()), n)
    return {"longer_wins": float(longer.mean()) if len(pairs) else None,
            "length_matched": {"within": within, "pairs": n, "accuracy": accuracy,
                               "ci95": 1.96 * math.sqrt(accuracy * (1 - accuracy) / n) if n else None,
                               "ci95_low": low, "ci95_high": high,
                               "longer_wins": float(longer[matched].mean()) if n else None}}
