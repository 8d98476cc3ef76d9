"""Options several commands share: which models, decoding settings, threads."""

from __future__ import annotations

import argparse

from ..settings import MODES, DecodingSettings, parse_objectives


def add_model_options(p: argparse.ArgumentParser, reward_help: str = "reward model: a directory, or a built-in name (guide, encoder; default guide)") -> None:
    g = p.add_argument_group("models")
    g.add_argument("--policy", help="GGUF chat model (default: the built-in SmolLM2-135M-Instruct)")
    g.add_argument("--reward", help=reward_help)
    g.add_argument("--n-ctx", type=int, default=4096, help="policy context length in tokens (default 4096)")
    g.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: 1 on <= 2 cores)")
    g.add_argument("--rm-threads", type=int, default=None, help="onnxruntime threads (default: 2 on <= 2 cores)")
    g.add_argument("--n-gpu-layers", type=int, default=None,
                   help="layers to offload to the GPU (default: all when llama.cpp has GPU support)")


def add_decoding_options(p: argparse.ArgumentParser, default_mode: str = "args-greedy") -> None:
    d = DecodingSettings()
    g = p.add_argument_group("decoding")
    g.add_argument("--mode", default=default_mode, help=f"one of {', '.join(MODES)} (default {default_mode})")
    g.add_argument("--k", type=int, default=d.k, help=f"candidates per step (default {d.k})")
    g.add_argument("--w", type=float, default=d.w, help=f"reward weight in logit + w*reward (default {d.w})")
    g.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature (default 1.0)")
    g.add_argument("--top-p", type=float, default=d.top_p, help="nucleus sampling mass (default 0.9)")
    g.add_argument("--n", type=int, default=d.n, help="best-of-n: samples to draw (default 4)")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="default 128")
    add_tuning_options(g)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def add_tuning_options(g) -> None:
    """Repetition processors and adaptive ARGS: shared by generate, chat and eval."""
    d = DecodingSettings()
    g.add_argument("--repeat-penalty", type=float, default=d.repeat_penalty,
                   help=f"divide logits of tokens already in the reply by this (default {d.repeat_penalty}; 1 = off)")
    g.add_argument("--no-repeat-ngram", type=int, default=d.no_repeat_ngram, metavar="N",
                   help=f"never repeat an N-gram of the reply (default {d.no_repeat_ngram}; 0 = off)")
    g.add_argument("--adaptive", type=float, default=d.adaptive, metavar="P",
                   help="ARGS: skip the reward model at steps where the policy's top token has probability >= P "
                        "(faster; BENCHMARKS.md shows the cost in reward; default 0 = full ARGS)")
    add_objective_option(g)


def add_objective_option(g) -> None:
    g.add_argument("--objective", metavar="NAME=W[,NAME=W]",
                   help="reward = sum of W x each objective's reward, e.g. helpful=1,harmless=0.5 (objectives not "
                        "named get 0; default: the reward model's own weights, see `args-local models`)")


def objectives_from(args) -> tuple[tuple[str, float], ...]:
    return parse_objectives(args.objective)


def tuning_from(args) -> dict:
    return {"repeat_penalty": args.repeat_penalty, "no_repeat_ngram": args.no_repeat_ngram, "adaptive": args.adaptive}


def settings_from(args) -> DecodingSettings:
    return DecodingSettings(mode=args.mode, k=args.k, w=args.w, temperature=args.temperature, top_p=args.top_p,
                            n=args.n, max_new_tokens=args.max_new_tokens, seed=args.seed, **tuning_from(args),
                            stop=tuple(args.stop), objectives=objectives_from(args)).validated()


def load_engine(args, need_reward: bool = True):
    from ..engine import Engine

    return Engine.load(args.policy, args.reward, n_ctx=args.n_ctx, threads=args.threads, rm_threads=args.rm_threads,
                       n_gpu_layers=args.n_gpu_layers, need_reward=need_reward)
