"""The decoding rules, as small pure functions over numpy arrays (no model in here).

ARGS (Khanov et al., 2024, Algorithm 1), one step:

    V_k      = top-k tokens of the policy's logits
    score(v) = logit(v) + w * reward(prefix + v)        for v in V_k
    ARGS-greedy:      take argmax_v score(v)
    ARGS-stochastic:  sample v ~ softmax(score / T) over V_k

The baselines (greedy, top-k and nucleus sampling, best-of-n) live here too so every mode
runs on the same engine. Ties are broken towards the lower token id, and the stochastic rule
sorts candidates by id before sampling, so no result depends on candidate order.
"""

from __future__ import annotations

import numpy as np


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest logits and their token ids, best first (ties: lower id first)."""
    k = min(k, logits.shape[-1])
    if k == logits.shape[-1]:
        idx = np.arange(k)
    else:
        idx = np.argpartition(-logits, k - 1)[:k]
        kth = logits[idx].min()
        if np.count_nonzero(logits == kth) > np.count_nonzero(logits[idx] == kth):
            # argpartition picks arbitrary members of a tie at the boundary: take the lowest ids
            above = np.flatnonzero(logits > kth)
            idx = np.concatenate([above, np.flatnonzero(logits == kth)[: k - len(above)]])
    order = np.lexsort((idx, -logits[idx]))
    idx = idx[order]
    return idx.astype(np.int64), logits[idx].astype(np.float64)


def plausible(ids: np.ndarray, logits: np.ndarray, min_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The candidates (best first) at least min_p times as likely as the best one; min_p 0 keeps all.

    A floor relative to the top token, as in min-p sampling (Nguyen et al., 2024): where the policy
    is sure, few candidates are left for the reward to choose among; where it is unsure, many."""
    if min_p <= 0:
        return ids, logits
    keep = logits >= logits[0] + np.log(min_p)
    return ids[keep], logits[keep]


def args_scores(logits: np.ndarray, rewards: np.ndarray, w: float) -> np.ndarray:
    """score = logit + w * reward, elementwise over the k candidates."""
    return np.asarray(logits, dtype=np.float64) + w * np.asarray(rewards, dtype=np.float64)


def argmax_by_id(scores: np.ndarray, ids: np.ndarray) -> int:
    """Index of the best score; among equal scores the lowest token id wins."""
    best = scores.max()
    tied = np.flatnonzero(scores == best)
    return int(tied[np.argmin(ids[tied])])


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def sample_by_id(scores: np.ndarray, ids: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Index sampled from softmax(scores / T); T == 0 means argmax. Order-independent."""
    if temperature == 0:
        return argmax_by_id(scores, ids)
    order = np.argsort(ids, kind="stable")
    p = softmax(scores[order] / temperature)
    return int(order[rng.choice(len(p), p=p)])


def args_choose(ids, logits, rewards, w: float, temperature: float | None = None,
                rng: np.random.Generator | None = None) -> int:
    """Index of the candidate ARGS takes: greedy when temperature is None, else sampled."""
    scores = args_scores(logits, rewards, w)
    if temperature is None:
        return argmax_by_id(scores, np.asarray(ids))
    return sample_by_id(scores, np.asarray(ids), temperature, rng)


def top_probability(logits: np.ndarray) -> float:
    """Probability of the most likely token under softmax(logits)."""
    finite = logits[np.isfinite(logits)]
    return float(1.0 / np.exp(finite - finite.max()).sum())


def policy_is_sure(logits: np.ndarray, threshold: float) -> bool:
    """Adaptive ARGS: where the top token is this likely, the reward is not worth computing."""
    return threshold > 0 and top_probability(logits) >= threshold


def greedy_token(logits: np.ndarray) -> int:
    return int(np.argmax(logits))  # the first maximum: the lowest id among ties


def sample_top_k(logits: np.ndarray, k: int, temperature: float, rng: np.random.Generator) -> int:
    """Token sampled from the k most likely, at temperature T."""
    ids, values = top_k(logits, k)
    return int(ids[sample_by_id(values, ids, temperature, rng)])


def sample_nucleus(logits: np.ndarray, top_p: float, temperature: float, rng: np.random.Generator) -> int:
    """Token sampled from the smallest set whose probability reaches top_p (Holtzman et al.)."""
    if temperature == 0:
        return greedy_token(logits)
    ids = np.lexsort((np.arange(logits.shape[-1]), -logits))
    p = softmax(logits[ids].astype(np.float64) / temperature)
    keep = int(np.searchsorted(np.cumsum(p), top_p) + 1)
    ids = ids[:keep]
    return int(ids[sample_by_id(logits[ids].astype(np.float64), ids, temperature, rng)])


def best_of_n(rewards: np.ndarray) -> int:
    """Index of the best-rewarded full sample (first one on ties)."""
    return int(np.argmax(np.asarray(rewards, dtype=np.float64)))
