#!/usr/bin/env python3
"""Train the default reward heads on HH-RLHF pairs: frozen backbone features + a linear head.

    python tools/train_reward_heads.py guide    # SmolLM2-135M, layer-20 features → models/guide/
    python tools/train_reward_heads.py judge    # Gemma-3-270M (llama.cpp) features → models/judge/
    python tools/train_reward_heads.py encoder  # MiniLM-L6 pooled features → models/encoder/

Bradley–Terry: P(chosen ≻ rejected) = σ(w · (f_chosen − f_rejected)), i.e. logistic
regression on feature differences with an L2 penalty. The penalty is chosen by 5-fold
cross-validation on the train split only; the dev split (pair index % 5 == 4) is reported,
never tuned on. Features are standardised; the scaling is folded back into the head, so the
committed head applies to raw backbone features. Deterministic: re-running reproduces it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from args_local.conversations import read_preference_pairs  # noqa: E402
from args_local.formats import PAIR_LAST_USER  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-pairs.jsonl.gz"
CACHE = Path(os.environ.get("ARGS_LOCAL_FEATURE_CACHE", "/tmp/args-local-features"))


def fit_logistic(x: np.ndarray, l2: float, iters: int = 30) -> np.ndarray:
    """Newton's method for min Σ log(1 + exp(−x·w)) + l2/2 ‖w‖² (labels all +1: chosen − rejected)."""
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = -x.T @ (1 - p) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def accuracy(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.mean(x @ w > 0))


def train_head(chosen: np.ndarray, rejected: np.ndarray, is_dev: np.ndarray) -> tuple[np.ndarray, float, dict]:
    """chosen/rejected: [pairs, features]. Returns weights and bias on raw features, and a report."""
    train = ~is_dev
    both = np.concatenate([chosen[train], rejected[train]])
    mu, sd = both.mean(0), both.std(0) + 1e-6
    diff = (chosen - rejected) / sd
    x_train = diff[train]
    folds = np.arange(len(x_train)) % 5
    cv = {}
    for l2 in (1, 3, 10, 30, 100, 300, 1000, 3000):
        accs = [accuracy(x_train[folds == f], fit_logistic(x_train[folds != f], l2)) for f in range(5)]
        cv[l2] = float(np.mean(accs))
    best = max(cv, key=cv.get)
    w = fit_logistic(x_train, best) / sd  # back to raw feature units
    raw = np.concatenate([chosen[train], rejected[train]]) @ w - mu @ w
    report = {
        "train_pairs": int(train.sum()), "dev_pairs": int(is_dev.sum()),
        "l2_by_cv_accuracy": cv, "l2": best,
        "train_accuracy": accuracy((chosen - rejected)[train], w),
        "dev_accuracy": accuracy((chosen - rejected)[is_dev], w),
        "normalization": {"mean": float(raw.mean()), "std": float(raw.std())},
    }
    return w.astype(np.float32), float(-(mu @ w)), report


def shorter_wins_accuracy(pairs, is_dev) -> float:
    wins = [len(p.chosen) < len(p.rejected) for p, d in zip(pairs, is_dev) if d]
    return float(np.mean(wins))


def extract(name: str, pairs, features_fn) -> tuple[np.ndarray, np.ndarray]:
    """Features of every pair's chosen and rejected reply; cached on disk (never committed)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.npz"
    if path.exists():
        with np.load(path) as z:
            if len(z["chosen"]) == len(pairs):
                return z["chosen"], z["rejected"]
    chosen, rejected = [], []
    start = time.time()
    for i, pair in enumerate(pairs):
        c, r = features_fn(pair)
        chosen.append(c)
        rejected.append(r)
        if i % 100 == 99:
            eta = (time.time() - start) / (i + 1) * (len(pairs) - i - 1)
            print(f"  {name}: {i + 1}/{len(pairs)} pairs, ETA {eta:.0f}s", file=sys.stderr, flush=True)
    chosen, rejected = np.array(chosen, np.float32), np.array(rejected, np.float32)
    np.savez(path, chosen=chosen, rejected=rejected)
    return chosen, rejected


def run(kind: str, rm, pairs, out_dir: Path, about: dict) -> dict:
    def features_fn(pair):
        f = rm.features(pair.conversation, [pair.chosen, pair.rejected])
        return f[0], f[1]

    t = time.time()
    chosen, rejected = extract(kind, pairs, features_fn)
    is_dev = np.array([p.split == "dev" for p in pairs])
    w, bias, report = train_head(chosen, rejected, is_dev)
    report = {**about, **report, "shorter_reply_wins_dev_accuracy": shorter_wins_accuracy(pairs, is_dev),
              "feature_seconds": round(time.time() - t, 1), "data": "hh-rlhf harmless-base test pairs"}
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {"norm_mean": report["normalization"]["mean"], "norm_std": report["normalization"]["std"]}
    if kind == "encoder":  # the classifier of a BertForSequenceClassification, over the pooler output
        np.savez(out_dir / "head.npz", weight=w[None], bias=np.array([bias], np.float32), **extra)
    else:  # [h_last, h_mean] halves, see args_local.reward.base.LinearHead
        if rm.manifest.get("graph"):
            extra["n_layers"] = rm.manifest["graph"]["n_layers"]
        d = len(w) // 2
        np.savez(out_dir / "head.npz", w_last=w[:d], w_mean=w[d:], bias=np.float32(bias), **extra)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


class MiniLMPooler:
    """BERT pooler output of (last user turn, reply): what BertForSequenceClassification's classifier reads."""

    def __init__(self, directory: str):
        import torch
        from tokenizers import Tokenizer
        from transformers import BertModel

        torch.set_num_threads(1)  # the judge and encoder extractions may run side by side
        self.torch = torch
        self.model = BertModel.from_pretrained(directory).eval()
        self.tokenizer = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(256, strategy="only_first", direction="left")
        self.manifest = {"source": {"directory": Path(directory).name}}

    def features(self, conversation, replies):
        context = PAIR_LAST_USER.context_text(conversation)
        rows = []
        for reply in replies:
            try:
                e = self.tokenizer.encode(context, reply)
            except Exception:  # reply alone too long: same fallback as the runtime (EncoderRewardModel)
                self.tokenizer.enable_truncation(256, strategy="longest_first", direction="left")
                e = self.tokenizer.encode(context, reply)
                self.tokenizer.enable_truncation(256, strategy="only_first", direction="left")
            ids = self.torch.tensor([e.ids])
            with self.torch.no_grad():
                out = self.model(input_ids=ids, token_type_ids=self.torch.tensor([e.type_ids]))
            rows.append(out.pooler_output[0].numpy())
        return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("guide", "judge", "encoder"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--backbone", required=True,
                        help="guide/judge: a reward model directory without head (features only); "
                             "encoder: the all-MiniLM-L6-v2 Hugging Face directory")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs (quick checks)")
    args = parser.parse_args()
    from args_local.reward import load_reward_model

    pairs = read_preference_pairs(args.data)
    if args.limit:
        pairs = pairs[: args.limit]
    rm = MiniLMPooler(args.backbone) if args.kind == "encoder" else load_reward_model(args.backbone, threads=2, use_gpu=False)
    about = {"backbone": rm.manifest.get("source", {}), "features": "[h_last, mean(h over reply)]",
             "graph": rm.manifest.get("graph")}
    run(args.kind, rm, pairs, ROOT / "models" / args.kind, about)


if __name__ == "__main__":
    main()
