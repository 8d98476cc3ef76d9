"""Speed of ARGS against plain greedy decoding, on the same prompts, policy and step count.

Every run goes through Engine.stream, the code path users get; only end-of-turn is switched
off (NeverEndingPolicy) so each run decodes exactly the same number of tokens. Repetitions
are interleaved across configurations so that a busy neighbour slows them all alike.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
from dataclasses import dataclass
from typing import Callable

from .engine import Engine
from .errors import UserError
from .settings import DecodingSettings

# Open-ended requests: with end-of-turn ignored any prompt works, but these keep the text natural.
BENCH_PROMPTS = (
    "Write a detailed guide to growing tomatoes at home, from seeds to harvest.",
    "Explain how a bicycle works, part by part, for a curious ten-year-old.",
)

N_CTX = 1024  # the policy's context in bench: room for a prompt above and --tokens
PROMPT_ROOM = 128  # the bench prompts in any chat template fit this; the rest of N_CTX is for --tokens


def check_tokens(tokens: int) -> None:
    """--tokens of bench and bench_reference: decoded within N_CTX after the prompt, refused before any load
    (after it, the context error named options these tools do not have)."""
    if tokens > N_CTX - PROMPT_ROOM:
        raise UserError(f"--tokens must be at most {N_CTX - PROMPT_ROOM}: each prompt is decoded within a "
                        f"{N_CTX}-token context (got {tokens})")


class NeverEndingPolicy:
    """The policy with end-of-turn switched off: decoding always runs to max_new_tokens."""

    def __init__(self, policy):
        self._policy = policy

    def __getattr__(self, name):
        return getattr(self._policy, name)

    def is_end_of_turn(self, token: int) -> bool:
        return False


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc), else the peak: to see what loading one model adds."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


@dataclass
class Config:
    reward_kind: str | None  # None: plain greedy, no reward model
    k: int
    engine: Engine
    rm_rss_mb: float | None = None  # resident memory its reward model added when loaded
    adaptive: float = 0.0
    min_p: float = 0.0
    repeat_penalty: float = DecodingSettings.repeat_penalty  # 1.0: the paper's rule, to compare with its code
    objectives: tuple[tuple[str, float], ...] = ()  # empty: the reward model's default weights

    @property
    def settings(self) -> DecodingSettings:
        return DecodingSettings(mode="greedy" if self.reward_kind is None else "args-greedy", k=self.k, w=1.5,
                                adaptive=self.adaptive, min_p=self.min_p, repeat_penalty=self.repeat_penalty,
                                objectives=self.objectives if self.reward_kind else ())


def measure(engine: Engine, settings: DecodingSettings, prompts, tokens: int) -> dict:
    """One repetition: every prompt decoded for exactly `tokens` steps."""
    n, seconds, ms_policy, ms_reward = 0, 0.0, 0.0, 0.0
    for prompt in prompts:
        res = engine.generate(prompt, settings.with_(max_new_tokens=tokens))
        steps = len(res.tokens)
        n, seconds = n + steps, seconds + res.seconds
        ms_policy += res.ms_policy_per_step * steps
        ms_reward += res.ms_reward_per_step * steps
    return {"tokens": n, "tokens_per_s": n / seconds, "ms_policy_per_step": ms_policy / n,
            "ms_reward_per_step": ms_reward / n}


def run_bench(configs: list[Config], prompts, tokens: int, reps: int, progress: Callable[[str], None]) -> list[dict]:
    """Warm up each config, then `reps` interleaved repetitions; medians and min/max per config."""
    for c in configs:
        measure(c.engine, c.settings, prompts[:1], min(8, tokens))  # first-call allocations, caches
    samples: list[list[dict]] = [[] for _ in configs]
    peaks = [0.0] * len(configs)
    for rep in range(reps):
        for i, c in enumerate(configs):
            samples[i].append(measure(c.engine, c.settings, prompts, tokens))
            peaks[i] = peak_rss_mb()
        progress(f"repetition {rep + 1}/{reps} done")
    results = []
    for c, runs, peak in zip(configs, samples, peaks):
        # the weights decoding used: after the gates, which switch a gated objective per prompt
        used = [c.engine.prompt_weights([{"role": "user", "content": p}], c.settings) for p in prompts] if c.reward_kind else None
        rates = [r["tokens_per_s"] for r in runs]
        results.append({
            "reward_kind": c.reward_kind, "reward_name": None if c.reward_kind is None else c.engine.reward.name,
            "provider": None if c.reward_kind is None else c.engine.reward.provider, "k": c.k,
            "adaptive": c.adaptive, "min_p": c.min_p, "objectives": used and {n: statistics.mean(w[n] for w in used) for n in used[0]},
            "tokens_per_s": statistics.median(rates), "tokens_per_s_min": min(rates), "tokens_per_s_max": max(rates),
            "ms_policy_per_step": statistics.median(r["ms_policy_per_step"] for r in runs),
            "ms_reward_per_step": statistics.median(r["ms_reward_per_step"] for r in runs),
            "tokens_per_rep": runs[0]["tokens"], "peak_rss_mb": peak, "rm_rss_mb": c.rm_rss_mb,
        })
    plain = next(r for r in results if r["reward_kind"] is None)["tokens_per_s"]
    for r in results:
        r["ratio_to_plain"] = r["tokens_per_s"] / plain
    return results


def machine_info(policy, policy_threads: int, rm_threads: int) -> dict:
    import onnxruntime as ort

    from . import llama_build

    llama_cpp = llama_build.load_llama_cpp()

    build = llama_build.status()
    return {"cpu": build["cpu"], "cpu_amx": build["amx"], "cores": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
            "policy_threads": policy_threads, "rm_threads": rm_threads,
            "onnxruntime": ort.__version__, "onnxruntime_providers": ort.get_available_providers(),
            "llama_cpp_python": llama_cpp.__version__, "llama_cpp_build": build["recorded_variant"],
            "llama_cpp_extra_buffers": build["extra_bufts"], "llama_cpp_features": llama_build.system_info(),
            "llama_cpp_gpu_support": bool(llama_cpp.llama_supports_gpu_offload()),
            "llama_cpp_gpu_offload": policy.info.gpu_offload, "n_gpu_layers": policy.info.n_gpu_layers,
            "python": platform.python_version(), "platform": platform.platform()}
