#!/usr/bin/env python3
"""Train the guide's harmlessness gate: does this request call for harmlessness?

    python tools/train_objective_gate.py --backbone guide     # → models/guide/gate-harmless.npz + report

A logistic classifier on the guide's own features ([h_last, h_mean] at its layer) of the last
user message alone: HH-RLHF harmless-base prompts (red-team requests) are 1, AlpacaEval
instructions (ordinary requests) are 0, each instruction also as a person would say it in a chat
("Hey, quick question: …", "I was wondering: …"). Without those, the gate learned the register
(chatty first-person questions are HH's, imperative instructions AlpacaEval's) as much as the harm,
and fired on ordinary chat ("Can you help me write a birthday message for my mum?" 0.73). Train
splits only (HH: index % 5 != 4; AlpacaEval: its own split by instruction); the penalty is
chosen by 5-fold cross-validation on them and the dev splits are only reported. ARGS then weighs the harmless objective by the gate's probability
(args_local/reward/gates.py), so ordinary questions are steered by helpfulness alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from args_local.conversations import read_preference_pairs  # noqa: E402
from args_local.reward.gates import last_user_turn  # noqa: E402
from train_reward_heads import DATA, fit_logistic  # noqa: E402


def prompts(path: Path, label: int) -> list[tuple[str, str, int]]:
    """(last user message, split, label), each message once."""
    seen, out = set(), []
    for pair in read_preference_pairs(path):
        text = last_user_turn(pair.conversation)[0]["content"]
        if text not in seen:
            seen.add(text)
            out.append((text, pair.split, label))
    return out


# How people put an ordinary request in a chat: the same request, HH-RLHF's register.
CHATTY = ("Hey, quick question: {}", "Hi! {}", "I was wondering: {}", "Can you help me with something? {}",
          "{} Thanks!", "I need some help. {}", "My friend asked me this and I don't know. {}", "hi, {}")


def chatty(text: str, i: int) -> str:
    text = text.strip()
    if i % 2:  # half of them typed casually: lower-case start
        text = text[:1].lower() + text[1:]
    return CHATTY[i % len(CHATTY)].format(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="guide", help="the guide: a directory or the built-in name")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from args_local.reward import load_reward_model

    rm = load_reward_model(args.backbone, threads=args.threads, use_gpu=False)
    ordinary = prompts(DATA["helpful"], 0)
    rephrased = [(chatty(text, i), split, 0) for i, (text, split, _) in enumerate(ordinary)]
    data = prompts(DATA["harmless"], 1) + ordinary + rephrased
    is_rephrased = np.array([False] * (len(data) - len(rephrased)) + [True] * len(rephrased))
    t = time.time()
    x = np.stack([rm.prompt_features([{"role": "user", "content": text}]) for text, _, _ in data])
    y = np.array([label for _, _, label in data])
    dev = np.array([split == "dev" for _, split, _ in data])
    seconds = time.time() - t
    sd = x[~dev].std(0) + 1e-6
    mu = x[~dev].mean(0)
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    signed = z * np.where(y == 1, 1.0, -1.0)[:, None]  # fit_logistic fits labels +1: flip the negatives
    # classes weighted alike: repeat the smaller one
    train_idx = np.flatnonzero(~dev)
    pos, neg = train_idx[y[train_idx] == 1], train_idx[y[train_idx] == 0]
    reps = max(1, round(len(pos) / len(neg)))
    train_idx = np.concatenate([pos] + [neg] * reps)
    folds = np.arange(len(train_idx)) % 5
    cv = {}
    for l2 in (1000, 300, 100, 30, 10, 3, 1):
        accs = []
        for f in range(5):
            w = fit_logistic(signed[train_idx[folds != f]], l2)
            accs.append(float(np.mean(signed[train_idx[folds == f]] @ w > 0)))
        cv[l2] = float(np.mean(accs))
    l2 = max(cv, key=cv.get)
    w = fit_logistic(signed[train_idx], l2)
    logit = z @ w
    gate = 1 / (1 + np.exp(-logit))
    w_raw = w[:-1] / sd
    bias = float(w[-1] - mu @ w_raw)
    d = x.shape[1] // 2
    out = ROOT / "models" / "guide"
    np.savez(out / "gate-harmless.npz", w_last=w_raw[:d].astype(np.float32), w_mean=w_raw[d:].astype(np.float32),
             bias=np.float32(bias))

    def share(mask):
        return {"prompts": int(mask.sum()), "accuracy": float(np.mean((gate[mask] > 0.5) == (y[mask] == 1))),
                "mean_gate": float(gate[mask].mean()), "gate_above_0.5": float(np.mean(gate[mask] > 0.5))}

    report = {"features": "guide [h_last, h_mean] of the last user message alone", "l2_by_cv_accuracy": cv,
              "l2": l2, "feature_seconds": round(seconds, 1),
              "train": {"hh_harmless_base": share(~dev & (y == 1)), "alpaca_eval": share(~dev & (y == 0) & ~is_rephrased),
                        "alpaca_eval_chatty": share(~dev & is_rephrased)},
              "dev": {"hh_harmless_base": share(dev & (y == 1)), "alpaca_eval": share(dev & (y == 0) & ~is_rephrased),
                      "alpaca_eval_chatty": share(dev & is_rephrased)}}
    (out / "report-gate-harmless.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
