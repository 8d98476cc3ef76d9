"""args-local bench — tokens/s of plain greedy vs ARGS-greedy per reward-model kind and k."""

from __future__ import annotations

import json
from pathlib import Path

from .. import home
from ..errors import UserError
from ..settings import DecodingSettings
from .options import (RM_THREADS_HELP, THREADS_HELP, add_objective_option, check_model_options, check_reward_files,
                      objectives_from)


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure ARGS speed against plain greedy decoding",
                       description="Measure decoding speed: plain llama.cpp greedy (no reward model) and "
                                   "ARGS-greedy with each available reward-model kind, for several k.")
    p.add_argument("--quick", action="store_true", help="few tokens and repetitions: under a minute on 2 CPU cores")
    p.add_argument("--tokens", type=int, help="tokens decoded per prompt and run (default 128; --quick 32)")
    p.add_argument("--reps", type=int, help="timed repetitions after a warm-up (default 5; --quick 3)")
    p.add_argument("--k-values", default="5,10,20", help="ARGS candidate counts to measure (default 5,10,20)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--rm-threads", type=int, help=RM_THREADS_HELP)
    p.add_argument("--policy", help="GGUF chat model (default: the built-in SmolLM2-135M-Instruct)")
    p.add_argument("--reward", help="decoder RM: a directory or the built-in name guide (the default); "
                                    "several joined by '+' (guide+encoder) are measured weighed together")
    p.add_argument("--encoder", help="encoder RM: a directory or the built-in name encoder (the default, if built)")
    p.add_argument("--n-gpu-layers", type=int, help="layers to offload (default: all when llama.cpp has GPU support)")
    p.add_argument("--adaptive", type=float, default=0.0, metavar="P",
                   help="also measure adaptive ARGS (reward model skipped where the top token has probability >= P)")
    p.add_argument("--min-p", type=float, default=0.0, metavar="P",
                   help="also measure ARGS with only candidates at least P times as likely as the top one")
    add_objective_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run)


def parse_k_values(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"--k-values takes comma-separated positive integers, e.g. 5,10,20 (got {text!r})")
    return list(dict.fromkeys(values))


def check_kind(value, kind: str, option: str, objectives=()) -> None:
    """--reward measures a decoder RM (or several joined by +), --encoder an encoder: told before the policy loads,
    as an objective the decoder RM lacks is."""
    manifests = check_reward_files(value, objectives)
    found = manifests[0]["kind"] if len(manifests) == 1 else "ensemble"
    if found != kind and (kind, found) != ("decoder", "ensemble"):
        raise UserError(f"bench {option} takes one {kind} reward model; {value} is not one (kind {found})"
                        + ("; measure it with --encoder" if found == "encoder" else ""))


