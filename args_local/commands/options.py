"""Options several commands share: which models, decoding settings, threads; and their checks,
which run before any model loads."""

from __future__ import annotations

import argparse
import re

from ..errors import UserError
from ..settings import MODES, DecodingSettings, check_load_options, check_reply_room, parse_objectives
from ..user_text import checked_text

# what args_local.cpu picks when the option is not given
THREADS_HELP = "llama.cpp threads (default: 1 on <= 2 cores, else half the cores up to 4)"
RM_THREADS_HELP = ("reward-model threads: onnxruntime's, or llama.cpp's for a GGUF judge "
                   "(default: 2 on <= 2 cores, else half the cores up to 4)")
# serve's and the chat's default: a reply in a conversation should end by itself, and 128 tokens cut most short
# (within 512 tokens ARGS-greedy ended 20 of 24 AlpacaEval train replies, median 246, and 22 of 24 HH-RLHF ones)
CONVERSATION_MAX_NEW_TOKENS = 512


def text(value: str) -> str:
    """argparse type for text options (prompt, system prompt, stop strings): valid UTF-8 only."""
    try:
        return checked_text(value, "its value")
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_model_options(args) -> None:
    """Refuse bad --n-ctx / --threads / --rm-threads / --n-gpu-layers before anything loads."""
    check_load_options(**{name: getattr(args, name, None) for name in ("n_ctx", "threads", "rm_threads", "n_gpu_layers")})


# Settings that errors name as Python and the server's `args` write them (settings.py, engine.py), and
# the command line as options. Not k, w, n, seed...: one letter or word reads the same either way ('n'
# is in 'best-of-n'). Never within a path or an option: /data/threads/, --threads.
OPTION_NAMED = re.compile(r"(?<![\w/.-])(max_new_tokens|top_p|repeat_penalty|no_repeat_ngram|presence_penalty|"
                          r"frequency_penalty|min_p|n_ctx|threads|rm_threads|n_gpu_layers)(?![\w/])")


def option_name(name: str) -> str:
    """A setting's name as the command line writes it: max_new_tokens → --max-new-tokens."""
    return "--" + name.replace("_", "-")


def as_options(message: str) -> str:
    """A UserError's message for the command line: max_new_tokens → --max-new-tokens."""
    return OPTION_NAMED.sub(lambda m: option_name(m[1]), message)


REWARD_HELP = ("reward model: a directory, a built-in name (guide, encoder; default guide) or the name of one exported "
               "into the models folder (as `models` lists it); several "
               "joined by + are weighed together, e.g. guide+encoder with --objective guide.helpful=1,encoder.harmless=0.5")


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--policy", help="GGUF chat model (default: the built-in SmolLM2-135M-Instruct)")
    g.add_argument("--reward", help=REWARD_HELP)
    g.add_argument("--n-ctx", type=int, default=4096, help="policy context length in tokens (default 4096)")
    g.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    g.add_argument("--rm-threads", type=int, default=None, help=RM_THREADS_HELP)
    g.add_argument("--n-gpu-layers", type=int, default=None,
                   help="layers to offload to the GPU (default: all when llama.cpp has GPU support)")


def add_decoding_options(p: argparse.ArgumentParser, default_mode: str = "args-greedy", random_seed: bool = False) -> None:
    """random_seed: no --seed leaves args.seed None, which (as -1) serve reads as a random seed for each request."""
    d = DecodingSettings()
    g = p.add_argument_group("decoding")
    g.add_argument("--mode", default=default_mode, help=f"one of {', '.join(MODES)} (default {default_mode})")
    g.add_argument("--k", type=int, default=d.k, help=f"candidates per step (default {d.k})")
    g.add_argument("--w", type=float, default=d.w, help=f"reward weight in logit + w*reward, >= 0 (default {d.w})")
    g.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature (default 1.0)")
    g.add_argument("--top-p", type=float, default=d.top_p, help="nucleus sampling mass, 0 to 1; 0 keeps the most likely token alone (default 0.9)")
    g.add_argument("--n", type=int, default=d.n, help="best-of-n: samples to draw (default 4)")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="default %(default)s")
    add_tuning_options(g)
    g.add_argument("--seed", type=int, default=None if random_seed else d.seed,
                   help="seed of the sampling modes: the same seed, prompt and settings give the same reply "
                        + ("(default: a random one for each request that gives none, as -1 asks)" if random_seed
                           else f"(default {d.seed})"))
    g.add_argument("--stop", action="append", default=[], type=text, help="stop string (repeatable)")


