"""Eval metrics as pure functions on plain data (no models): diversity, CI, win/tie/loss, coherence."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Judge scores closer than this count as a tie (the judge RM's scores are z-normalised: 0.05 std).
TIE_EPSILON = 0.05

# Two-sided 95% Student-t critical values for 1..30 degrees of freedom; beyond, the normal 1.96
# is within 2% — good enough for a CI shown with three digits.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def repetition_rate(units: Sequence, n: int) -> float:
    """Share of the n-grams that repeat an earlier one: 1 - unique/total (0 when there are none)."""
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def diversity(units: Sequence) -> float:
    """The ARGS paper's diversity: product over n = 2..4 of (1 - rep-n). 1.0 = no repeated n-gram."""
    return math.prod(1.0 - repetition_rate(units, n) for n in (2, 3, 4))


def words(text: str) -> list[str]:
    return text.split()


def mean_ci95(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, half-width of its 95% confidence interval); the half-width is None for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), None
    if x.size < 2:
        return float(x.mean()), None
    t = _T95[x.size - 2] if x.size - 1 <= len(_T95) else 1.96
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


def win_tie_loss(scores: Sequence[float], baseline: Sequence[float], epsilon: float = TIE_EPSILON) -> dict:
    """Fractions of paired items where scores beat / tie (|diff| < epsilon) / lose to the baseline."""
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {a.shape} vs {b.shape}")
    if a.size == 0:
        return {"win": float("nan"), "tie": float("nan"), "loss": float("nan")}
    diff = a - b
    tie = np.abs(diff) < epsilon
    win = (diff > 0) & ~tie
    return {"win": float(win.mean()), "tie": float(tie.mean()), "loss": float((~win & ~tie).mean())}


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)
