#!/usr/bin/env python3
"""Train the default reward heads: frozen backbone features + a linear head, one head per objective.

    python tools/train_reward_heads.py guide --backbone DIR    # SmolLM2-135M, layer-20 features of replies and their prefixes → models/guide/
    python tools/train_reward_heads.py judge --backbone DIR    # Gemma-3-270M (llama.cpp) features → models/judge/
    python tools/train_reward_heads.py encoder --backbone DIR  # MiniLM's first 2 layers, pooled → models/encoder/
    python tools/train_reward_heads.py guide --backbone DIR --objective helpful --pairs 2000   # → models/guide/head-helpful.npz

DIR: the backbone, as models/README.md says for each (a built guide or judge, whose head is ignored;
the all-MiniLM-L6-v2 Hugging Face folder for the encoder).

Objectives: `harmless` (HH-RLHF harmless-base pairs, head.npz + report.json) and `helpful`
(AlpacaEval pairs labelled by GPT-4-Turbo, head-helpful.npz + report-helpful.json). The
helpful pairs are sampled (see `sample_helpful`), and their report adds accuracy on
length-matched dev pairs beside the "longer reply wins" baseline: the longer reply wins 84% of
them, so the plain dev accuracy says little on its own.

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
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from args_local.conversations import PreferencePair, read_preference_pairs  # noqa: E402
from args_local.formats import PAIR_LAST_USER  # noqa: E402

DATA = {"harmless": ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-pairs.jsonl.gz",
        "helpful": ROOT.parent / "shared" / "data" / "alpaca-eval" / "helpful-pairs.jsonl.gz"}
DATA_ABOUT = {"harmless": "hh-rlhf harmless-base test pairs",
              "helpful": "alpaca-eval helpful pairs (GPT-4-Turbo labels), sampled by sample_helpful"}
OUTPUT = {"harmless": ("head.npz", "report.json"), "helpful": ("head-helpful.npz", "report-helpful.json")}
PREFIX_FRACTIONS = (0.25, 0.5, 0.75)  # guide: also fitted on these prefixes of each reply
CACHE = Path(os.environ.get("ARGS_LOCAL_FEATURE_CACHE", "/tmp/args-local-features"))


def fit_logistic(x: np.ndarray, l2: float, iters: int = 30, w: np.ndarray | None = None) -> np.ndarray:
    """Newton's method for min Σ log(1 + exp(−x·w)) + l2/2 ‖w‖² (labels all +1: chosen − rejected).
    w: where to start (the fit at a neighbouring penalty converges in a few steps from there)."""
    w = np.zeros(x.shape[1]) if w is None else w.copy()
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


def train_head(chosen: np.ndarray, rejected: np.ndarray, is_dev: np.ndarray,
               openings: tuple[int, ...] = ()) -> tuple[np.ndarray, float, dict]:
    """chosen/rejected: [pairs, variants, features], variant 0 the finished reply, the others its
    prefixes (guide only), then its openings. Returns weights and bias on raw features, and a report.

    Folds split by pair, so no prefix of a held-out pair is trained on; the penalty is chosen by
    the cross-validated accuracy over all variants."""
    train = ~is_dev
    full = np.concatenate([chosen[train, 0], rejected[train, 0]])
    sd = np.concatenate([chosen[train], rejected[train]]).reshape(-1, chosen.shape[-1]).std(0) + 1e-6
    diff = (chosen - rejected) / sd  # [pairs, variants, features]
    x_train = diff[train]
    folds = np.arange(len(x_train)) % 5
    flat = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731
    cv, start = {}, [None] * 5
    for l2 in (100000, 30000, 10000, 3000, 1000, 300, 100, 30, 10, 3, 1):  # strongest first: warm starts
        fits = [fit_logistic(flat(x_train[folds != f]), l2, w=start[f]) for f in range(5)]
        cv[l2] = float(np.mean([accuracy(flat(x_train[folds == f]), w) for f, w in enumerate(fits)]))
        start = fits
    best = max(cv, key=cv.get)
    w = fit_logistic(flat(x_train), best) / sd  # back to raw feature units
    mu = full.mean(0)
    raw = full @ w - mu @ w
    report = {
        "train_pairs": int(train.sum()), "dev_pairs": int(is_dev.sum()),
        "l2_by_cv_accuracy": cv, "l2": best,
        "train_accuracy": accuracy((chosen - rejected)[train, 0], w),
        "dev_accuracy": accuracy((chosen - rejected)[is_dev, 0], w),
        "normalization": {"mean": float(raw.mean()), "std": float(raw.std())},
    }
    if chosen.shape[1] > 1:
        report["dev_accuracy_on_prefixes"] = {f"{f:.0%}": accuracy((chosen - rejected)[is_dev, 1 + i], w)
                                              for i, f in enumerate(PREFIX_FRACTIONS)}
    if openings:
        first = 1 + len(PREFIX_FRACTIONS)
        report["dev_accuracy_on_openings"] = {f"{t} tokens": accuracy((chosen - rejected)[is_dev, first + i], w)
                                              for i, t in enumerate(openings)}
    return w.astype(np.float32), float(-(mu @ w)), report


def shorter_wins_accuracy(pairs, is_dev) -> float:
    wins = [len(p.chosen) < len(p.rejected) for p, d in zip(pairs, is_dev) if d]
    return float(np.mean(wins))


def length_matched(pair, factor: float = 1.25) -> bool:
    a, b = len(pair.chosen), len(pair.rejected)
    return max(a, b) <= factor * max(1, min(a, b))


def sample_helpful(pairs: list[PreferencePair], n_train: int, n_dev_other: int, seed: int = 0) -> list[PreferencePair]:
    """Train: half pairs of similar length (within 1.5×), half any, so the head cannot score by
    length alone (the longer reply wins 84% of all pairs, 54% of those within 1.25×). Dev: every
    length-matched pair (within 1.25×) and `n_dev_other` others. Shuffled together, so any
    beginning of the list (a partial feature cache) has both splits in proportion."""
    rng = np.random.default_rng(seed)
    pick = lambda group, n: [group[i] for i in rng.permutation(len(group))[:n]]  # noqa: E731
    train = [p for p in pairs if p.split == "train"]
    similar = pick([p for p in train if length_matched(p, 1.5)], n_train // 2)
    taken = {id(p) for p in similar}
    chosen = similar + pick([p for p in train if id(p) not in taken], n_train - len(similar))
    dev = [p for p in pairs if p.split == "dev"]
    chosen += [p for p in dev if length_matched(p)] + pick([p for p in dev if not length_matched(p)], n_dev_other)
    return [chosen[i] for i in rng.permutation(len(chosen))]


def refusal_pairs(helpful_pairs: list[PreferencePair], exclude: list[PreferencePair] = ()) -> list[PreferencePair]:
    """Every AlpacaEval pair (train and dev) where one reply opens by refusing and the other does not,
    GPT-4's label kept: it prefers the answer in 441 of these 545 pairs. Ordinary requests answered
    with "I'm sorry, as an AI…" are 3% of the pairs, so a sampled helpful head sees few, and the
    harmlessness data never shows a refusal of a harmless request (its replies refuse harmful ones)."""
    from args_local.evaluation.refusals import is_refusal

    taken = {pair_key(p) for p in exclude}
    return [p for p in helpful_pairs if pair_key(p) not in taken and is_refusal(p.chosen) != is_refusal(p.rejected)]


def off_topic_pairs(helpful_pairs: list[PreferencePair], n_train: int, seed: int = 0) -> list[PreferencePair]:
    """For n_train train instructions (and a quarter as many dev ones, to report on): a reply GPT-4
    preferred for it against one GPT-4 preferred for another instruction of the same split. Every
    AlpacaEval pair answers its own instruction, so a head fitted on them alone never learns that
    an answer to another question is worse; ARGS's costliest drifts are of that kind (a recipe
    request answered with where to find SmolLM's website)."""
    rng = np.random.default_rng(seed)
    out = []
    for split, n in (("train", n_train), ("dev", n_train // 4)):
        by_instruction = {}
        for p in helpful_pairs:
            if p.split == split:
                by_instruction.setdefault(p.conversation[-1]["content"], []).append(p)
        groups = list(by_instruction.values())
        picked = [groups[i][rng.integers(len(groups[i]))] for i in rng.permutation(len(groups))[:n]]
        if len(picked) < 2:  # one instruction has no other to take a reply from
            continue
        # each instruction's reply set against the next one's: no instruction meets its own reply
        out += [PreferencePair(p.index, p.conversation, p.chosen, picked[(i + 1) % len(picked)].chosen, split)
                for i, p in enumerate(picked)]
    return out


def added_pairs_report(pairs, is_dev, chosen, rejected, w, is_added: np.ndarray) -> dict:
    """Dev accuracy on the added pairs (refusal or off-topic; finished replies and prefixes), and on the rest."""
    mask, rest = is_dev & is_added, is_dev & ~is_added
    margins = ((chosen - rejected) @ w) > 0  # [pairs, variants]
    return {"pairs": int(mask.sum()), "accuracy": float(margins[mask, 0].mean()) if mask.any() else None,
            "accuracy_on_prefixes": {f"{f:.0%}": float(margins[mask, 1 + i].mean())
                                     for i, f in enumerate(PREFIX_FRACTIONS)} if mask.any() and margins.shape[1] > 1 else {},
            "other_dev_pairs": int(rest.sum()), "other_dev_accuracy": float(margins[rest, 0].mean()) if rest.any() else None}


def length_report(pairs, is_dev, chosen, rejected, w) -> dict:
    """Dev accuracy on length-matched pairs (within 1.25×) and on the others, each beside "longer
    wins"; `all` reweights the two by their share of the whole dev split (the others are sampled)."""
    margin = ((chosen - rejected)[:, 0] @ w) > 0
    longer = np.array([len(p.chosen) > len(p.rejected) for p in pairs])
    matched = np.array([length_matched(p) for p in pairs])
    out = {}
    for name, mask in (("length_matched_1.25x", is_dev & matched), ("other", is_dev & ~matched)):
        out[name] = {"pairs": int(mask.sum()), "accuracy": float(margin[mask].mean()),
                     "longer_wins": float(longer[mask].mean())}
    share = DEV_MATCHED_SHARE
    out["all_dev_reweighted"] = {key: share * out["length_matched_1.25x"][key] + (1 - share) * out["other"][key]
                                 for key in ("accuracy", "longer_wins")}
    return out


DEV_MATCHED_SHARE = 412 / 3216  # length-matched (1.25×) pairs in the helpful dev split


def pair_key(pair: PreferencePair) -> int:
    """A pair's identity by content: the same pair read twice, or from a sample, has the same key."""
    return zlib.crc32(json.dumps([pair.conversation, pair.chosen, pair.rejected]).encode())


def extract(name: str, pairs, features_fn, save_every: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Features of every pair's chosen and rejected reply; cached on disk (never committed).

    Saved every `save_every` pairs and resumed from there: extraction takes an hour on a small
    machine. The cache is keyed by each pair's content and keeps every pair it ever held, so
    any list of pairs reuses what earlier runs extracted."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.npz"
    keys = [pair_key(p) for p in pairs]
    cached = {}
    if path.exists():
        with np.load(path) as z:
            if "keys" in z:
                cached = {int(k): (c, r) for k, c, r in zip(z["keys"], z["chosen"], z["rejected"])}
    todo = [i for i, k in enumerate(keys) if k not in cached]
    start = time.time()
    for done, i in enumerate(todo, 1):
        c, r = features_fn(pairs[i])
        # [variants, features]; one variant: the finished reply
        cached[keys[i]] = (c if c.ndim == 2 else c[None], r if r.ndim == 2 else r[None])
        if done % save_every == 0 or done == len(todo):
            eta = (time.time() - start) / done * (len(todo) - done)
            print(f"  {name}: {done}/{len(todo)} new pairs, ETA {eta:.0f}s", file=sys.stderr, flush=True)
            tmp = path.with_name(path.stem + ".partial.npz")
            np.savez(tmp, keys=np.array(list(cached), np.int64),
                     chosen=np.array([v[0] for v in cached.values()], np.float32),
                     rejected=np.array([v[1] for v in cached.values()], np.float32))
            tmp.replace(path)
    return (np.array([cached[k][0] for k in keys], np.float32),  # [pairs, variants, features]
            np.array([cached[k][1] for k in keys], np.float32))


def guide_features(rm, pair, openings: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """[1 + len(PREFIX_FRACTIONS) + len(openings), 2 * hidden] per reply: [h_last, h_mean] of the finished
    reply, of its first 25/50/75% of tokens, and of its first `openings` tokens (capped at the reply's).
    ARGS scores unfinished replies at every step, where the last token is an ordinary one, not the end
    of turn; a head fitted on finished replies only ranks prefixes at .59-.61 on the dev split, one
    fitted on both at .65-.66 (see models/README.md). A long reply is read from its beginning
    (DecoderRewardModel.replies_hidden), so these are true prefixes."""
    out = []
    for hidden in rm.replies_hidden(pair.conversation, [pair.chosen, pair.rejected]):
        n = len(hidden) - 1  # reply tokens, end of turn not counted
        # the openings are where a reply's tone is set: ARGS's apologies begin at its 1st-4th token
        cuts = [max(1, round(f * n)) for f in PREFIX_FRACTIONS] + [max(1, min(t, n)) for t in openings]
        rows = [np.concatenate([hidden[-1], hidden.mean(axis=0)])]
        rows += [np.concatenate([hidden[t - 1], hidden[:t].mean(axis=0)]) for t in cuts]
        out.append(np.stack(rows))
    return out[0], out[1]


def run(kind: str, rm, pairs, out_dir: Path, about: dict, objective: str = "harmless",
        added_as: list[str] | None = None, openings: tuple[int, ...] = ()) -> dict:
    """added_as: per pair, "" for a sampled pair, else the kind of pair added ("refusal", "off_topic");
    each kind is reported apart, and the length figures are of the sampled pairs alone."""
    added_as = np.array(added_as or [""] * len(pairs))
    def features_fn(pair):
        if kind == "guide":
            return guide_features(rm, pair, openings)
        f = rm.features(pair.conversation, [pair.chosen, pair.rejected])
        return f[0], f[1]

    t = time.time()
    name = {"guide": "guide-prefixes"}.get(kind, getattr(rm, "cache_name", kind))
    if objective != "harmless":
        name = f"{name}-{objective}-{rm.max_length}"
    if openings:
        name += "-openings-" + "-".join(map(str, openings))
    chosen, rejected = extract(name, pairs, features_fn)
    is_dev = np.array([p.split == "dev" for p in pairs])
    w, bias, report = train_head(chosen, rejected, is_dev, openings)
    sampled = added_as == ""
    report = {**about, "objective": objective, **report,
              "shorter_reply_wins_dev_accuracy": shorter_wins_accuracy(pairs, is_dev & sampled),
              "feature_seconds": round(time.time() - t, 1), "data": DATA_ABOUT[objective]}
    if objective == "helpful":
        report["dev_by_length"] = length_report(pairs, is_dev & sampled, chosen, rejected, w)
    for kind_of_pair in sorted(set(added_as) - {""}):
        report[f"dev_{kind_of_pair}_pairs"] = added_pairs_report(pairs, is_dev, chosen, rejected, w,
                                                                 added_as == kind_of_pair)
    head_file, report_file = OUTPUT[objective]
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {"norm_mean": report["normalization"]["mean"], "norm_std": report["normalization"]["std"]}
    if kind == "encoder":  # the classifier of a BertForSequenceClassification, over the pooler output
        extra.update(n_layers=rm.manifest["source"]["layers"], max_length=rm.manifest["source"]["max_length"])
        np.savez(out_dir / head_file, weight=w[None], bias=np.array([bias], np.float32), **extra)
    else:  # [h_last, h_mean] halves, see args_local.reward.base.LinearHead
        if rm.manifest.get("graph"):
            extra["n_layers"] = rm.manifest["graph"]["n_layers"]
        d = len(w) // 2
        np.savez(out_dir / head_file, w_last=w[:d], w_mean=w[d:], bias=np.float32(bias), **extra)
    (out_dir / report_file).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


class MiniLMPooler:
    """BERT pooler output of (last user turn, reply): what BertForSequenceClassification's classifier reads.

    Only the first `layers` layers run. On the train split's cross-validation MiniLM's layer 2-3
    pooled features rank pairs better than its last layer (.62 vs .58), at a third of the cost
    per candidate; 128 tokens of context score as well as 256 (see models/README.md)."""

    def __init__(self, directory: str, layers: int, max_length: int):
        import torch
        from tokenizers import Tokenizer
        from transformers import BertModel

        torch.set_num_threads(1)  # the judge and encoder extractions may run side by side
        self.torch = torch
        self.model = BertModel.from_pretrained(directory, num_hidden_layers=layers).eval()
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, strategy="only_first", direction="left")
        self.manifest = {"source": {"directory": Path(directory).name, "layers": layers, "max_length": max_length}}
        self.cache_name = f"encoder-{layers}layers-{max_length}"

    def features(self, conversation, replies):
        context = PAIR_LAST_USER.context_text(conversation)
        rows = []
        for reply in replies:
            try:
                e = self.tokenizer.encode(context, reply)
            except Exception:  # reply alone too long: same fallback as the runtime (EncoderRewardModel)
                self.tokenizer.enable_truncation(self.max_length, strategy="longest_first", direction="left")
                e = self.tokenizer.encode(context, reply)
                self.tokenizer.enable_truncation(self.max_length, strategy="only_first", direction="left")
            ids = self.torch.tensor([e.ids])
            with self.torch.no_grad():
                out = self.model(input_ids=ids, token_type_ids=self.torch.tensor([e.type_ids]))
            rows.append(out.pooler_output[0].numpy())
        return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("guide", "judge", "encoder"))
    parser.add_argument("--objective", choices=tuple(DATA), default="harmless",
                        help="harmless: HH-RLHF pairs → head.npz; helpful: AlpacaEval pairs → head-helpful.npz")
    parser.add_argument("--data", help="pairs file (default: the objective's data in ../shared/data)")
    parser.add_argument("--pairs", type=int, default=2000, help="helpful: train pairs sampled (default 2000)")
    parser.add_argument("--dev-other", type=int, default=300,
                        help="helpful: dev pairs beside the length-matched ones (default 300)")
    parser.add_argument("--max-length", type=int,
                        help="guide/judge: tokens the backbone reads (default: its manifest's); the runtime must match")
    parser.add_argument("--backbone", required=True,
                        help="guide/judge: a reward model directory without head (features only); "
                             "encoder: the all-MiniLM-L6-v2 Hugging Face directory")
    parser.add_argument("--encoder-layers", type=int, default=2, help="encoder: backbone layers kept (default 2)")
    parser.add_argument("--encoder-max-length", type=int, default=128, help="encoder: tokens read (default 128)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs (quick checks)")
    parser.add_argument("--refusal-pairs", action="store_true",
                        help="also fit on every AlpacaEval pair where one reply opens by refusing and the other "
                             "does not (GPT-4's label): a refusal of an ordinary request is neither more "
                             "helpful nor safer")
    parser.add_argument("--off-topic-pairs", type=int, default=0, metavar="N",
                        help="also fit on N pairs (and report on N/4 dev ones) where a reply to the instruction "
                             "beats a reply to another instruction")
    parser.add_argument("--openings", default="", metavar="T,T,...",
                        help="guide: also fit on each reply's first T tokens (e.g. 2,3,4,8), where ARGS's "
                             "apologies begin (BENCHMARKS.md)")
    parser.add_argument("--threads", type=int, default=2,
                        help="backbone threads (default 2; 1 is faster when other jobs share the cores)")
    args = parser.parse_args()
    from args_local.reward import load_reward_model

    try:
        openings = tuple(int(t) for t in args.openings.split(",") if t.strip())
    except ValueError:
        parser.error(f"--openings takes token counts, e.g. 2,3,4,8 (got {args.openings!r})")
    if openings and (args.kind != "guide" or min(openings) < 1):
        parser.error("--openings is for the guide, and each count must be at least 1")

    data = args.data or DATA[args.objective]
    if args.objective == "helpful":
        pairs = sample_helpful(read_preference_pairs(data), args.pairs, args.dev_other)  # split: the data's own
    else:
        pairs = read_preference_pairs(data)
    if args.limit:
        pairs = pairs[: args.limit]
    added_as = [""] * len(pairs)
    if args.refusal_pairs or args.off_topic_pairs:
        helpful = read_preference_pairs(DATA["helpful"])
        for kind_of_pair, more in (("refusal", refusal_pairs(helpful, exclude=pairs) if args.refusal_pairs else []),
                                   ("off_topic", off_topic_pairs(helpful, args.off_topic_pairs))):
            pairs, added_as = pairs + more, added_as + [kind_of_pair] * len(more)
    rm = (MiniLMPooler(args.backbone, args.encoder_layers, args.encoder_max_length) if args.kind == "encoder"
          else load_reward_model(args.backbone, threads=args.threads, use_gpu=False))
    if args.max_length:
        rm.max_length = args.max_length
        rm.max_reply = args.max_length * 3 // 4
    features = ("BERT pooler over [CLS]" if args.kind == "encoder" else "[h_last, mean(h over reply)]")
    about = {"backbone": rm.manifest.get("source", {}), "features": features,
             "graph": rm.manifest.get("graph")}
    if args.objective == "helpful":  # what reproduces this head
        about["sample"] = {"pairs": args.pairs, "dev_other": args.dev_other, "limit": args.limit,
                           "max_length": rm.max_length}
    about.update({f"{k}_pairs": added_as.count(k) for k in sorted(set(added_as) - {""})})
    if openings:
        about["openings"] = list(openings)
    run(args.kind, rm, pairs, ROOT / "models" / args.kind, about, args.objective, added_as, openings)


if __name__ == "__main__":
    main()