def add_tuning_options(g) -> None:
    """Repetition processors and penalties, and adaptive ARGS: shared by generate, chat and eval."""
    d = DecodingSettings()
    g.add_argument("--repeat-penalty", type=float, default=d.repeat_penalty,
                   help=f"divide logits of tokens already in the reply by this (default {d.repeat_penalty}; 1 = off)")
    g.add_argument("--no-repeat-ngram", type=int, default=d.no_repeat_ngram, metavar="N",
                   help=f"never repeat an N-gram of the reply (default {d.no_repeat_ngram}; 0 = off)")
    g.add_argument("--presence-penalty", type=float, default=d.presence_penalty, metavar="P",
                   help="subtract P from the logit of each token already in the reply, -2 to 2 (OpenAI's; default 0 = off)")
    g.add_argument("--frequency-penalty", type=float, default=d.frequency_penalty, metavar="P",
                   help="subtract P x its count in the reply from each token's logit, -2 to 2 (OpenAI's; default 0 = off)")
    g.add_argument("--adaptive", type=float, default=d.adaptive, metavar="P",
                   help="ARGS: skip the reward model at steps where the policy's top token has probability >= P "
                        "(faster; BENCHMARKS.md shows the cost in reward; default 0 = full ARGS)")
    g.add_argument("--min-p", type=float, default=d.min_p, metavar="P",
                   help="ARGS: only candidates at least P times as likely as the policy's top token compete; "
                        f"where one is left the reward model is skipped (faster; default {d.min_p:g} = all k)")
    add_objective_option(g)


def add_objective_option(g) -> None:
    g.add_argument("--objective", metavar="NAME=W[,NAME=W]",
                   help="reward = sum of W x each objective's reward, e.g. helpful=1,harmless=0.5 (objectives not "
                        "named get 0; default: the reward model's own weights, see `args-local models`)")


def objectives_from(args) -> tuple[tuple[str, float], ...]:
    return parse_objectives(args.objective)


def tuning_from(args) -> dict:
    # the penalties only where given: eval records these in run.json, and a run written before they existed resumes
    penalties = {name: getattr(args, name) for name in ("presence_penalty", "frequency_penalty") if getattr(args, name)}
    return {"repeat_penalty": args.repeat_penalty, "no_repeat_ngram": args.no_repeat_ngram, "adaptive": args.adaptive,
            "min_p": args.min_p, **penalties}


def settings_from(args) -> DecodingSettings:
    settings = DecodingSettings(mode=args.mode, k=args.k, w=args.w, temperature=args.temperature, top_p=args.top_p,
                                n=args.n, max_new_tokens=args.max_new_tokens, seed=args.seed, **tuning_from(args),
                                stop=tuple(args.stop), objectives=objectives_from(args)).validated()
    check_fits_context(settings, args)
    return settings


def check_fits_context(settings: DecodingSettings, args) -> None:
    check_model_options(args)
    check_reply_room(settings.max_new_tokens, args.n_ctx)


def check_reward_files(value, objectives=(), guiding: bool = False) -> list[dict]:
    """--reward (or --judge): each reward model's own files, the --objective names it must have, and (guiding:
    --reward) that it is no judge, checked before the policy takes seconds to load; their manifests."""
    from .. import home
    from ..reward import check_reward_model

    return check_reward_model(value or home.default_reward(), dict(objectives), guiding)


def load_engine(args, need_reward: bool = True):
    from .. import home
    from ..engine import Engine
    from ..policy import check_gguf_file

    check_model_options(args)
    if need_reward:
        check_reward_files(args.reward, objectives_from(args), guiding=True)
    check_gguf_file(args.policy or home.default_policy(), "policy model")

    return Engine.load(args.policy, args.reward, n_ctx=args.n_ctx, threads=args.threads, rm_threads=args.rm_threads,
                       n_gpu_layers=args.n_gpu_layers, need_reward=need_reward)
