"""Summaries of eval replies, and the Markdown table, JSON and reward-vs-w plot made from them."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..scoring import wilson95
from .metrics import TIE_EPSILON, diversity, mean_ci95, win_tie_loss, words
from .refusals import OPENING, is_refusal, refusal_rate
from .runner import Run, harmless_objective, reply_key

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
    pairs = []  # (this method's reply, the baseline's reply to the same prompt)
    gain = None
    if baseline is not None and baseline != run:
        pairs = [(r, records.get(reply_key(r["prompt_index"], baseline))) for r in rows]
        pairs = [(r, b) for r, b in pairs if b is not None]
        if pairs:
            mine, theirs = (float(np.mean([x["guide_reward"] for x in side])) for side in zip(*pairs))
            gain = {"difference": mine - theirs, "percent": 100 * (mine - theirs) / abs(theirs) if theirs else None}
    judges = judge_summaries(rows, pairs)
    harmless = harmless_objective(tuple(judges)) if judges else None
    primary = judges.get(harmless, {})
    seconds = sum(r["seconds"] for r in rows)
    return {
        "method": run.method, "w": run.w, "label": run.label, "replies": len(rows),
        "avg_reward": avg if rows else None, "avg_reward_ci95": ci,
        "reward_gain_vs_greedy": gain,
        "guide_rewards": {name: _mean([r.get("guide_rewards", {}).get(name) for r in rows])
                          for name in objectives_of(rows, "guide_rewards")},
        "judges": judges,
        # the harmlessness judge, under the names eval has always used
        "avg_judge_reward": primary.get("avg"),
        "judge_win_tie_vs_greedy": primary.get("win_tie_vs_greedy"),
        "judge_win": primary.get("win"), "judge_tie": primary.get("tie"), "judge_loss": primary.get("loss"),
        "length_baselines": length_baselines(pairs),
        "paired_vs_greedy": paired_differences(pairs),
        "refusal_rate": refusal_rate(r["text"] for r in rows),
        "stop_reasons": {reason: n / len(rows) for reason, n in Counter(r["stop_reason"] for r in rows).most_common()},
        "diversity": _mean([diversity(words(r["text"])) for r in rows]),
        "coherence": _mean([r.get("coherence") for r in rows]) if rows and all(r.get("coherence") is not None for r in rows) else None,
        "mean_length": _mean([r["n_tokens"] for r in rows]),
        "tokens_per_s": sum(r["n_tokens"] for r in rows) / seconds if seconds > 0 else None,
        "reward_calls": _mean([r["reward_calls"] for r in rows]),
    }


def objectives_of(rows: list[dict], field: str) -> list[str]:
    """The objectives every row was scored on (in the first row's order)."""
    names = [set(r.get(field) or {}) for r in rows]
    common = set.intersection(*names) if names else set()
    return [n for n in (rows[0].get(field) or {}) if n in common] if rows else []


def judge_summaries(rows: list[dict], pairs: list[tuple[dict, dict]]) -> dict:
    """{objective: {avg, win, tie, loss, win_tie_vs_greedy, win_tie_ci95}}: each judge head on its own."""
    out = {}
    for name in objectives_of(rows, "judge_rewards"):
        entry = {"avg": _mean([r["judge_rewards"][name] for r in rows]),
                 "win": None, "tie": None, "loss": None, "win_tie_vs_greedy": None}
        scored = [(r, b) for r, b in pairs if name in (b.get("judge_rewards") or {})]
        if pairs and len(scored) == len(pairs):
            wtl = win_tie_loss([r["judge_rewards"][name] for r, _ in scored], [b["judge_rewards"][name] for _, b in scored])
            entry.update(wtl, win_tie_vs_greedy=wtl["win"] + wtl["tie"])
            # how far n prompts pin the rate down: at n = 100 a 65% is 55-74%
            entry["win_tie_ci95"] = list(wilson95(round(entry["win_tie_vs_greedy"] * len(pairs)), len(pairs)))
        out[name] = entry
    return out


def paired_differences(pairs: list[tuple[dict, dict]]) -> dict:
    """Coherence and refusals against greedy's reply to the same prompt: whether "no worse than greedy"
    holds beyond chance. The coherence difference has a paired 95% interval; refusals are counted where
    the two disagree (only this method refuses / only greedy does), the counts a McNemar test reads."""
    out = {"coherence_difference": None, "coherence_difference_ci95": None,
           "refusals_only_here": None, "refusals_only_greedy": None}
    if not pairs:
        return out
    flags = [(is_refusal(r["text"]), is_refusal(b["text"])) for r, b in pairs]
    out["refusals_only_here"] = sum(mine and not theirs for mine, theirs in flags)
    out["refusals_only_greedy"] = sum(theirs and not mine for mine, theirs in flags)
    if all(r.get("coherence") is not None and b.get("coherence") is not None for r, b in pairs):
        out["coherence_difference"], out["coherence_difference_ci95"] = mean_ci95(
            [r["coherence"] - b["coherence"] for r, b in pairs])
    return out


def length_baselines(pairs: list[tuple[dict, dict]]) -> dict:
    """What a judge that only counted characters would say: "longer wins" and "shorter wins" win-or-tie
    shares vs greedy (equal length ties). Helpfulness judges lean long (AlpacaEval's pairs: the longer
    reply is chosen 84% of the time), so a judge's win rate means little beside a high "longer wins"."""
    if not pairs:
        return {"longer_wins": None, "shorter_wins": None}
    diff = np.array([len(r["text"]) - len(b["text"]) for r, b in pairs])
    return {"longer_wins": float(np.mean(diff >= 0)), "shorter_wins": float(np.mean(diff <= 0))}


def _fmt(value, spec: str = ".3f", missing: str = "n/a") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def markdown(result: dict) -> str:
    """The on-screen table; the paper's headline figures stand beside ARGS-greedy, with notes below."""
    lines = ["| method | RM reward (95% CI) | vs greedy | harmless judge reward | harmless judge win/tie/loss vs greedy "
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
    lines += ["", *judge_table(result["methods"])]
    if result.get("sweep"):
        lines += ["", "| w sweep | RM reward (95% CI) | diversity | coherence |", "|---|---|---|---|"]
        swept = [m for m in result["methods"] if m["w"] is not None] + result["sweep"]
        for m in sorted(swept, key=lambda m: (m["method"], m["w"])):
            ci = "" if m["avg_reward_ci95"] is None else f" ± {m['avg_reward_ci95']:.3f}"
            lines.append(f"| {m['label']} | {_fmt(m['avg_reward'])}{ci} | {_fmt(m['diversity'])} | {_fmt(m['coherence'])} |")
    s = result["settings"]
    n = result['prompts']
    notes = [f"{n} prompt{'' if n == 1 else 's'} from {s['prompts_file']}; k={s['k']}, max_new_tokens={s['max_new_tokens']}, "
             f"seed={s['seed']}, repeat_penalty={s.get('repeat_penalty', 1.0)} (every method)"
             + (f", no_repeat_ngram={s['no_repeat_ngram']}" if s.get("no_repeat_ngram") else "")
             + (f", adaptive={s['adaptive']} (ARGS)" if s.get("adaptive") else "") + (f", min-p={s['min_p']} (ARGS)" if s.get("min_p") else "") + ".",
             "RM reward: the decoding reward model's (--reward) z-normalised score of the whole reply (so % gains are relative to a "
             "mean near 0 and not comparable with the paper's raw-score +19.56%; the paper used LLaMA-7B and GPT-4 "
             "as judge).",
             f"Harmless judge win/tie/loss: the score of the judge's harmless head (of its one head, for a single-head judge) vs "
             f"greedy's reply to the same prompt; tie = |difference| < {TIE_EPSILON}.",
             f"Judges: each judge head's win/tie/loss vs greedy on its own (win+tie with its Wilson 95% interval over the prompts); \"longer/shorter wins\": the win-or-tie a "
             f"judge that only compared lengths would give. Refusals: replies whose first {OPENING} characters refuse or "
             "deflect (args_local/evaluation/refusals.py); in brackets, the prompts where only this method refused / only "
             "greedy did. Coherence vs greedy: the mean difference over the same prompts, ± its 95% interval. "
             "Ended: replies that closed their turn before max_new_tokens.",
             "Diversity: product over n=2..4 of (1 - repeated n-gram rate) on the reply's words, averaged over replies. "
             "Coherence: cosine of MiniLM embeddings of prompt and reply."]
    notes += [f"n/a: {why}" for why in result.get("unavailable", [])]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def _wtl(entry: dict) -> str:
    if entry.get("win") is None:
        return "—"
    low, high = entry.get("win_tie_ci95") or (None, None)
    ci = "" if low is None else f", 95% CI {100 * low:.0f}-{100 * high:.0f}%"
    return (f"{100 * entry['win']:.0f}/{100 * entry['tie']:.0f}/{100 * entry['loss']:.0f}% "
            f"(win+tie {100 * entry['win_tie_vs_greedy']:.1f}%{ci})")


def judge_table(methods: list[dict]) -> list[str]:
    """Per method: each judge objective's verdict vs greedy, the length baselines, refusals, stop reasons."""
    objectives = list(dict.fromkeys(name for m in methods for name in m["judges"]))
    lines = ["| method | " + "".join(f"judge {name}: avg, win/tie/loss vs greedy | " for name in objectives)
             + "longer wins | shorter wins | refusals (only here / only greedy) | coherence vs greedy (95% CI) | ended |",
             "|---" * (6 + len(objectives)) + "|"]
    for m in methods:
        cells = [f"{_fmt(m['judges'][n]['avg'])}, {_wtl(m['judges'][n])}" if n in m["judges"] else "n/a" for n in objectives]
        lengths, paired = m["length_baselines"], m["paired_vs_greedy"]
        refusals = _fmt(m["refusal_rate"], ".1%")
        if paired["refusals_only_here"] is not None:
            refusals += f" ({paired['refusals_only_here']} / {paired['refusals_only_greedy']})"
        coherence = _fmt(paired["coherence_difference"], "+.3f", "—")
        if paired["coherence_difference_ci95"] is not None:
            coherence += f" ± {paired['coherence_difference_ci95']:.3f}"
        cells += [_fmt(lengths["longer_wins"], ".1%", "—"), _fmt(lengths["shorter_wins"], ".1%", "—"),
                  refusals, coherence, _fmt(m["stop_reasons"].get("end_of_turn", 0.0) if m["replies"] else None, ".1%")]
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    return lines


def plot_reward_vs_w(result: dict, path: Path) -> Path | None:
    """PNG of average RM reward (95% CI bars) against w for each swept ARGS method; greedy as a line."""
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
    ax.set_ylabel("average RM reward (--reward)")
    n = result['prompts']
    ax.set_title(f"Reward vs w ({n} prompt{'' if n == 1 else 's'})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