def run(args) -> int:
    from ..bench import (BENCH_PROMPTS, N_CTX, Config, NeverEndingPolicy, check_tokens, current_rss_mb,
                         machine_info, run_bench)
    from ..cpu import default_rm_threads, default_threads
    from ..engine import Engine
    from ..export.common import stderr_progress
    from ..policy import LlamaPolicy
    from ..reward import load_reward_model

    check_model_options(args)
    tokens = (32 if args.quick else 128) if args.tokens is None else args.tokens
    reps = (3 if args.quick else 5) if args.reps is None else args.reps
    if tokens < 1 or reps < 1:
        raise UserError(f"--tokens and --reps must be at least 1 (got {tokens} and {reps})")
    check_tokens(tokens)
    k_values = parse_k_values(args.k_values)
    settings = DecodingSettings(k=max(k_values), adaptive=args.adaptive, min_p=args.min_p,
                                objectives=objectives_from(args))
    objectives = settings.validated().objectives  # one message for a bad k, --adaptive, --min-p or --objective
    threads = args.threads or default_threads()
    rm_threads = args.rm_threads or default_rm_threads()
    prompts = BENCH_PROMPTS[:1] if args.quick else BENCH_PROMPTS
    progress = stderr_progress()

    check_kind(args.reward or home.default_reward(), "decoder", "--reward", objectives)  # the encoder may lack one
    if args.encoder:
        check_kind(args.encoder, "encoder", "--encoder")
    progress(f"loading the policy ({threads} thread(s)) and reward models ({rm_threads} thread(s))")
    policy = NeverEndingPolicy(LlamaPolicy(args.policy or home.default_policy(), n_ctx=N_CTX, n_threads=threads,
                                           n_gpu_layers=args.n_gpu_layers))
    reward_dirs = {"decoder": args.reward or home.default_reward()}
    unavailable = []
    encoder_dir = home.reward_model_dir(args.encoder or home.default_encoder_reward())
    if args.encoder or (encoder_dir / "manifest.json").is_file():
        reward_dirs["encoder"] = encoder_dir
    else:
        unavailable.append(f"encoder RM: not found in {encoder_dir}; build it with "
                           "`python tools/build_default_models.py --only encoder`")
    configs = [Config(None, 1, Engine(policy))]
    policy_rss = current_rss_mb()
    for kind, directory in reward_dirs.items():
        before = current_rss_mb()
        try:
            rm = load_reward_model(directory, rm_threads)
        except UserError as e:  # the default encoder, measured if built: damaged is reported as missing is
            if kind != "encoder" or args.encoder:
                raise
            unavailable.append(f"encoder RM: damaged: {e}")
            continue
        engine = Engine(policy, rm)
        rm_mb = current_rss_mb() - before
        lacking = [name for name, _ in objectives if name not in rm.objectives]
        if lacking and kind != "decoder":  # the guide must take them; another kind may just lack one
            unavailable.append(f"{kind} RM: has no objective {', '.join(lacking)} (its objectives: "
                               f"{', '.join(rm.objectives)})")
            continue
        engine.objective_weights(DecodingSettings(objectives=objectives))  # UserError if the guide lacks one
        configs += [Config(rm.kind, k, engine, rm_mb, objectives=objectives) for k in k_values]
        for variant in ({"adaptive": args.adaptive}, {"min_p": args.min_p}):
            if any(variant.values()):
                configs += [Config(rm.kind, k, engine, rm_mb, objectives=objectives, **variant) for k in k_values]

    progress(f"measuring {len(configs)} configurations x {reps} repetitions x {len(prompts)} prompt(s) x {tokens} tokens")
    runs = run_bench(configs, list(prompts), tokens, reps, progress)
    plain = runs[0]
    result = {
        "plain_greedy_tokens_per_s": plain["tokens_per_s"],
        "plain_greedy": plain,
        "runs": runs[1:],
        "machine": machine_info(policy, threads, rm_threads),
        "memory": {"rss_mb_with_policy": policy_rss, "peak_rss_mb": runs[-1]["peak_rss_mb"]},
        "method": {"tokens_per_prompt": tokens, "prompts": len(prompts), "repetitions": reps, "warmup": 1,
                   "how": "end-of-turn is ignored so every run decodes exactly the same number of tokens; "
                          "tokens/s is decode time only (prefill and the final reply score excluded); "
                          "repetitions are interleaved across configurations; median with min-max; "
                          "the RM scores beside llama.cpp's guessed next step (Engine overlap), so the two "
                          "ms/step columns overlap in time",
                   "memory": "peak_rss_mb: process peak (ru_maxrss) after the configuration's last repetition, "
                             "cumulative over all models loaded; rm_rss_mb: resident memory its reward model "
                             "added when loaded"},
        "unavailable": unavailable,
    }
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def table(result: dict) -> str:
    # peak RSS is one figure for the process (every model loads before any timing): the memory line, not a column
    lines = ["| decoding | RM kind | k | tokens/s (median, min-max) | x plain | ms/step policy | ms/step RM | RM MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in [result["plain_greedy"]] + result["runs"]:
        name = "plain greedy" if r["reward_kind"] is None else "ARGS-greedy"
        if r.get("adaptive"):
            name += f" adaptive {r['adaptive']:g}"
        if r.get("min_p"):
            name += f" min-p {r['min_p']:g}"
        kind = "—" if r["reward_kind"] is None else f"{r['reward_kind']} ({r['provider']})"
        k = "—" if r["reward_kind"] is None else r["k"]
        rm_mb = "—" if r["rm_rss_mb"] is None else f"{r['rm_rss_mb']:.0f}"
        lines.append(f"| {name} | {kind} | {k} | {r['tokens_per_s']:.1f} ({r['tokens_per_s_min']:.1f}-"
                     f"{r['tokens_per_s_max']:.1f}) | {r['ratio_to_plain']:.2f} | {r['ms_policy_per_step']:.2f} "
                     f"| {r['ms_reward_per_step']:.2f} | {rm_mb} |")
    m, how = result["machine"], result["method"]
    lines += ["", f"- machine: {m['cpu']} ({m['cpu_amx']}), {m['cores']} cores (load {m['load_average_1m']:.2f} at start); "
                  f"llama.cpp build '{m['llama_cpp_build']}' "
                  f"({'with' if m['llama_cpp_extra_buffers'] else 'without'} extra weight buffers), "
                  f"{m['policy_threads']} thread(s), GPU offload {'yes' if m['llama_cpp_gpu_offload'] else 'no'}; "
                  f"onnxruntime {m['onnxruntime']} {m['rm_threads']} thread(s), providers {', '.join(m['onnxruntime_providers'])}",
              f"- {how['prompts']} prompt(s) x {how['tokens_per_prompt']} tokens, {how['repetitions']} repetitions "
              f"after {how['warmup']} warm-up: {how['how']}.",
              f"- memory: policy loaded {result['memory']['rss_mb_with_policy']:.0f} MB, peak RSS of the process "
              f"{result['memory']['peak_rss_mb']:.0f} MB with every model loaded; RM MB: what loading that reward model "
              "added."]
    weights = {r["reward_kind"]: r["objectives"] for r in result["runs"] if r.get("objectives")}
    lines += [f"- objective weights after the gates (mean over the prompts), {kind} RM: " + ", ".join(f"{n} {w:g}" for n, w in w_.items())
              for kind, w_ in weights.items()]
    lines += [f"- n/a: {why}" for why in result["unavailable"]]
    return "\n".join(lines)
