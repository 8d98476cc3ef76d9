"""Summaries of eval replies, and the Markdown table, JSON and reward-vs-w plot made from them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UserError
from .metrics import TIE_EPSILON, diversity, mean_ci95, win_tie_loss, words
from .runner import Run, reply_key

# ARGS paper (Khanov et al., ICLR 2024), HH-RLHF with LLaMA-7B: ARGS-greedy vs greedy decoding.
PAPER_REWARD_GAIN_PCT = 19.56
PAPER_WIN_TIE_PCT = 64.33


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarize(records: dict[str, dict], prompt_indices: list[int], run: Run, baseline: Run | None) -> dict:
    """The per-method row, over the prompts of this eval (a resumed DIR may hold more)."""
    rows = [records[k] for k in (reply_key(i, run) for i in prompt_indices) if k in records]
    avg, ci = mean_ci95([r["guide_reward"] for r in rows])
    judge = [r.get("judge_reward") for r in rows]
    has_judge = bool(rows) and all(j is not None for j in judge)
    wins = {"win": None, "tie": None, "loss": None}
    gain = None
    if baseline is not None and baseline != run:
        pairs = [(r, records.get(reply_key(r["prompt_index"], baseline))) for r in rows]
        pairs = [(r, b) for r, b in pairs if b is not None]
        if pairs and has_judge and all(b.get("judge_reward") is not None for _, b in pairs):
            wins = win_tie_loss([r["judge_reward"] for r, _ in pairs], [b["judge_reward"] for _, b in pairs])
        if pairs:
            mine, theirs = (float(np.mean([x["guide_reward"] for x in side])) for side in zip(*pairs))
            gain = {"difference": mine - theirs, "percent": 100 * (mine - theirs) / abs(theirs) if theirs else None}
    seconds = sum(r["seconds"] for r in rows)
    return {
        "method": run.method, "w": run.w, "label": run.label, "replies": len(rows),
        "avg_reward": avg if rows else None, "avg_reward_ci95": ci,
        "reward_gain_vs_greedy": gain,
        "avg_judge_reward": _mean(judge) if has_judge else None,
        "judge_win_tie_vs_greedy": None if wins["win"] is None else wins["win"] + wins["tie"],
        "judge_win": wins["win"], "judge_tie": wins["tie"], "judge_loss": wins["loss"],
        "diversity": _mean([diversity(words(r["text"])) for r in rows]),
        "coherence": _mean([r.get("coherence") for r in rows]) if rows and all(r.get("coherence") is not None for r in rows) else None,
        "mean_length": _mean([r["n_tokens"] for r in rows]),
        "tokens_per_s": sum(r["n_tokens"] for r in rows) / seconds if seconds > 0 else None,
        "reward_calls": _mean([r["reward_calls"] for r in rows]),
    }


def _fmt(value, spec: str = ".3f", missing: str = "n/a") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def markdown(result: dict) -> str:
    """The on-screen table; the paper's headline figures stand beside ARGS-greedy, with notes below."""
    lines = ["| method | guide reward (95% CI) | vs greedy | judge reward | judge win/tie/loss vs greedy "
             "| diversity | coherence | length (tokens) | tokens/s | RM calls/reply |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in result["methods"]:
        ci = "" if m["avg_reward_ci95"] is None else f" ± {m['avg_reward_ci95']:.3f}"
        gain = m["reward_gain_vs_greedy"]
        vs = "—" if gain is None else f"{gain['difference']:+.3f} ({_fmt(gain['percent'], '+.1f')}%)"
        wtl = "—" if m["judge_win"] is None else (
            f"{100 * m['judge_win']:.0f}/{100 * m['judge_tie']:.0f}/{100 * m['judge_loss']:.0f}% "
            f"(win+tie {100 * m['judge_win_tie_vs_greedy']:.1f}%)")
        if m["method"] == "args-greedy":
            vs += f"; paper +{PAPER_REWARD_GAIN_PCT}%"
            wtl += f"; paper win+tie {PAPER_WIN_TIE_PCT}%"
        lines.append(f"| {m['label']} | {_fmt(m['avg_reward'])}{ci} | {vs} | {_fmt(m['avg_judge_reward'])} | {wtl} "
                     f"| {_fmt(m['diversity'])} | {_fmt(m['coherence'])} | {_fmt(m['mean_length'], '.1f')} "
                     f"| {_fmt(m['tokens_per_s'], '.1f')} | {_fmt(m['reward_calls'], '.1f')} |")
    if result.get("sweep"):
        lines += ["", "| w sweep | guide reward (95% CI) | diversity | coherence |", "|---|---|---|---|"]
        swept = [m for m in result["methods"] if m["w"] is not None] + result["sweep"]
        for m in sorted(swept, key=lambda m: (m["method"], m["w"])):
            ci = "" if m["avg_reward_ci95"] is None else f" ± {m['avg_reward_ci95']:.3f}"
            lines.append(f"| {m['label']} | {_fmt(m['avg_reward'])}{ci} | {_fmt(m['diversity'])} | {_fmt(m['coherence'])} |")
    s = result["settings"]
    notes = [f"{result['prompts']} prompts from {s['prompts_file']}; k={s['k']}, max_new_tokens={s['max_new_tokens']}, "
             f"seed={s['seed']}, repeat_penalty={s.get('repeat_penalty', 1.0)} (every method)"
             + (f", no_repeat_ngram={s['no_repeat_ngram']}" if s.get("no_repeat_ngram") else "")
             + (f", adaptive={s['adaptive']} (ARGS)" if s.get("adaptive") else "") + ".",
             "Guide reward: the decoding RM's z-normalised score of the whole reply (so % gains are relative to a "
             "mean near 0 and not comparable with the paper's raw-score +19.56%; the paper used LLaMA-7B and GPT-4 "
             "as judge).",
             f"Judge win/tie/loss: judge-RM score vs greedy's reply to the same prompt; tie = |difference| < {TIE_EPSILON}.",
             "Diversity: product over n=2..4 of (1 - repeated n-gram rate) on the reply's words, averaged over replies. "
             "Coherence: cosine of MiniLM embeddings of prompt and reply."]
    notes += [f"n/a: {why}" for why in result.get("unavailable", [])]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def plot_reward_vs_w(result: dict, path: Path) -> Path | None:
    """PNG of average guide reward (95% CI bars) against w for each swept ARGS method; greedy as a line."""
    rows = [m for m in result["methods"] + result.get("sweep", []) if m["w"] is not None and m["avg_reward"] is not None]
    if not result.get("sweep") or not rows:
        return None
    try:
        import matplotlib
    except ImportError:
        raise UserError("--sweep-w writes its plot with matplotlib, which is not installed: "
                        "pip install 'matplotlib>=3.8' (the replies are saved; rerun to make the plot)") from None
    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(m["method"] for m in rows):
        points = sorted((m["w"], m["avg_reward"], m["avg_reward_ci95"] or 0.0) for m in rows if m["method"] == method)
        ws, avgs, cis = zip(*points)
        ax.errorbar(ws, avgs, yerr=cis, marker="o", capsize=3, label=method)
    greedy = next((m for m in result["methods"] if m["method"] == "greedy" and m["avg_reward"] is not None), None)
    if greedy:
        ax.axhline(greedy["avg_reward"], color="gray", linestyle="--", label="greedy")
    ax.set_xlabel("w (reward weight)")
    ax.set_ylabel("average guide reward")
    ax.set_title(f"Reward vs w ({result['prompts']} prompts)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
